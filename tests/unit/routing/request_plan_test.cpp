// plan_sticky(), route_request_for() and session_constraints(): which
// requests stay where the session is (transactions, unfinished and
// pipelined requests, the unnamed statement, bookkeeping) and what the
// balancer is asked for the others. Requests are the bytes drivers send,
// summarized by analyze_request().
#include <doctest/doctest.h>

#include <memory>

#include "pg_wire/frame_decoder.h"
#include "routing/request_plan.h"
#include "support/builders.h"

using namespace pgswitch;
using namespace pgswitch::routing;
namespace tfe = pgswitch::test::fe;
using pgswitch::test::concat;
using pgswitch::test::request_of;

namespace {

RequestFacts facts_of(std::string_view stream, const SessionState& s = {})
{
    const ClassifyFn classify = [](std::string_view sql) {
        return std::make_shared<const Classification>(routing::classify(sql, nullptr));
    };
    const auto r = request_of(stream);
    auto f = analyze_request(r, s, classify);
    f.executed.clear();  // views into `r`, which goes now
    return f;
}

RequestFacts simple(std::string_view sql)
{
    return facts_of(tfe::query(sql));
}

SessionPlacement on(Role role)
{
    SessionPlacement p;
    p.has_active = true;
    p.active_role = role;
    p.has_primary_link = role == Role::primary;
    return p;
}

Stick stick_of(const RequestFacts& f, const SessionPlacement& p)
{
    return plan_sticky(f, p).stick;
}

}  // namespace

TEST_CASE("a new session: reads and writes are balanced, bookkeeping stays on its primary connection")
{
    const auto fresh = SessionPlacement::logged_in(true);
    CHECK(stick_of(simple("SELECT 1"), fresh) == Stick::none);
    CHECK(stick_of(simple("INSERT INTO t VALUES (1)"), fresh) == Stick::none);
    CHECK(stick_of(simple("BEGIN"), fresh) == Stick::none);
    CHECK(stick_of(simple("BEGIN READ ONLY"), fresh) == Stick::none);
    CHECK(stick_of(simple("SET search_path = a"), fresh) == Stick::active);
    CHECK(stick_of(simple("PREPARE p AS SELECT 1"), fresh) == Stick::active);
    CHECK(stick_of(simple("COMMIT"), fresh) == Stick::active);
    CHECK(stick_of(simple(""), fresh) == Stick::active);
    // Transaction pooling holds no connection between requests: bookkeeping
    // is balanced like a read.
    CHECK(stick_of(simple("SET search_path = a"), SessionPlacement::logged_in(false)) == Stick::none);
}

TEST_CASE("bookkeeping with no active connection goes to the session's primary connection")
{
    SessionPlacement p;
    p.has_primary_link = true;
    CHECK(stick_of(simple("SET x.y = 1"), p) == Stick::primary_link);
    CHECK(stick_of(simple("SELECT 1"), p) == Stick::none);
}

TEST_CASE("an open transaction keeps every request on its server, whatever it is")
{
    auto p = on(Role::replica);
    p.in_transaction = true;
    CHECK(stick_of(simple("INSERT INTO t VALUES (1)"), p) == Stick::active);
    CHECK(stick_of(simple("SELECT 1"), p) == Stick::active);
    CHECK(stick_of(simple("COMMIT"), p) == Stick::active);
}

TEST_CASE("pipelined requests stay behind owed replies unless they need another server")
{
    auto p = on(Role::replica);
    p.active_pending = 2;
    CHECK(stick_of(simple("SELECT 1"), p) == Stick::active);
    CHECK(stick_of(simple("UPDATE t SET a = 1"), p) == Stick::drain_first);
    CHECK(stick_of(simple("BEGIN"), p) == Stick::drain_first);       // a transaction on the primary
    CHECK(stick_of(simple("BEGIN READ ONLY"), p) == Stick::active);  // may stay on the replica
    p.active_awaiting_replay = true;                                 // the read there may yet be re-run on the primary
    CHECK(stick_of(simple("SELECT 1"), p) == Stick::drain_first);

    auto q = on(Role::primary);
    q.active_pending = 1;
    CHECK(stick_of(simple("UPDATE t SET a = 1"), q) == Stick::active);
    CHECK(stick_of(simple("BEGIN"), q) == Stick::drain_first);
}

TEST_CASE("an unfinished extended request stays; a write after a portal-less prepare on a replica ends it first")
{
    auto p = on(Role::replica);
    p.active_unsynced = true;
    // asyncpg: Parse/Describe/Flush of a statement, then a COPY or DDL.
    auto plan = plan_sticky(simple("CREATE TABLE t (a int)"), p);
    CHECK(plan.end_unsynced_first);
    CHECK(plan.stick == Stick::none);
    // A read continues there.
    plan = plan_sticky(simple("SELECT 1"), p);
    CHECK_FALSE(plan.end_unsynced_first);
    CHECK(plan.stick == Stick::active);
    // A portal is open there: the request must follow it.
    p.active_unsynced_portal = true;
    plan = plan_sticky(simple("CREATE TABLE t (a int)"), p);
    CHECK_FALSE(plan.end_unsynced_first);
    CHECK(plan.stick == Stick::active);
    // On the primary nothing needs ending.
    auto q = on(Role::primary);
    q.active_unsynced = true;
    CHECK(plan_sticky(simple("CREATE TABLE t (a int)"), q).stick == Stick::active);
}

TEST_CASE("a Bind of the unnamed statement without a Parse goes where it was parsed")
{
    const auto bind_only = facts_of(concat(tfe::bind("", "", {}), tfe::execute(""), tfe::sync()));
    SessionPlacement p;
    p.has_unnamed_link = true;
    CHECK(stick_of(bind_only, p) == Stick::unnamed);
    p.has_unnamed_link = false;
    CHECK(stick_of(bind_only, p) != Stick::unnamed);
    // With its Parse in the request it is routed on its own.
    const auto full = facts_of(
        concat(tfe::parse("", "SELECT 1"), tfe::bind("", "", {}), tfe::execute(""), tfe::sync()));
    p.has_unnamed_link = true;
    CHECK(stick_of(full, p) == Stick::none);
}

TEST_CASE("route_request_for: writes, hints, session identity, replay waits")
{
    auto rr = route_request_for(simple("SELECT 1"), true);
    CHECK_FALSE(rr.write);
    CHECK(rr.can_wait);
    CHECK_FALSE(route_request_for(simple("SELECT 1"), false).can_wait);
    CHECK(route_request_for(simple("DELETE FROM t"), true).write);
    CHECK(route_request_for(simple("DECLARE c CURSOR WITH HOLD FOR SELECT 1"), true).write);  // pins
    CHECK(route_request_for(simple("BEGIN"), true).write);
    CHECK_FALSE(route_request_for(simple("BEGIN READ ONLY"), true).write);
    CHECK(route_request_for(simple("/* pgswitch:primary */ SELECT 1"), true).prefer_primary);
    CHECK(route_request_for(simple("/* pgswitch:replica */ SELECT 1"), true).prefer_replica);
    CHECK(route_request_for(simple("SELECT pg_backend_pid()"), true).prefer_primary);
    // A hint never sends a write to a replica.
    CHECK(route_request_for(simple("/* pgswitch:replica */ INSERT INTO t VALUES (1)"), true).write);
}

TEST_CASE("prepared BEGIN and COMMIT: the Execute of a named BEGIN opens a transaction on the primary")
{
    SessionState s;
    PreparedStatement begin;
    begin.query = "BEGIN";
    s.record_parse("b", std::move(begin));
    const auto f = facts_of(concat(tfe::bind("", "b", {}), tfe::execute(""), tfe::sync()), s);
    CHECK(f.tx_begin);
    CHECK(route_request_for(f, true).write);
    CHECK(stick_of(f, SessionPlacement::logged_in(true)) == Stick::none);
}

TEST_CASE("session_constraints: pins, SERIALIZABLE default, required and schema positions")
{
    SessionState s;
    auto sc = session_constraints(s, 0, false);
    CHECK_FALSE(sc.pinned_to_primary);
    CHECK_FALSE(sc.min_lsn);
    s.pinned_to_primary = true;
    CHECK(session_constraints(s, 0, false).pinned_to_primary);
    s.pinned_to_primary = false;
    s.default_serializable = true;
    CHECK(session_constraints(s, 0, false).pinned_to_primary);
    s.default_serializable = false;
    // The schema position raises a lower required position, never lowers it.
    CHECK(*session_constraints(s, 500, false).min_lsn == 500);
    s.require_lsn(700);
    CHECK(*session_constraints(s, 500, false).min_lsn == 700);
    CHECK(*session_constraints(s, 900, false).min_lsn == 900);
    CHECK(session_constraints(s, 0, true).lsn_pending);
}
