// ServerPrepared: what a pooled server connection carries between sessions,
// and the LinkState each borrower starts from (transaction pooling, issue 5).
#include <doctest/doctest.h>

#include "routing/server_prepared.h"

using namespace pgswitch::routing;

namespace {

PreparedStatement stmt(std::string query, std::string types = {})
{
    PreparedStatement p;
    p.query = std::move(query);
    p.param_types = std::move(types);
    p.write = false;
    return p;
}

}  // namespace

TEST_CASE("another client's statement of the same name is foreign: closed and re-parsed before use")
{
    SessionState a;
    a.record_parse("S_1", stmt("SELECT 1"));
    LinkState link_a;
    link_a.statements["S_1"] = a.statement("S_1")->version;
    const auto server = return_link_state(link_a, a, ServerPrepared{});
    REQUIRE(server.statements.count("S_1") == 1);
    CHECK(server.statements.at("S_1").query == "SELECT 1");

    // Client b uses "S_1" for another text.
    SessionState b;
    b.record_parse("S_1", stmt("SELECT 2"));
    auto link_b = borrow_link_state(server, b);
    REQUIRE(link_b.statements.count("S_1") == 1);
    CHECK(link_b.statements.at("S_1") == foreign_version);
    CHECK(link_b.statements.at("S_1") != b.statement("S_1")->version);  // catch_up() closes and re-parses

    // A client without S_1 still sees the name taken (its own Parse closes it first).
    SessionState c;
    auto link_c = borrow_link_state(server, c);
    CHECK(link_c.statements.at("S_1") == foreign_version);
}

TEST_CASE("the same text under the same name is reused without a new Parse")
{
    ServerPrepared server;
    server.statements["P_0"] = {"SELECT abalance FROM pgbench_accounts WHERE aid = $1", std::string("\0\0\0\x17", 4)};
    SessionState s;
    s.record_parse("P_0", stmt("SELECT abalance FROM pgbench_accounts WHERE aid = $1", std::string("\0\0\0\x17", 4)));
    auto link = borrow_link_state(server, s);
    CHECK(link.statements.at("P_0") == s.statement("P_0")->version);

    // Same text, other parameter types: not the same statement.
    SessionState t;
    t.record_parse("P_0", stmt("SELECT abalance FROM pgbench_accounts WHERE aid = $1", std::string("\0\0\0\x14", 4)));
    CHECK(borrow_link_state(server, t).statements.at("P_0") == foreign_version);
}

TEST_CASE("giving back keeps foreign names, drops closed ones, records the borrower's")
{
    ServerPrepared before;
    before.statements["x"] = {"SELECT 'x'", {}};
    before.statements["gone"] = {"SELECT 'gone'", {}};
    before.sql_prepared["q"] = "PREPARE q AS SELECT 1";
    SessionState s;
    auto link = borrow_link_state(before, s);
    link.statements.erase("gone");  // the session closed it (catch_up or its own Close)
    s.record_parse("mine", stmt("SELECT 'mine'"));
    link.statements["mine"] = s.statement("mine")->version;
    const auto after = return_link_state(link, s, before);
    CHECK(after.statements.size() == 2);
    CHECK(after.statements.at("x").query == "SELECT 'x'");
    CHECK(after.statements.at("mine").query == "SELECT 'mine'");
    CHECK(after.sql_prepared.at("q") == "PREPARE q AS SELECT 1");
}

TEST_CASE("a version the session no longer knows becomes an unknown text nobody matches")
{
    SessionState s;
    s.record_parse("a", stmt("SELECT 1"));
    LinkState link;
    link.statements["a"] = s.statement("a")->version + 100;
    const auto after = return_link_state(link, s, ServerPrepared{});
    REQUIRE(after.statements.count("a") == 1);
    CHECK(borrow_link_state(after, s).statements.at("a") == foreign_version);
}

TEST_CASE("settings: a connection someone SET on is reset for the next borrower, a clean one is not")
{
    SessionState setter;
    setter.record_set("work_mem", "SET work_mem = '64MB'");
    ServerPrepared clean;
    auto link = borrow_link_state(clean, setter);
    auto c = setter.catch_up(link);
    REQUIRE(c.settings);
    CHECK(*c.settings == "RESET ALL; SET work_mem = '64MB'");
    const auto after = return_link_state(link, setter, clean);
    CHECK(after.settings_dirty);

    SessionState other;  // SET nothing
    auto link2 = borrow_link_state(after, other);
    auto c2 = other.catch_up(link2);
    REQUIRE(c2.settings);
    CHECK(*c2.settings == "RESET ALL");
    CHECK_FALSE(c2.discard_all);
    CHECK_FALSE(return_link_state(link2, other, after).settings_dirty);

    // Clean connection, session without settings: nothing to send.
    auto link3 = borrow_link_state(clean, other);
    CHECK_FALSE(other.catch_up(link3).settings);
}

TEST_CASE("a session's past DISCARD ALL is not replayed on a borrowed connection")
{
    SessionState s;
    s.record_discard_all();
    auto link = borrow_link_state(ServerPrepared{}, s);
    CHECK_FALSE(s.catch_up(link).discard_all);
}
