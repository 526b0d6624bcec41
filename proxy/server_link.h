// One server connection a client session uses, and what it still owes:
// the reply segments in flight (the client's, and pgswitch's own hidden
// requests), prepared-statement confirmations, and a kept client request
// that may still be re-run elsewhere while none of its reply has been shown.
#pragma once

#include <chrono>
#include <cstdint>
#include <atomic>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "backend_connection.h"
#include "pg_wire/request.h"
#include "routing/cluster_view.h"
#include "routing/session_state.h"
#include "routing/statement_replies.h"
#include "server_pool.h"

namespace pgswitch::proxy {

struct ServerLink {
    /// One unit of replies ending in ReadyForQuery, in the order requests
    /// were written: the client's own (forwarded) or pgswitch's hidden ones
    /// (swallowed, some read for a value).
    enum class Segment : std::uint8_t {
        client,       ///< a client Query/Sync/FunctionCall
        hidden,       ///< SET replay, lazy Parse/PREPARE, DISCARD: replies dropped
        check,        ///< replay of statements the client Described, with a Describe to compare
        capture_lsn,  ///< SELECT pg_current_wal_insert_lsn() after a write committed
        replay_wait,  ///< waits (on a replica) until it replayed `lsn`, ahead of a read
    };
    struct Pending {
        Segment kind;
        std::uint64_t number = 0;  ///< its ReadyForQuery's rank on this link (segments_sent)
        std::uint64_t lsn = 0;     ///< replay_wait: the position the read needs
        bool schema = false;       ///< capture_lsn: of a write that changed the schema
    };
    /// What happens to the next client segment's reply.
    enum class Fate : std::uint8_t {
        forward,  ///< to the client
        rerun,    ///< dropped, and its request re-run on the primary (a replay wait fell short)
    };

    std::string backend;  ///< backend name
    /// Statements in flight on `backend`, over all workers (set on first use).
    std::shared_ptr<std::atomic<int>> in_flight;
    /// The backend's role when this link was last routed to (views change it).
    routing::Role role = routing::Role::unknown;
    /// The client was given this connection's process id (session mode).
    bool identity = false;
    std::unique_ptr<BackendConnection> conn;
    routing::LinkState state;
    std::deque<Pending> segments;
    /// ReadyForQuery replies owed / received over the link's life: a message
    /// belongs to segment `sent + 1` when written before its Sync.
    std::uint64_t segments_sent = 0;
    std::uint64_t segments_done = 0;
    routing::StatementReplies statements;
    /// When each client segment was sent, for the latency histogram.
    std::deque<std::chrono::steady_clock::time_point> started;
    /// Extended-protocol messages sent since the last Sync (a Flush-ended
    /// request): the link must get the rest of the request.
    bool unsynced = false;
    /// ... and among them a Bind: a portal is open there, so the request that
    /// follows must go to this link (else a hidden Sync can close the
    /// sequence and let it go elsewhere: a write after asyncpg's prepare).
    bool unsynced_portal = false;
    /// A write ran here since its position was last captured: its commit
    /// position matters to read-your-writes.
    bool wrote = false;
    /// ... and some of it changed the schema (DDL): its position is every session's.
    bool changed_schema = false;
    bool server_sent_fatal = false;
    bool dead = false;
    bool fenced = false;  ///< closed by pgswitch because its server was fenced

    // ---- re-running a read elsewhere ------------------------------------------
    /// The client request of the front client segment, kept while it may be
    /// re-run on the primary: a read on a replica outside a transaction that
    /// fails with 25006 (it wrote after all), whose replay wait fell short, or
    /// whose server died, before any of its reply reached the client.
    std::optional<wire::Request> retry;
    std::uint64_t retry_segment = 0;  ///< the client segment `retry` belongs to
    /// The value a hidden capture_lsn / replay_wait read returned, until its ReadyForQuery.
    std::optional<std::uint64_t> hidden_value;
    bool segment_fresh = true;  ///< nothing of the front client segment's reply forwarded yet
    bool swallowing = false;    ///< dropping the front client segment's reply, to re-run it
    Fate next_client = Fate::forward;
    std::string retry_error;  ///< the 25006 ErrorResponse, forwarded if no primary can re-run it
    std::string held;         ///< reply frames held back while the segment may still be re-run

    // ---- transaction pooling ----------------------------------------------------
    /// The pool's record of this borrowed connection (its conn is in `conn`
    /// meanwhile); null for a session's own connection.
    std::unique_ptr<PooledConnection> lease;
    bool released = false;  ///< given back to the pool: no longer the session's
    bool used = false;      ///< a client request was sent since it was borrowed
    // What close() saw, for settle_link(): replies owed, a transaction open,
    // session-level state (pins) living here.
    bool owed_at_close = false;
    bool open_tx_at_close = false;
    bool pinned_at_close = false;

    /// Queues a segment's reply; returns its number (see segments_sent).
    std::uint64_t push(Segment kind, std::uint64_t lsn = 0)
    {
        segments.push_back({kind, ++segments_sent, lsn});
        return segments_sent;
    }
    /// A read behind a replay wait is in flight here: it may yet be re-run on
    /// the primary, so nothing may be pipelined behind it on this link (its
    /// reply would overtake the re-run one).
    [[nodiscard]] bool awaiting_replay() const noexcept
    {
        if (next_client == Fate::rerun || swallowing)
            return true;
        for (const auto& s : segments)
            if (s.kind == Segment::replay_wait)
                return true;
        return false;
    }
    /// The kept request can still be re-run: its client segment is the only
    /// one owed here (hidden ones may come before it).
    [[nodiscard]] bool can_rerun() const noexcept
    {
        if (!retry)
            return false;
        int clients = 0;
        bool kept = false;
        for (const auto& s : segments)
            if (s.kind == Segment::client) {
                ++clients;
                kept = s.number == retry_segment;
            }
        return clients == 1 && kept;
    }
    [[nodiscard]] int pending_client() const noexcept
    {
        int n = 0;
        for (const auto& s : segments)
            n += s.kind == Segment::client;
        return n;
    }
    [[nodiscard]] bool front_is(Segment kind) const noexcept
    {
        return !segments.empty() && segments.front().kind == kind;
    }
    /// Replies owed to the client, or an unfinished extended request.
    [[nodiscard]] bool owes_client() const noexcept { return pending_client() > 0 || unsynced; }
};

}  // namespace pgswitch::proxy
