// plan_catch_up(): what a server connection gets before a request so that
// the session's SETs and prepared statements hold there — and nothing it
// already has, nothing the session dropped, nothing inside an unfinished
// extended request but the statements themselves.
#include <doctest/doctest.h>

#include <memory>

#include "pg_wire/frame_decoder.h"
#include "routing/catch_up_plan.h"
#include "support/builders.h"

using namespace pgswitch;
using namespace pgswitch::routing;
namespace tfe = pgswitch::test::fe;
using pgswitch::test::concat;

namespace {

/// A request with its facts (views into it).
struct Planned {
    std::unique_ptr<wire::Request> request;
    RequestFacts facts;
};

Planned planned_request(std::string_view stream, const SessionState& s)
{
    Planned p;
    p.request = std::make_unique<wire::Request>(pgswitch::test::request_of(stream));
    const ClassifyFn classify = [](std::string_view sql) {
        return std::make_shared<const Classification>(routing::classify(sql, nullptr));
    };
    p.facts = analyze_request(*p.request, s, classify);
    return p;
}

CatchUpPlan plan(std::string_view stream, const SessionState& s, LinkState& link, bool unsynced = false)
{
    const auto r = planned_request(stream, s);
    return plan_catch_up(*r.request, r.facts, s, link, unsynced);
}

void parse_into(SessionState& s, const std::string& name, const std::string& sql)
{
    PreparedStatement ps;
    ps.query = sql;
    s.record_parse(name, std::move(ps));
}

}  // namespace

TEST_CASE("a fresh connection gets the session's SETs once")
{
    SessionState s;
    s.record_set("search_path", "SET search_path = a");
    LinkState link;
    auto p = plan(tfe::query("SELECT 1"), s, link);
    CHECK(p.script.find("SET search_path = a") != std::string::npos);
    CHECK(p.statements.empty());
    // Marked sent: the next request on that connection gets nothing.
    CHECK(plan(tfe::query("SELECT 1"), s, link).script.empty());
    // A new SET is replayed on the next use.
    s.record_set("work_mem", "SET work_mem = '8MB'");
    CHECK(plan(tfe::query("SELECT 1"), s, link).script.find("work_mem") != std::string::npos);
}

TEST_CASE("a DISCARD ALL since the connection was last caught up is replayed first")
{
    SessionState s;
    LinkState link;
    (void)plan(tfe::query("SELECT 1"), s, link);
    s.record_discard_all();
    CHECK(plan(tfe::query("SELECT 1"), s, link).script.rfind("DISCARD ALL", 0) == 0);
}

TEST_CASE("a named statement is parsed lazily where a Bind uses it, once per version")
{
    SessionState s;
    parse_into(s, "q1", "SELECT $1::int");
    LinkState link;
    const auto bind = concat(tfe::bind("", "q1", {"1"}), tfe::execute(""), tfe::sync());
    auto p = plan(bind, s, link);
    REQUIRE(p.statements.size() == 1);
    CHECK(p.statements[0].kind == StatementStep::Kind::parse);
    CHECK(p.statements[0].name == "q1");
    CHECK(p.statements[0].statement->query == "SELECT $1::int");
    CHECK_FALSE(p.statements[0].close_first);
    CHECK(plan(bind, s, link).statements.empty());
    // Closed and parsed again by the client: the old copy goes first.
    s.record_close_statement("q1");
    parse_into(s, "q1", "SELECT $1::bigint");
    p = plan(bind, s, link);
    REQUIRE(p.statements.size() == 1);
    CHECK(p.statements[0].close_first);
    CHECK(p.statements[0].statement->query == "SELECT $1::bigint");
}

TEST_CASE("a stale name the request defines itself, or the session no longer has, is closed")
{
    SessionState s;
    LinkState link;
    link.statements["old"] = 3;
    // The client parses "old" now: the connection's copy would clash (42P05).
    auto p = plan(concat(tfe::parse("old", "SELECT 2"), tfe::sync()), s, link);
    REQUIRE(p.statements.size() == 1);
    CHECK(p.statements[0].kind == StatementStep::Kind::close);
    CHECK_FALSE(link.statements.contains("old"));
    // Another client's statement on a pooled connection: the Bind must fail (26000).
    link.statements["theirs"] = 1;
    p = plan(concat(tfe::bind("", "theirs", {}), tfe::execute(""), tfe::sync()), s, link);
    REQUIRE(p.statements.size() == 1);
    CHECK(p.statements[0].kind == StatementStep::Kind::close);
    CHECK(p.statements[0].name == "theirs");
}

TEST_CASE("SQL EXECUTE gets its PREPARE replayed; a deallocated or foreign one is deallocated")
{
    SessionState s;
    s.record_sql_prepare("p1", "PREPARE p1 AS SELECT 1", false);
    LinkState link;
    auto p = plan(tfe::query("EXECUTE p1"), s, link);
    CHECK(p.script == "PREPARE p1 AS SELECT 1");
    CHECK(plan(tfe::query("EXECUTE p1"), s, link).script.empty());
    s.record_deallocate("p1");
    CHECK(plan(tfe::query("EXECUTE p1"), s, link).script == "DEALLOCATE \"p1\"");
    // Re-PREPARE of a name the connection has: deallocated first.
    link.sql_prepared["p2"] = 1;
    CHECK(plan(tfe::query("PREPARE p2 AS SELECT 2"), s, link).script == "DEALLOCATE \"p2\"");
}

TEST_CASE("an SQL EXECUTE of a protocol-level statement prepares it")
{
    SessionState s;
    parse_into(s, "proto", "SELECT 1");
    LinkState link;
    const auto p = plan(tfe::query("EXECUTE proto"), s, link);
    REQUIRE(p.statements.size() == 1);
    CHECK(p.statements[0].name == "proto");
}

TEST_CASE("inside an unfinished extended request only statement steps are planned")
{
    SessionState s;
    s.record_set("search_path", "SET search_path = a");
    parse_into(s, "q1", "SELECT 1");
    LinkState link;
    const auto p = plan(concat(tfe::bind("", "q1", {}), tfe::execute(""), tfe::sync()), s, link, true);
    CHECK(p.script.empty());
    CHECK(p.statements.size() == 1);
    // The settings are still owed: the next synced request gets them.
    CHECK_FALSE(plan(tfe::query("SELECT 1"), s, link).script.empty());
}

TEST_CASE("quote_ident doubles quotes")
{
    CHECK(quote_ident("a\"b") == "\"a\"\"b\"");
}
