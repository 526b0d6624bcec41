// SessionState: what a server connection lacks of the session's SETs,
// discards and prepared statements.
#include <doctest/doctest.h>

#include "routing/session_state.h"

using namespace pgswitch::routing;

TEST_CASE("a fresh connection of a session that SET nothing needs nothing")
{
    SessionState s;
    LinkState link;
    auto c = s.catch_up(link);
    CHECK_FALSE(c.discard_all);
    CHECK_FALSE(c.settings);
}

TEST_CASE("SETs replay on connections that have not seen them, last value wins")
{
    SessionState s;
    LinkState first;
    (void)s.catch_up(first);
    s.record_set("search_path", "SET search_path = a, public");
    s.record_set("statement_timeout", "SET statement_timeout = 5000");
    s.record_set("search_path", "SET search_path = b");
    LinkState later;
    auto c = s.catch_up(later);
    REQUIRE(c.settings);
    CHECK(*c.settings == "RESET ALL; SET search_path = b; SET statement_timeout = 5000");
    // Up to date now: nothing more to send.
    CHECK_FALSE(s.catch_up(later).settings);
    // The first connection is behind too.
    CHECK(s.catch_up(first).settings);

    s.record_reset("statement_timeout");
    auto again = s.catch_up(later);
    REQUIRE(again.settings);
    CHECK(*again.settings == "RESET ALL; SET search_path = b");
    s.record_reset_all();
    auto all = s.catch_up(later);
    REQUIRE(all.settings);
    CHECK(*all.settings == "RESET ALL");
}

TEST_CASE("DISCARD ALL forgets settings, statements and pins, and reaches every connection")
{
    SessionState s;
    s.record_set("work_mem", "SET work_mem = '64MB'");
    s.record_parse("s1", PreparedStatement{"SELECT 1", "", 0, false, 0, std::nullopt, nullptr, 0});
    s.record_sql_prepare("q", "PREPARE q AS SELECT 1", false);
    s.pinned_to_primary = true;
    LinkState link;
    (void)s.catch_up(link);
    link.statements["s1"] = s.statement("s1")->version;
    s.record_discard_all();
    CHECK_FALSE(s.pinned_to_primary);
    CHECK(s.statement("s1") == nullptr);
    CHECK(s.sql_prepared("q") == nullptr);
    auto c = s.catch_up(link);
    CHECK(c.discard_all);
    CHECK_FALSE(c.settings);
    CHECK(link.statements.empty());
}

TEST_CASE("re-Parsed statements get a new version so stale copies are replaced")
{
    SessionState s;
    s.record_parse("s", PreparedStatement{"SELECT 1", "", 0, false, 0, std::nullopt, nullptr, 0});
    const auto v1 = s.statement("s")->version;
    s.record_close_statement("s");
    CHECK(s.statement("s") == nullptr);
    s.record_parse("s", PreparedStatement{"INSERT INTO t VALUES (1)", "", 0, true, 0, std::nullopt, nullptr, 0});
    CHECK(s.statement("s")->version != v1);
    CHECK(s.statement("s")->write);
}

TEST_CASE("read-your-writes position only moves forward")
{
    SessionState s;
    s.require_lsn(100);
    s.require_lsn(50);
    CHECK(s.min_lsn == std::optional<std::uint64_t>{100});
    s.require_lsn(200);
    CHECK(s.min_lsn == std::optional<std::uint64_t>{200});
}

TEST_CASE("DEALLOCATE drops a protocol-level statement too (one namespace with SQL PREPARE)")
{
    SessionState s;
    PreparedStatement ps;
    ps.query = "SELECT 1";
    s.record_parse("p1", ps);
    s.record_parse("p2", ps);
    s.record_sql_prepare("q1", "PREPARE q1 AS SELECT 2", false);
    s.record_deallocate("p1");
    CHECK(s.statement("p1") == nullptr);
    CHECK(s.statement("p2") != nullptr);
    s.record_deallocate_all();
    CHECK(s.statement("p2") == nullptr);
    CHECK(s.sql_prepared("q1") == nullptr);
}

TEST_CASE("apply_effects: transaction defaults follow SET, RESET and DISCARD ALL back to the login's")
{
    SessionState s;
    s.set_login_defaults(false, true);  // e.g. a startup parameter default_transaction_isolation=serializable
    LinkState link;
    auto apply = [&](std::string_view sql) {
        const auto c = classify(sql, nullptr);
        for (const auto& st : c.statements)
            (void)s.apply_effects(st, sql.substr(st.offset, st.length), link, true);
    };
    CHECK(s.default_serializable);
    apply("SET default_transaction_read_only = on");
    CHECK(s.default_read_only);
    apply("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED");
    CHECK_FALSE(s.default_serializable);
    apply("RESET default_transaction_isolation");
    CHECK(s.default_serializable);
    apply("DISCARD ALL");
    CHECK_FALSE(s.default_read_only);
    CHECK(s.default_serializable);
    apply("SET default_transaction_isolation TO 'serializable'");
    CHECK(s.default_serializable);
    apply("RESET ALL");
    CHECK(s.default_serializable);  // the login's value
    CHECK(link.settings_version == s.settings_version());
}

TEST_CASE("apply_effects: DEALLOCATE drops the statement on the connection that ran it; function DDL says so")
{
    SessionState s;
    LinkState link;
    s.record_sql_prepare("p", "PREPARE p AS SELECT 1", false);
    link.sql_prepared["p"] = s.sql_prepared("p")->version;
    const std::string_view dealloc = "DEALLOCATE p";
    const auto c = classify(dealloc, nullptr);
    CHECK_FALSE(s.apply_effects(c.statements.front(), dealloc, link, false));
    CHECK_FALSE(s.sql_prepared("p"));
    CHECK_FALSE(link.sql_prepared.contains("p"));
    const std::string_view ddl = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'";
    const auto d = classify(ddl, nullptr);
    CHECK(s.apply_effects(d.statements.front(), ddl, link, true));
}
