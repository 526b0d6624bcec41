// analyze_request(): what the requests real drivers send mean for routing —
// named statements, prepares, SET at connect, transactions, unnamed
// statements, functions the catalog does not know.
#include <doctest/doctest.h>

#include <memory>

#include "pg_wire/frame_decoder.h"
#include "routing/request_analysis.h"
#include "support/builders.h"

using namespace pgswitch;
using namespace pgswitch::routing;
namespace tfe = pgswitch::test::fe;
using pgswitch::test::concat;
using pgswitch::test::request_of;

namespace {

/// A request and its facts (whose views point into it).
struct Analyzed : RequestFacts {
    std::shared_ptr<wire::Request> request;
};

Analyzed analyze(std::string_view stream, const SessionState& s = {}, const FunctionCatalog* catalog = nullptr)
{
    const ClassifyFn classify = [catalog](std::string_view sql) {
        return std::make_shared<const Classification>(routing::classify(sql, catalog));
    };
    auto r = std::make_shared<wire::Request>(request_of(stream));
    Analyzed a{analyze_request(*r, s, classify), r};
    return a;
}

PreparedStatement statement(std::string query)
{
    PreparedStatement ps;
    ps.query = std::move(query);
    return ps;
}

}  // namespace

TEST_CASE("node-postgres named query, first run: Parse and Bind of the name in one request is a read")
{
    const auto f = analyze(concat(tfe::parse("q1", "SELECT $1::int"), tfe::bind("", "q1", {"1"}),
                                  tfe::describe('P', ""), tfe::execute(""), tfe::sync()));
    CHECK_FALSE(f.must_primary);
    CHECK_FALSE(f.may_write);
    CHECK_FALSE(f.needs_primary());
    CHECK_FALSE(f.bookkeeping_only);
    REQUIRE(f.executed.size() == 1);
    CHECK(f.executed.front().text == "SELECT $1::int");
}

TEST_CASE("a later Bind of a statement the session parsed routes by that statement")
{
    SessionState s;
    s.record_parse("r", statement("SELECT 1"));
    s.record_parse("w", statement("INSERT INTO t VALUES (1)"));
    const auto read = analyze(concat(tfe::bind("", "r"), tfe::execute(""), tfe::sync()), s);
    CHECK_FALSE(read.needs_primary());
    CHECK_FALSE(read.may_write);
    const auto write = analyze(concat(tfe::bind("", "w"), tfe::execute(""), tfe::sync()), s);
    CHECK(write.must_primary);
    CHECK(write.may_write);
}

TEST_CASE("a Bind of a statement nobody parsed goes to the primary (26000 there) but writes nothing")
{
    const auto f = analyze(concat(tfe::bind("", "nope"), tfe::execute(""), tfe::sync()));
    CHECK(f.must_primary);
    CHECK(f.may_write);  // an Execute of an unknown portal: assume the worst
    const auto d = analyze(concat(tfe::describe('S', "nope"), tfe::sync()));
    CHECK(d.must_primary);
    CHECK_FALSE(d.may_write);
}

TEST_CASE("a prepare (Parse + Describe + Sync) runs nothing: it moves no read-your-writes position")
{
    const auto r = analyze(concat(tfe::parse("s", "SELECT 1"), tfe::describe('S', "s"), tfe::sync()));
    CHECK_FALSE(r.needs_primary());
    CHECK_FALSE(r.may_write);
    const auto w = analyze(concat(tfe::parse("s", "INSERT INTO t VALUES (1)"), tfe::describe('S', "s"), tfe::sync()));
    CHECK(w.must_primary);  // prepared where it will write
    CHECK_FALSE(w.may_write);
    CHECK(w.executed.empty());
}

TEST_CASE("SET at connect (pgjdbc sends it over the extended protocol) is bookkeeping, never a write")
{
    const auto f = analyze(
        concat(tfe::parse("", "SET extra_float_digits = 3"), tfe::bind("", ""), tfe::execute(""), tfe::sync()));
    CHECK(f.bookkeeping_only);
    CHECK_FALSE(f.may_write);
    CHECK_FALSE(f.needs_primary());
    const auto q = analyze(tfe::query("SET application_name = 'x'"));
    CHECK(q.bookkeeping_only);
    CHECK_FALSE(q.may_write);
}

TEST_CASE("transactions: read-only ones may use a replica unless serializable")
{
    CHECK(analyze(tfe::query("BEGIN READ ONLY")).tx_begin_read_only);
    const auto s = analyze(tfe::query("BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"));
    CHECK(s.tx_begin);
    CHECK_FALSE(s.tx_begin_read_only);
    CHECK(s.needs_primary());
    CHECK(analyze(tfe::query("START TRANSACTION READ ONLY, ISOLATION LEVEL SERIALIZABLE")).tx_begin);
    CHECK(analyze(tfe::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")).tx_begin_read_only);

    SessionState ro;
    ro.default_read_only = true;
    CHECK(analyze(tfe::query("BEGIN"), ro).tx_begin_read_only);
    ro.default_serializable = true;
    CHECK(analyze(tfe::query("BEGIN"), ro).tx_begin);
    SessionState ser;
    ser.default_serializable = true;
    CHECK(analyze(tfe::query("BEGIN READ ONLY"), ser).tx_begin);
    // A BEGIN is no write: it moves no position by itself.
    CHECK_FALSE(analyze(tfe::query("BEGIN")).may_write);
}

TEST_CASE("a prepared BEGIN executed by Bind opens a transaction (pgbench -M prepared)")
{
    SessionState s;
    s.record_parse("P0_0", statement("BEGIN"));
    const auto f = analyze(concat(tfe::bind("", "P0_0"), tfe::execute(""), tfe::sync()), s);
    CHECK(f.tx_begin);
    s.record_parse("P0_9", statement("END"));
    const auto e = analyze(concat(tfe::bind("", "P0_9"), tfe::execute(""), tfe::sync()), s);
    CHECK(e.tx_end);
    CHECK(e.bookkeeping_only);
}

TEST_CASE("the unnamed statement used without a Parse goes where it was parsed")
{
    CHECK(analyze(concat(tfe::describe('S', ""), tfe::sync())).uses_unnamed_without_parse);
    CHECK(analyze(concat(tfe::bind("", ""), tfe::execute(""), tfe::sync())).uses_unnamed_without_parse);
    const auto parsed = analyze(concat(tfe::parse("", "SELECT 1"), tfe::describe('S', ""), tfe::sync()));
    CHECK_FALSE(parsed.uses_unnamed_without_parse);
    CHECK(parsed.parses_unnamed);
    // The unnamed statement the session parsed before decides the Bind's class.
    SessionState s;
    s.record_unnamed(statement("DELETE FROM t"));
    const auto f = analyze(concat(tfe::bind("", ""), tfe::execute(""), tfe::sync()), s);
    CHECK(f.uses_unnamed_without_parse);
    CHECK(f.must_primary);
    CHECK(f.may_write);
}

TEST_CASE("SQL EXECUTE of a prepared write is a write; of a read, a read")
{
    SessionState s;
    s.record_sql_prepare("w", "PREPARE w AS INSERT INTO t VALUES (1)", true);
    s.record_sql_prepare("r", "PREPARE r AS SELECT 1", false);
    const auto w = analyze(tfe::query("EXECUTE w"), s);
    CHECK(w.must_primary);
    CHECK(w.may_write);
    const auto r = analyze(tfe::query("EXECUTE r"), s);
    CHECK_FALSE(r.needs_primary());
    CHECK_FALSE(r.may_write);
}

TEST_CASE("session identity: pg_backend_pid() and transaction_read_only are answered by the primary")
{
    CHECK(analyze(tfe::query("SELECT pg_backend_pid()")).session_identity);
    CHECK(analyze(tfe::query("SHOW transaction_read_only")).session_identity);
    CHECK(analyze(concat(tfe::parse("", "select current_setting($1), current_setting('transaction_read_only')"),
                         tfe::bind("", ""), tfe::execute(""), tfe::sync()))
              .session_identity);
    CHECK_FALSE(analyze(tfe::query("SELECT current_setting('work_mem')")).session_identity);
    // A name given at Bind time may be transaction_read_only (psycopg's tests do that).
    CHECK(analyze(concat(tfe::parse("", "SELECT current_setting($1)"), tfe::bind("", "", {"transaction_read_only"}),
                         tfe::execute(""), tfe::sync()))
              .session_identity);
}

TEST_CASE("functions a complete catalog does not know are reported, once each")
{
    FunctionCatalog c;
    c.add_known("pg_catalog", "now");
    c.add_known("public", "known_f");
    const auto f = analyze(tfe::query("SELECT known_f(), now(), fresh_f(1), fresh_f(2), s.other_f()"), {}, &c);
    REQUIRE(f.unknown_functions.size() == 2);
    CHECK(f.unknown_functions[0] == "fresh_f");
    CHECK(f.unknown_functions[1] == "s.other_f");
    c.add_missing("fresh_f");
    c.add_missing("s.other_f");
    CHECK(analyze(tfe::query("SELECT fresh_f(1), s.other_f()"), {}, &c).unknown_functions.empty());
    // Without a complete catalog nothing is unknown (built-ins judged by name).
    CHECK(analyze(tfe::query("SELECT fresh_f(1)")).unknown_functions.empty());
}

TEST_CASE("a malformed message sends the request to the primary")
{
    std::string bad;
    wire::MessageWriter w(bad);
    w.begin('B');
    w.cstring("");
    w.cstring("s");
    w.i16(2);
    w.finish();
    const auto f = analyze(concat(bad, tfe::sync()));
    CHECK(f.must_primary);
}

TEST_CASE("a read of an UNLOGGED table runs on the primary (a standby cannot read it), without moving the position")
{
    FunctionCatalog c;
    c.add_known("pg_catalog", "count");
    c.add_unlogged("public", "scratch");
    const auto f = analyze(tfe::query("SELECT count(*) FROM scratch s JOIN other o ON o.id = s.id"), {}, &c);
    CHECK(f.must_primary);
    CHECK_FALSE(f.may_write);
    CHECK(analyze(tfe::query("SELECT * FROM public.scratch"), {}, &c).must_primary);
    CHECK_FALSE(analyze(tfe::query("SELECT * FROM other.scratch"), {}, &c).must_primary);
    CHECK_FALSE(analyze(tfe::query("SELECT * FROM logged_table"), {}, &c).must_primary);
}

TEST_CASE("DDL changes the schema; TRUNCATE, VACUUM and DML do not")
{
    for (const char* ddl :
         {"CREATE TABLE t (a int)", "ALTER TABLE t ADD COLUMN b int", "DROP TABLE t", "CREATE DOMAIN d AS int",
          "CREATE TYPE c AS (x int)", "CREATE INDEX ON t (a)", "ALTER TYPE c ADD ATTRIBUTE y int",
          "CREATE VIEW v AS SELECT 1", "GRANT SELECT ON t TO PUBLIC", "COMMENT ON TABLE t IS 'x'",
          "ALTER TABLE t RENAME TO u", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'"})
        CHECK_MESSAGE(analyze(tfe::query(ddl)).changes_schema, ddl);
    for (const char* other : {"TRUNCATE t", "VACUUM t", "LOCK t", "INSERT INTO t VALUES (1)", "SELECT 1", "SET x = 1"})
        CHECK_FALSE_MESSAGE(analyze(tfe::query(other)).changes_schema, other);
    // Only what runs counts: a prepared DDL that is only parsed does not.
    CHECK_FALSE(analyze(concat(tfe::parse("s", "DROP TABLE t"), tfe::describe('S', "s"), tfe::sync())).changes_schema);
}

TEST_CASE("SQL EXECUTE of a protocol-level statement (one namespace) routes by that statement")
{
    SessionState s;
    auto read = statement("select 1");
    read.write = false;  // what record_request() stores from the Parse's classification
    s.record_parse("foobar", std::move(read));
    s.record_parse("w", statement("INSERT INTO t VALUES (1)"));
    CHECK_FALSE(analyze(tfe::query("EXECUTE foobar"), s).needs_primary());
    CHECK_FALSE(analyze(tfe::query("EXECUTE foobar"), s).may_write);
    CHECK(analyze(tfe::query("EXECUTE w"), s).must_primary);
}
