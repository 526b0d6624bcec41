#include "routing/request_plan.h"

namespace pgswitch::routing {

SessionPlacement SessionPlacement::logged_in(bool holds_primary_connection) noexcept
{
    SessionPlacement p;
    p.has_active = holds_primary_connection;
    p.active_role = holds_primary_connection ? Role::primary : Role::unknown;
    p.has_primary_link = holds_primary_connection;
    return p;
}

std::string_view to_string(Stick s) noexcept
{
    switch (s) {
    case Stick::none:
        return "none";
    case Stick::active:
        return "active";
    case Stick::drain_first:
        return "drain_first";
    case Stick::unnamed:
        return "unnamed";
    case Stick::primary_link:
        return "primary_link";
    }
    return "?";
}

std::string_view describe(Stick s) noexcept
{
    switch (s) {
    case Stick::none:
        return "balanced";
    case Stick::active:
    case Stick::primary_link:
        return "session bookkeeping: runs where the session is (a new session: the primary) and is replayed on "
               "other servers when they are used";
    case Stick::drain_first:
        return "waits for the replies the session's server still owes";
    case Stick::unnamed:
        return "uses the unnamed statement: runs where it was parsed";
    }
    return "?";
}

namespace {

/// An open transaction, an unfinished or pipelined request on the active
/// connection. nullopt: the active connection does not keep the request.
std::optional<Stick> active_stick(const RequestFacts& facts, const SessionPlacement& p) noexcept
{
    if (!p.has_active)
        return std::nullopt;
    if (p.in_transaction || p.active_unsynced)
        return Stick::active;
    if (p.active_pending == 0)
        return std::nullopt;
    // Pipelined behind replies still owed: it stays unless it needs another
    // server (or opens a transaction, or the read there may be re-run),
    // which waits for them to drain.
    const bool fits = !facts.needs_primary() || p.active_role == Role::primary;
    if (fits && !facts.tx_begin && !p.active_awaiting_replay)
        return Stick::active;
    return Stick::drain_first;
}

}  // namespace

StickyPlan plan_sticky(const RequestFacts& facts, const SessionPlacement& placement) noexcept
{
    StickyPlan plan;
    auto p = placement;
    if (p.has_active && p.active_unsynced && !p.active_unsynced_portal && !p.in_transaction && facts.needs_primary() &&
        p.active_role != Role::primary) {
        plan.end_unsynced_first = true;
        p.active_unsynced = false;
    }
    if (const auto stick = active_stick(facts, p)) {
        plan.stick = *stick;
        return plan;
    }
    if (facts.uses_unnamed_without_parse && p.has_unnamed_link) {
        plan.stick = Stick::unnamed;
        return plan;
    }
    // SET, PREPARE, COMMIT outside a transaction...: where the session is; the
    // state is replayed on other servers when they are next used.
    if (facts.bookkeeping_only && !facts.needs_primary() && !facts.tx_begin_read_only) {
        if (p.has_active)
            plan.stick = Stick::active;
        else if (p.has_primary_link)
            plan.stick = Stick::primary_link;
    }
    return plan;
}

RouteRequest route_request_for(const RequestFacts& facts, bool idle_with_nothing_pending) noexcept
{
    RouteRequest rr;
    rr.write = facts.needs_primary();
    rr.prefer_primary = facts.hint_primary || facts.session_identity;
    rr.prefer_replica = facts.hint_replica;
    // A replay wait may go ahead of a read outside a transaction with nothing
    // else in flight: pipelined with it when the session can re-run the read
    // on the primary, else as a round trip of its own first.
    rr.can_wait = idle_with_nothing_pending;
    return rr;
}

SessionConstraints session_constraints(const SessionState& state, std::uint64_t schema_lsn, bool lsn_pending) noexcept
{
    SessionConstraints sc;
    // A session whose transactions default to SERIALIZABLE cannot read on a
    // standby at all ("cannot use serializable mode in a hot standby").
    sc.pinned_to_primary = state.pinned_to_primary || state.default_serializable;
    sc.wrote = state.wrote;
    sc.min_lsn = state.min_lsn;
    if (schema_lsn > 0 && (!sc.min_lsn || *sc.min_lsn < schema_lsn))
        sc.min_lsn = schema_lsn;
    sc.lsn_pending = lsn_pending;
    return sc;
}

}  // namespace pgswitch::routing
