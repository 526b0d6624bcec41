// record_effects(): what a request sent on a connection leaves in the
// session's state and in that connection's — SETs and PREPAREs, protocol
// statements parsed and closed (with the version each message saw), the
// unnamed statement, pins, writes and catalog-changing DDL.
#include <doctest/doctest.h>

#include <memory>

#include "routing/request_effects.h"
#include "support/builders.h"

using namespace pgswitch;
using namespace pgswitch::routing;
namespace tfe = pgswitch::test::fe;
using pgswitch::test::concat;

namespace {

/// Sends `stream` (one request) on a connection with state `link`.
RequestEffects send(std::string_view stream, SessionState& s, LinkState& link, bool on_primary = true,
                    std::uint64_t generation = 7)
{
    const auto request = pgswitch::test::request_of(stream);
    const ClassifyFn classify = [](std::string_view sql) {
        return std::make_shared<const Classification>(routing::classify(sql, nullptr));
    };
    const auto facts = analyze_request(request, s, classify);
    return record_effects(request, facts, s, link, on_primary, generation);
}

}  // namespace

TEST_CASE("a named Parse records the statement, the connection has it, its version is reported")
{
    SessionState s;
    LinkState link;
    const auto e = send(concat(tfe::parse("q1", "SELECT $1::int"), tfe::sync()), s, link);
    REQUIRE(e.versions.size() == 2);
    const auto* ps = s.statement("q1");
    REQUIRE(ps);
    CHECK(e.versions[0] == ps->version);
    CHECK(link.statements.at("q1") == ps->version);
    CHECK(e.versions[1] == RequestEffects::no_version);  // the Sync
    // Kept with its classification and the catalog it was made with.
    REQUIRE(ps->classification);
    CHECK_FALSE(ps->classification->write);
    CHECK(ps->classified_with == 7);
}

TEST_CASE("Parse, Close, Parse of one name in one request: each message sees its own version")
{
    SessionState s;
    LinkState link;
    const auto e = send(concat(tfe::parse("q", "SELECT 1"), tfe::close('S', "q"), tfe::parse("q", "SELECT 2"),
                               tfe::describe('S', "q"), tfe::sync()),
                        s, link);
    REQUIRE(e.versions.size() == 5);
    REQUIRE(e.versions[0] != RequestEffects::no_version);
    REQUIRE(e.versions[2] != RequestEffects::no_version);
    CHECK(e.versions[0] != e.versions[2]);
    CHECK(e.versions[1] == RequestEffects::no_version);  // the Close
    CHECK(e.versions[3] == e.versions[2]);               // the Describe asks about the second one
    CHECK(s.statement("q")->query == "SELECT 2");
    CHECK(link.statements.at("q") == e.versions[2]);
}

TEST_CASE("a Close of a statement forgets it in the session and on the connection")
{
    SessionState s;
    LinkState link;
    (void)send(concat(tfe::parse("q", "SELECT 1"), tfe::sync()), s, link);
    (void)send(concat(tfe::close('S', "q"), tfe::sync()), s, link);
    CHECK(s.statement("q") == nullptr);
    CHECK_FALSE(link.statements.contains("q"));
}

TEST_CASE("a simple Query destroys the unnamed statement; an unnamed Parse records it")
{
    SessionState s;
    LinkState link;
    auto e = send(concat(tfe::parse("", "SELECT 1"), tfe::sync()), s, link);
    CHECK_FALSE(e.forgot_unnamed);
    REQUIRE(s.unnamed_statement());
    CHECK(s.unnamed_statement()->query == "SELECT 1");
    e = send(tfe::query("SELECT 2"), s, link);
    CHECK(e.forgot_unnamed);
    CHECK(s.unnamed_statement() == nullptr);
}

TEST_CASE("SET and SQL PREPARE hold for the session and are marked on the connection that ran them")
{
    SessionState s;
    LinkState link;
    (void)send(tfe::query("SET search_path = a; PREPARE p1 AS SELECT 1"), s, link);
    CHECK(s.setting_value("search_path"));
    CHECK(s.sql_prepared("p1") != nullptr);
    CHECK(link.sql_prepared.contains("p1"));
    CHECK(link.settings_version == s.settings_version());
}

TEST_CASE("writes, pins and catalog-changing DDL")
{
    SessionState s;
    LinkState link;
    CHECK_FALSE(send(tfe::query("SELECT 1"), s, link).catalog_stale);
    CHECK_FALSE(s.wrote);
    (void)send(tfe::query("INSERT INTO t VALUES (1)"), s, link);
    CHECK(s.wrote);
    (void)send(tfe::query("LISTEN ch"), s, link, true);
    CHECK(s.pinned_to_primary);
    CHECK(send(tfe::query("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"), s, link).catalog_stale);
}
