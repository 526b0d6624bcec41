// One server connection a client session uses, and what it still owes:
// the reply segments in flight (the client's, and pgswitch's own hidden
// requests), prepared-statement confirmations, and a kept client request
// that may still be re-run elsewhere while none of its reply has been shown.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "backend_connection.h"
#include "pg_wire/fifo.h"
#include "pg_wire/response_tracker.h"
#include "routing/cluster_view.h"
#include "routing/session_state.h"
#include "routing/statement_replies.h"
#include "server_pool.h"
#include "worker.h"

namespace pgswitch::proxy {

struct ServerLink {
    /// Whose replies a segment carries (wire::ResponseTracker).
    using Segment = wire::SegmentKind;

    std::string backend;  ///< backend name
    /// This worker's load on `backend` (set on first use).
    BackendLoad* load = nullptr;
    /// This worker's routed-statement counters for `backend` (set on first use).
    WorkerStats::QueryCounts* query_counts = nullptr;
    /// The backend's role when this link was last routed to (views change it).
    routing::Role role = routing::Role::unknown;
    /// The client was given this connection's process id (session mode).
    bool identity = false;
    std::unique_ptr<BackendConnection> conn;
    routing::LinkState state;
    /// The reply segments owed, what to do with each reply message, and a
    /// kept client request that may still be re-run elsewhere.
    wire::ResponseTracker replies;
    routing::StatementReplies statements;
    /// When each client segment was sent, for the latency histogram.
    wire::Fifo<std::chrono::steady_clock::time_point> started;
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

    /// Reply bytes held back while the front client segment may still be
    /// re-run elsewhere (replies' MisrouteGuard), across reads.
    std::string held;

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

    /// Queues a segment's reply; returns its number (see ResponseTracker::segments_sent()).
    std::uint64_t push(Segment kind, std::uint64_t lsn = 0, bool schema = false)
    {
        return replies.push(kind, lsn, schema);
    }
    [[nodiscard]] bool awaiting_replay() const noexcept { return replies.awaiting_replay(); }
    [[nodiscard]] int pending_client() const noexcept { return replies.pending_client(); }
    /// Replies owed to the client, or an unfinished extended request.
    [[nodiscard]] bool owes_client() const noexcept { return pending_client() > 0 || unsynced; }
};

}  // namespace pgswitch::proxy
