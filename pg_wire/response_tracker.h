// What one server connection still owes, and to whom. pgswitch writes
// requests of its own around the client's (settings and statements replayed
// before it, a WAL-position read after a write, a replay wait before a read),
// so the replies coming back are a queue of segments, each ended by a
// ReadyForQuery: the client's are forwarded, the hidden ones are cut out and
// some of them read for a value. A read on a standby may also have to run
// again on the primary (a replay wait that fell short, a 25006): then its
// reply is dropped, and the start of it is held back until that is ruled out
// (MisrouteGuard). The tracker answers each backend message with what to do
// with it; the caller does the I/O. Pure: no sockets, no clocks, no logging.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "backend.h"
#include "fifo.h"
#include "frame.h"
#include "misroute_guard.h"
#include "request.h"
#include "tags.h"

namespace pgswitch::wire {

/// Whose replies one segment carries.
enum class SegmentKind : std::uint8_t {
    client,       ///< a client Query/Sync/FunctionCall: forwarded
    hidden,       ///< SET replay, lazy Parse/PREPARE, DISCARD: replies dropped
    check,        ///< replay of statements the client Described, with a Describe to compare
    capture_lsn,  ///< SELECT pg_current_wal_insert_lsn() after a write committed
    replay_wait,  ///< waits (on a replica) until it replayed `lsn`, ahead of a read
};

class ResponseTracker {
public:
    /// One unit of replies ending in ReadyForQuery, in the order requests were written.
    struct Segment {
        SegmentKind kind = SegmentKind::client;
        std::uint64_t number = 0;  ///< its ReadyForQuery's rank on the connection (segments_sent())
        std::uint64_t lsn = 0;     ///< replay_wait: the position the read needs (the caller's)
        bool schema = false;       ///< capture_lsn: of a write that changed the schema (the caller's)
    };

    /// What to do with one backend message.
    struct Action {
        enum class Kind : std::uint8_t {
            forward,      ///< to the client
            hold,         ///< the start of a reply that may be re-run: kept back (MisrouteGuard)
            release,      ///< what was held goes to the client first, then this
            drop,         ///< the reply of a request that is re-run elsewhere: never shown
            misrouted,    ///< the standby refused the read: drop this and what was held
            hidden,       ///< a hidden request's reply: cut out (`segment` says which)
            hidden_done,  ///< ... its ReadyForQuery: `segment` is done, with `value`
            rerun,        ///< a dropped reply ended: re-run its request (the kept one) elsewhere
            fatal_idle,   ///< a FATAL on a connection that owes the client nothing
        };
        Kind kind = Kind::forward;
        /// An ErrorResponse's fields (when they parse).
        std::optional<be::ErrorFields> error;
        /// A ReadyForQuery's transaction status (when it parses).
        std::optional<TxStatus> ready;
        /// hidden, hidden_done: the hidden segment; forward/release of a
        /// ReadyForQuery, rerun: the client segment it ended.
        std::optional<Segment> segment;
        /// hidden_done of capture_lsn / replay_wait: the last one-column row's value.
        std::optional<std::string> value;

        [[nodiscard]] bool fatal() const noexcept;
    };
    using Kind = Action::Kind;

    /// Segments forgotten by clear().
    struct Dropped {
        int client = 0;
        int capture_lsn = 0;
    };

    /// A segment's request went out (its Sync or Query written); returns its number.
    std::uint64_t push(SegmentKind kind, std::uint64_t lsn = 0, bool schema = false);
    /// The next message from the server. `session_holds_link`: the session
    /// keeps something on this connection besides replies (an unfinished
    /// extended request, an open transaction, pinned session state), so a
    /// FATAL there is the client's business even with no reply owed.
    [[nodiscard]] Action on_message(const Frame& f, bool session_holds_link = false);

    /// Keeps the client request whose Sync or Query was pushed last, for a
    /// re-run on the primary while none of its reply has reached the client;
    /// returns the kept copy.
    const Request& keep(Request request) { return guard_.keep(std::move(request), sent_); }
    /// The kept request, for its re-run (nothing is held back any more).
    [[nodiscard]] std::optional<Request> take_kept() noexcept { return guard_.take_request(); }
    /// The standby's ErrorResponse when the kept request was misrouted, else "".
    [[nodiscard]] std::string take_refusal() noexcept { return guard_.take_refusal(); }
    void forget_refusal() noexcept { guard_.forget_refusal(); }
    /// A replay wait ahead of the next client reply fell short: that reply
    /// may be stale, so it is to be dropped and its request re-run. False
    /// (nothing changes) when other requests are queued behind it: a re-run
    /// would reorder replies.
    bool rerun_next_client() noexcept;
    /// Takes back rerun_next_client() (the caller moves the request itself);
    /// true when it was set.
    bool cancel_rerun() noexcept { return std::exchange(rerun_next_, false); }
    /// Forgets every owed segment (the connection is gone); the kept request stays.
    Dropped clear() noexcept;

    /// Segments pushed / ReadyForQuery received over the connection's life:
    /// a message belongs to segment `segments_sent() + 1` when written before its Sync.
    [[nodiscard]] std::uint64_t segments_sent() const noexcept { return sent_; }
    [[nodiscard]] std::uint64_t segments_done() const noexcept { return done_; }
    /// No segment is owed.
    [[nodiscard]] bool empty() const noexcept { return owed_.empty(); }
    [[nodiscard]] int pending_client() const noexcept { return clients_; }
    /// A read behind a replay wait is in flight here: it may yet be re-run on
    /// the primary, so nothing may be pipelined behind it (its reply would
    /// overtake the re-run one).
    [[nodiscard]] bool awaiting_replay() const noexcept;
    /// The kept request can still be re-run: its client segment is the only
    /// one owed here (hidden ones may come before it).
    [[nodiscard]] bool can_rerun() const noexcept;
    /// ... and nothing of its reply reached the client nor is being dropped.
    [[nodiscard]] bool can_rerun_unseen() const noexcept { return can_rerun() && fresh_ && !swallowing_; }
    /// Dropping the front client segment's reply, to re-run its request.
    [[nodiscard]] bool swallowing() const noexcept { return swallowing_; }
    /// Part of the front client segment's reply is held back.
    [[nodiscard]] bool holding() const noexcept { return guard_.holding(); }

private:
    [[nodiscard]] bool front_is_hidden() const noexcept
    {
        return !owed_.empty() && owed_.front().kind != SegmentKind::client;
    }
    Segment pop_front() noexcept;
    void on_hidden_message(const Frame& f, Action& a);
    void on_swallowed_message(const Frame& f, Action& a);
    /// The front client segment's first message the client could act on:
    /// true when it decided `a` (the reply is dropped or held).
    bool judge_reply_start(const Frame& f, Action& a);
    void on_forwarded(Action& a);

    Fifo<Segment> owed_;
    std::uint64_t sent_ = 0;
    std::uint64_t done_ = 0;
    int clients_ = 0;  ///< client segments in owed_
    MisrouteGuard guard_;
    std::optional<std::string> hidden_value_;  ///< of the front hidden segment, until its ReadyForQuery
    bool fresh_ = true;                        ///< nothing of the front client segment's reply forwarded yet
    bool swallowing_ = false;                  ///< dropping the front client segment's reply, to re-run it
    bool rerun_next_ = false;                  ///< the next client segment's reply is to be dropped and re-run
};

}  // namespace pgswitch::wire
