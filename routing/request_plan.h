// Where a summarized request (RequestFacts) must run before any balancing:
// the session rules of SPEC §3 that keep a request on the server the session
// is already using (an open transaction, an unfinished or pipelined request,
// the unnamed statement, SET/PREPARE bookkeeping), and what choose_target()
// is asked otherwise. Pure: the session passes a snapshot of its links;
// /routing/explain passes the snapshot of a session that just logged in, so
// both answer with the same rules.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "routing/cluster_view.h"
#include "routing/request_analysis.h"
#include "routing/router.h"
#include "routing/session_state.h"

namespace pgswitch::routing {

/// What the session's connections are doing when a request arrives.
struct SessionPlacement {
    bool in_transaction = false;  ///< the last ReadyForQuery said 'T' or 'E'
    /// The connection the last request went to (live), and its server's role.
    bool has_active = false;
    Role active_role = Role::unknown;
    bool active_unsynced = false;         ///< extended messages sent there since the last Sync
    bool active_unsynced_portal = false;  ///< ... and among them a Bind (a portal is open)
    int active_pending = 0;               ///< client replies still owed there
    bool active_awaiting_replay = false;  ///< a read there may yet be re-run on the primary
    bool has_unnamed_link = false;        ///< a live connection holds the unnamed statement
    bool has_primary_link = false;        ///< a live connection to the current primary

    /// A session that just logged in with its connection to the primary
    /// (session pooling; transaction pooling holds none between requests).
    [[nodiscard]] static SessionPlacement logged_in(bool holds_primary_connection) noexcept;
};

/// Where a request stays, before choose_target() is asked.
enum class Stick : std::uint8_t {
    none,          ///< nothing keeps it: choose_target() decides
    active,        ///< the connection the last request went to
    drain_first,   ///< wait for the active connection's replies, then plan again
    unnamed,       ///< where the unnamed statement was parsed
    primary_link,  ///< the session's connection to the primary (bookkeeping, no active one)
};
[[nodiscard]] std::string_view to_string(Stick s) noexcept;
/// Why a request stays where it is, in an operator's words (/routing/explain).
[[nodiscard]] std::string_view describe(Stick s) noexcept;

struct StickyPlan {
    Stick stick = Stick::none;
    /// The active connection holds an unfinished extended request with no
    /// portal open (asyncpg's prepare: Parse/Describe/Flush) on a replica,
    /// and this request needs the primary: end that request with a hidden
    /// Sync first (as the client's own next Sync would have).
    bool end_unsynced_first = false;
};

/// The sticky rules (SPEC §3 transactions and session state).
[[nodiscard]] StickyPlan plan_sticky(const RequestFacts& facts, const SessionPlacement& placement) noexcept;

/// What choose_target() is asked for a request nothing keeps in place.
/// `idle_with_nothing_pending`: outside a transaction with no reply owed,
/// where a replay wait may go ahead of a read.
[[nodiscard]] RouteRequest route_request_for(const RequestFacts& facts, bool idle_with_nothing_pending) noexcept;

/// The session's history that constrains its reads: pins, a SERIALIZABLE
/// default, its writes and required position, and `schema_lsn` (DDL
/// committed through pgswitch by any session: a replica that has not
/// replayed it would fail the statement, not merely show old rows).
/// `lsn_pending`: the position of the session's last write is on its way.
[[nodiscard]] SessionConstraints session_constraints(const SessionState& state, std::uint64_t schema_lsn,
                                                     bool lsn_pending) noexcept;

}  // namespace pgswitch::routing
