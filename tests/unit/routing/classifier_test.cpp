// Statement classifier: table-driven (one SUBCASE per row), plus the fields a row can't hold.
// Checklist: SPEC §3 and PgDog's parser tests (select.rs, function.rs).
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "routing/classifier.h"

using namespace pgswitch::routing;

namespace {

/// One expectation. Fields left out default to "a plain statement": no tx, no session
/// effect, no pin, no currval, no hint, parsed.
struct Row {
    const char* sql;
    bool write;
    std::optional<StatementKind> kind = std::nullopt;
    Tx tx = Tx::none;
    SessionEffect session = SessionEffect::none;
    bool pins = false;
    bool currval = false;
    Hint hint = Hint::none;
    bool parse_error = false;
    const char* set_name = "";
    const char* set_value = "";
};

constexpr auto R = false;  // read
constexpr auto W = true;   // write

/// The catalog every row runs with.
FunctionCatalog test_catalog()
{
    FunctionCatalog c(7);
    c.add_volatile("public", "audit_log");
    c.add_volatile("app", "bump_counter");
    c.add_volatile("public", "touch");
    c.add_volatile("public", "random_pick");
    c.add_write_function("refresh_cache");     // any schema
    c.add_write_function("billing.charge");    // one schema
    c.add_read_only_function("public.touch");  // overrides VOLATILE
    c.add_read_only_function("random_pick");
    c.add_read_only_function("nextval");  // cannot override a built-in
    return c;
}

Tx first_tx(const Classification& c)
{
    for (const auto& s : c.statements)
        if (s.tx != Tx::none)
            return s.tx;
    return Tx::none;
}

const StatementInfo* first_session(const Classification& c)
{
    for (const auto& s : c.statements)
        if (s.session != SessionEffect::none)
            return &s;
    return nullptr;
}

void check_row(const Row& row, const FunctionCatalog& catalog)
{
    const Classification c = classify(row.sql, &catalog);
    INFO("sql: ", row.sql);
    CHECK(c.write == row.write);
    CHECK(c.parse_error == row.parse_error);
    CHECK(c.pins_primary == row.pins);
    CHECK(c.uses_currval == row.currval);
    CHECK(c.hint == row.hint);
    CHECK(first_tx(c) == row.tx);
    CHECK(c.has_tx_control == (row.tx != Tx::none));
    const StatementInfo* session = first_session(c);
    CHECK((session ? session->session : SessionEffect::none) == row.session);
    CHECK(c.has_session_effect == (row.session != SessionEffect::none));
    if (session) {
        CHECK(session->set_name == row.set_name);
        CHECK(session->set_value == row.set_value);
    }
    if (row.kind) {
        REQUIRE(c.statements.size() == 1);
        CHECK(to_string(c.statements[0].kind) == to_string(*row.kind));
    }
}

// clang-format off
const Row reads[] = {
    {.sql = "SELECT 1", .write = R, .kind = StatementKind::select},
    {.sql = "select * from t", .write = R},
    {.sql = "SELECT a FROM t WHERE b = 1 ORDER BY a LIMIT 10 OFFSET 5", .write = R},
    {.sql = "VALUES (1), (2)", .write = R, .kind = StatementKind::select},
    {.sql = "TABLE t", .write = R, .kind = StatementKind::select},
    {.sql = "SHOW search_path", .write = R, .kind = StatementKind::show},
    {.sql = "SHOW ALL", .write = R},
    {.sql = "SELECT count(*) FROM t GROUP BY x HAVING count(*) > 1", .write = R},
    {.sql = "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id)", .write = R},
    {.sql = "SELECT * FROM t1 UNION SELECT * FROM t2 EXCEPT SELECT * FROM t3", .write = R},
    {.sql = "WITH x AS (SELECT 1) SELECT * FROM x", .write = R},
    {.sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r", .write = R},
    {.sql = "SELECT now(), current_timestamp, random(), clock_timestamp()", .write = R},
    {.sql = "SELECT pg_sleep(1)", .write = R},
    {.sql = "SELECT currval('s')", .write = R, .currval = true},
    {.sql = "SELECT lastval()", .write = R, .currval = true},
    {.sql = "SELECT pg_catalog.currval('s')", .write = R, .currval = true},
    {.sql = "SELECT txid_current_if_assigned()", .write = R},
    {.sql = "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()", .write = R},
    {.sql = "SELECT * FROM generate_series(1, 10) g", .write = R},
    {.sql = "SELECT unknown_fn(1)", .write = R},
    {.sql = "SELECT public.unknown_fn(1)", .write = R},
    {.sql = "SELECT upper(name) FROM users WHERE lower(email) = 'x'", .write = R},
    {.sql = "SELECT EXISTS (SELECT 1 FROM t WHERE a = 1)", .write = R},
    {.sql = "SELECT * FROM t WHERE id IN (SELECT id FROM u)", .write = R},
    {.sql = "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t = t.id) s", .write = R},
    {.sql = "SELECT set_config('search_path', 'x', true)", .write = R},
    {.sql = "SELECT set_config('a.b', 'x', 'on')", .write = R},
    {.sql = "SELECT current_setting('search_path')", .write = R},
    {.sql = "SELECT t.* FROM t TABLESAMPLE SYSTEM (10)", .write = R},
    {.sql = "SELECT array_agg(x ORDER BY y) FILTER (WHERE z) FROM t", .write = R},
    {.sql = "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", .write = R},
    {.sql = "SELECT 'nextval(''s'')' AS not_a_call", .write = R},
    {.sql = "SELECT \"nextval\" FROM t", .write = R},
    {.sql = "SELECT touch(1)", .write = R},
    {.sql = "SELECT public.touch(1)", .write = R},
    {.sql = "SELECT random_pick()", .write = R},
    {.sql = "SELECT other.bump_counter()", .write = R},
    {.sql = "SELECT other.charge(1)", .write = R},
    {.sql = "SELECT xmin, ctid FROM t", .write = R},
    {.sql = "select 1 -- trailing comment", .write = R},
    {.sql = "/* plain comment */ SELECT 1", .write = R},
    {.sql = "SELECT $1::int", .write = R},
    {.sql = "SELECT * FROM t WHERE a = ANY($1)", .write = R},
    {.sql = "SELECT CASE WHEN a THEN 1 ELSE 2 END FROM t", .write = R},
    {.sql = "SELECT x FROM t WHERE ts > now() - interval '1 day' FETCH FIRST 3 ROWS ONLY", .write = R},
    {.sql = "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC", .write = R},
    {.sql = "SELECT json_build_object('a', 1)->>'a'", .write = R},
    {.sql = "EXPLAIN SELECT * FROM t", .write = R, .kind = StatementKind::explain},
    {.sql = "EXPLAIN ANALYZE SELECT * FROM t", .write = R, .kind = StatementKind::explain},
    {.sql = "EXPLAIN (ANALYZE, BUFFERS) SELECT 1", .write = R},
    {.sql = "EXPLAIN DELETE FROM t", .write = R},
    {.sql = "EXPLAIN (ANALYZE false) DELETE FROM t", .write = R},
    {.sql = "EXPLAIN (ANALYZE off, COSTS off) UPDATE t SET a = 1", .write = R},
    {.sql = "EXPLAIN INSERT INTO t VALUES (nextval('s'))", .write = R},
    {.sql = "EXPLAIN VERBOSE SELECT * FROM t FOR UPDATE", .write = R},
    {.sql = "COPY t TO STDOUT", .write = R, .kind = StatementKind::copy_to},
    {.sql = "COPY (SELECT * FROM t) TO STDOUT WITH CSV HEADER", .write = R, .kind = StatementKind::copy_to},
    {.sql = "COPY t (a, b) TO STDOUT (FORMAT binary)", .write = R},
    {.sql = "SELECT 1; SELECT 2", .write = R},
};

const Row writes[] = {
    {.sql = "INSERT INTO t VALUES (1)", .write = W, .kind = StatementKind::dml},
    {.sql = "INSERT INTO t SELECT * FROM u", .write = W},
    {.sql = "INSERT INTO t VALUES (1) ON CONFLICT (id) DO NOTHING", .write = W},
    {.sql = "INSERT INTO t VALUES (1) RETURNING id", .write = W},
    {.sql = "UPDATE t SET a = 1 WHERE id = 2", .write = W, .kind = StatementKind::dml},
    {.sql = "DELETE FROM t WHERE id = 2", .write = W, .kind = StatementKind::dml},
    {.sql = "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v", .write = W, .kind = StatementKind::dml},
    // Locking clauses, at any depth.
    {.sql = "SELECT * FROM t FOR UPDATE", .write = W, .kind = StatementKind::select},
    {.sql = "SELECT * FROM t FOR NO KEY UPDATE", .write = W},
    {.sql = "SELECT * FROM t FOR SHARE", .write = W},
    {.sql = "SELECT * FROM t FOR KEY SHARE", .write = W},
    {.sql = "SELECT * FROM t FOR UPDATE SKIP LOCKED", .write = W},
    {.sql = "SELECT * FROM t FOR UPDATE OF t NOWAIT", .write = W},
    {.sql = "SELECT * FROM (SELECT * FROM t FOR UPDATE) s", .write = W},
    {.sql = "SELECT * FROM t WHERE id IN (SELECT id FROM u FOR SHARE)", .write = W},
    {.sql = "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x", .write = W},
    // Data-modifying CTEs, at any depth.
    {.sql = "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", .write = W, .kind = StatementKind::select},
    {.sql = "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x", .write = W},
    {.sql = "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM x", .write = W},
    {.sql = "SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s", .write = W},
    {.sql = "WITH a AS (SELECT 1), b AS (WITH c AS (DELETE FROM t RETURNING 1) SELECT * FROM c) SELECT * FROM b", .write = W},
    {.sql = "SELECT (WITH m AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1)", .write = W, .parse_error = false},
    // SELECT INTO.
    {.sql = "SELECT 1 INTO newtable", .write = W},
    {.sql = "SELECT * INTO TEMP tt FROM t", .write = W, .pins = true},
    // Built-in functions with side effects, wherever they are called.
    {.sql = "SELECT nextval('s')", .write = W},
    {.sql = "SELECT pg_catalog.nextval('s')", .write = W},
    {.sql = "SELECT NEXTVAL('s')", .write = W},
    {.sql = "SELECT setval('s', 10)", .write = W},
    {.sql = "SELECT id, nextval('s') FROM t", .write = W},
    {.sql = "SELECT * FROM t WHERE id = nextval('s')", .write = W},
    {.sql = "SELECT * FROM t ORDER BY nextval('s')", .write = W},
    {.sql = "SELECT * FROM t GROUP BY a HAVING max(a) > nextval('s')", .write = W},
    {.sql = "SELECT * FROM a JOIN b ON a.id = b.id AND pg_notify('c', 'x') IS NOT NULL", .write = W},
    {.sql = "SELECT * FROM t, LATERAL (SELECT nextval('s')) n", .write = W},
    {.sql = "VALUES (nextval('s'))", .write = W},
    {.sql = "SELECT * FROM nextval('s')", .write = W},
    {.sql = "SELECT coalesce(nextval('s'), 0)", .write = W},
    {.sql = "SELECT abs(abs(abs(nextval('s'))))", .write = W},
    {.sql = "SELECT (SELECT nextval('s'))", .write = W},
    {.sql = "SELECT * FROM t WHERE EXISTS (SELECT setval('s', 1))", .write = W},
    {.sql = "WITH x AS (SELECT nextval('s')) SELECT * FROM x", .write = W},
    {.sql = "SELECT 1 UNION ALL SELECT nextval('s')", .write = W},
    {.sql = "SELECT CASE WHEN a THEN nextval('s') END FROM t", .write = W},
    {.sql = "SELECT pg_advisory_lock(1)", .write = W, .pins = true},
    {.sql = "SELECT pg_advisory_lock_shared(1)", .write = W, .pins = true},
    {.sql = "SELECT pg_try_advisory_lock(1)", .write = W, .pins = true},
    {.sql = "SELECT pg_try_advisory_lock_shared(1, 2)", .write = W, .pins = true},
    {.sql = "SELECT pg_catalog.pg_advisory_lock(1)", .write = W, .pins = true},
    {.sql = "SELECT pg_advisory_xact_lock(1)", .write = W},
    {.sql = "SELECT pg_try_advisory_xact_lock(1)", .write = W},
    {.sql = "SELECT pg_advisory_xact_lock_shared(1)", .write = W},
    {.sql = "SELECT pg_advisory_unlock(1)", .write = W},
    {.sql = "SELECT pg_advisory_unlock_all()", .write = W},
    {.sql = "SELECT pg_notify('ch', 'payload')", .write = W},
    {.sql = "SELECT set_config('search_path', 'x', false)", .write = W},
    {.sql = "SELECT set_config('a.b', 'x', 'false')", .write = W},
    {.sql = "SELECT set_config('a.b', $1, $2)", .write = W},
    {.sql = "SELECT txid_current()", .write = W},
    {.sql = "SELECT pg_current_xact_id()", .write = W},
    {.sql = "SELECT pg_current_wal_lsn()", .write = W},
    {.sql = "SELECT lo_create(0)", .write = W},
    {.sql = "SELECT lo_import('/tmp/x')", .write = W},
    {.sql = "SELECT lo_unlink(123)", .write = W},
    {.sql = "SELECT lo_from_bytea(0, 'x')", .write = W},
    {.sql = "SELECT lowrite(0, 'x')", .write = W},
    {.sql = "SELECT pg_terminate_backend(123)", .write = W},
    {.sql = "SELECT pg_cancel_backend(123)", .write = W},
    {.sql = "SELECT pg_reload_conf()", .write = W},
    {.sql = "SELECT pg_switch_wal()", .write = W},
    {.sql = "SELECT pg_create_physical_replication_slot('s')", .write = W},
    {.sql = "SELECT pg_create_logical_replication_slot('s', 'pgoutput')", .write = W},
    {.sql = "SELECT pg_drop_replication_slot('s')", .write = W},
    {.sql = "SELECT pg_stat_reset()", .write = W},
    {.sql = "SELECT pg_stat_reset_shared('bgwriter')", .write = W},
    {.sql = "SELECT pg_replication_origin_create('o')", .write = W},
    {.sql = "SELECT pg_logical_emit_message(true, 'p', 'm')", .write = W},
    {.sql = "SELECT dblink_exec('conn', 'DELETE FROM t')", .write = W},
    {.sql = "SELECT setseed(0.5)", .write = W},
    {.sql = "SELECT pg_backup_start('label')", .write = W},
    {.sql = "SELECT pg_promote()", .write = W},
    {.sql = "SELECT pg_import_system_collations('pg_catalog')", .write = W},
    // User functions from the catalog and config.
    {.sql = "SELECT audit_log('x')", .write = W},
    {.sql = "SELECT public.audit_log('x')", .write = W},
    {.sql = "SELECT \"Audit_Log\"('x')", .write = W},
    {.sql = "SELECT * FROM t WHERE audit_log(t.x)", .write = W},
    {.sql = "SELECT app.bump_counter()", .write = W},
    {.sql = "SELECT bump_counter()", .write = W},
    {.sql = "SELECT refresh_cache()", .write = W},
    {.sql = "SELECT anyschema.refresh_cache()", .write = W},
    {.sql = "SELECT billing.charge(1)", .write = W},
    {.sql = "SELECT charge(1)", .write = W},
    {.sql = "SELECT * FROM audit_log('x') AS a(r)", .write = W},
    {.sql = "SELECT touch(1) FROM t FOR UPDATE", .write = W},
    // DDL and other utility statements.
    {.sql = "CREATE TABLE t (a int)", .write = W, .kind = StatementKind::other},
    {.sql = "CREATE TEMP TABLE t (a int)", .write = W, .pins = true},
    {.sql = "CREATE TEMPORARY TABLE t (a int) ON COMMIT DROP", .write = W, .pins = true},
    {.sql = "CREATE LOCAL TEMP TABLE t (a int) ON COMMIT DELETE ROWS", .write = W, .pins = true},
    {.sql = "CREATE TABLE pg_temp.t (a int)", .write = W, .pins = true},
    {.sql = "CREATE TEMP SEQUENCE s", .write = W, .pins = true},
    {.sql = "CREATE SEQUENCE s", .write = W},
    {.sql = "CREATE TEMP VIEW v AS SELECT 1", .write = W, .pins = true},
    {.sql = "CREATE VIEW v AS SELECT pg_advisory_lock(1)", .write = W},
    {.sql = "CREATE TEMP TABLE t AS SELECT 1", .write = W, .pins = true},
    {.sql = "CREATE TABLE t2 AS SELECT pg_advisory_lock(1)", .write = W, .pins = true},
    {.sql = "CREATE TABLE t2 AS SELECT * FROM t", .write = W},
    {.sql = "CREATE UNLOGGED TABLE u (a int)", .write = W},
    {.sql = "CREATE MATERIALIZED VIEW mv AS SELECT 1", .write = W},
    {.sql = "CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql", .write = W, .pins = true},
    {.sql = "CREATE FUNCTION public.f() RETURNS int AS 'select nextval(''s'')' LANGUAGE sql", .write = W},
    {.sql = "CREATE TABLE t (id int DEFAULT nextval('s'))", .write = W},
    {.sql = "CREATE INDEX CONCURRENTLY i ON t (a)", .write = W},
    {.sql = "ALTER TABLE t ADD COLUMN b int", .write = W},
    {.sql = "DROP TABLE IF EXISTS t CASCADE", .write = W},
    {.sql = "TRUNCATE t", .write = W},
    {.sql = "GRANT SELECT ON t TO u", .write = W},
    {.sql = "REVOKE SELECT ON t FROM u", .write = W},
    {.sql = "COMMENT ON TABLE t IS 'x'", .write = W},
    {.sql = "LOCK TABLE t IN ACCESS SHARE MODE", .write = W},
    {.sql = "VACUUM t", .write = W},
    {.sql = "VACUUM (ANALYZE) t", .write = W},
    {.sql = "ANALYZE t", .write = W},
    {.sql = "CLUSTER t USING i", .write = W},
    {.sql = "REINDEX TABLE t", .write = W},
    {.sql = "REFRESH MATERIALIZED VIEW mv", .write = W},
    {.sql = "CHECKPOINT", .write = W},
    {.sql = "CREATE EXTENSION hstore", .write = W},
    {.sql = "ALTER SYSTEM SET work_mem = '1MB'", .write = W},
    {.sql = "CREATE ROLE r LOGIN", .write = W},
    {.sql = "REASSIGN OWNED BY a TO b", .write = W},
    {.sql = "LOAD 'auto_explain'", .write = W},
    {.sql = "CALL p(1)", .write = W, .kind = StatementKind::call},
    {.sql = "DO $$ BEGIN PERFORM 1; END $$", .write = W, .kind = StatementKind::call},
    // COPY.
    {.sql = "COPY t FROM STDIN", .write = W, .kind = StatementKind::copy_from},
    {.sql = "COPY t (a, b) FROM STDIN WITH (FORMAT csv)", .write = W},
    {.sql = "COPY t FROM '/tmp/data.csv' CSV", .write = W},
    {.sql = "COPY t TO '/tmp/out.csv'", .write = W, .kind = StatementKind::copy_to},
    {.sql = "COPY t TO PROGRAM 'gzip > /tmp/x.gz'", .write = W},
    {.sql = "COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT", .write = W},
    {.sql = "COPY (SELECT nextval('s')) TO STDOUT", .write = W},
    {.sql = "COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", .write = W},
    // EXPLAIN ANALYZE runs the statement.
    {.sql = "EXPLAIN ANALYZE DELETE FROM t", .write = W, .kind = StatementKind::explain},
    {.sql = "EXPLAIN (ANALYZE) UPDATE t SET a = 1", .write = W},
    {.sql = "EXPLAIN (ANALYZE true, COSTS off) INSERT INTO t VALUES (1)", .write = W},
    {.sql = "EXPLAIN (ANALYZE 1) DELETE FROM t", .write = W},
    {.sql = "EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE", .write = W},
    {.sql = "EXPLAIN ANALYZE SELECT nextval('s')", .write = W},
    {.sql = "EXPLAIN ANALYZE WITH x AS (DELETE FROM t RETURNING 1) SELECT * FROM x", .write = W},
    {.sql = "EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", .write = W, .pins = true},
    // LISTEN / NOTIFY / UNLISTEN.
    {.sql = "LISTEN ch", .write = W, .kind = StatementKind::listen, .pins = true},
    {.sql = "NOTIFY ch, 'x'", .write = W, .kind = StatementKind::listen},
    {.sql = "UNLISTEN ch", .write = W, .kind = StatementKind::listen},
    {.sql = "UNLISTEN *", .write = W},
    // Effects inside DML.
    {.sql = "INSERT INTO t VALUES (pg_advisory_lock(1))", .write = W, .pins = true},
    {.sql = "UPDATE t SET v = currval('s')", .write = W, .currval = true},
    {.sql = "INSERT INTO t VALUES (nextval('s')) RETURNING currval('s')", .write = W, .currval = true},
    // Multi-statement strings: a write if any statement is.
    {.sql = "SELECT 1; INSERT INTO t VALUES (1)", .write = W},
    {.sql = "INSERT INTO t VALUES (1); SELECT 1", .write = W},
    {.sql = "SELECT 1; SELECT nextval('s')", .write = W},
    {.sql = "SELECT 1; LISTEN c", .write = W, .pins = true},
    {.sql = "SELECT currval('s'); DELETE FROM t", .write = W, .currval = true},
};

const Row transactions[] = {
    {.sql = "BEGIN", .write = R, .kind = StatementKind::transaction, .tx = Tx::begin},
    {.sql = "BEGIN READ ONLY", .write = R, .tx = Tx::begin_read_only},
    {.sql = "BEGIN READ WRITE", .write = R, .tx = Tx::begin},
    {.sql = "BEGIN WORK", .write = R, .tx = Tx::begin},
    {.sql = "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ", .write = R, .tx = Tx::begin},
    {.sql = "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE", .write = R, .tx = Tx::begin_read_only},
    {.sql = "START TRANSACTION", .write = R, .tx = Tx::begin},
    {.sql = "START TRANSACTION READ ONLY", .write = R, .tx = Tx::begin_read_only},
    {.sql = "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY", .write = R, .tx = Tx::begin_read_only},
    {.sql = "START TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ WRITE", .write = R, .tx = Tx::begin},
    {.sql = "START TRANSACTION READ ONLY, READ WRITE", .write = R, .tx = Tx::begin},
    {.sql = "COMMIT", .write = R, .tx = Tx::commit},
    {.sql = "COMMIT WORK", .write = R, .tx = Tx::commit},
    {.sql = "END", .write = R, .tx = Tx::commit},
    {.sql = "COMMIT AND CHAIN", .write = R, .tx = Tx::commit},
    {.sql = "ROLLBACK", .write = R, .tx = Tx::rollback},
    {.sql = "ABORT", .write = R, .tx = Tx::rollback},
    {.sql = "ROLLBACK AND CHAIN", .write = R, .tx = Tx::rollback},
    {.sql = "SAVEPOINT sp", .write = R, .tx = Tx::savepoint_or_release},
    {.sql = "RELEASE SAVEPOINT sp", .write = R, .tx = Tx::savepoint_or_release},
    {.sql = "RELEASE sp", .write = R, .tx = Tx::savepoint_or_release},
    {.sql = "ROLLBACK TO SAVEPOINT sp", .write = R, .tx = Tx::savepoint_or_release},
    {.sql = "ROLLBACK TO sp", .write = R, .tx = Tx::savepoint_or_release},
    {.sql = "PREPARE TRANSACTION 'x'", .write = R, .tx = Tx::prepare_transaction},
    {.sql = "COMMIT PREPARED 'x'", .write = W, .kind = StatementKind::transaction},
    {.sql = "ROLLBACK PREPARED 'x'", .write = W},
    {.sql = "BEGIN; SELECT 1; COMMIT", .write = R, .tx = Tx::begin},
    {.sql = "BEGIN READ ONLY; SELECT 1", .write = R, .tx = Tx::begin_read_only},
    {.sql = "BEGIN; INSERT INTO t VALUES (1); COMMIT", .write = W, .tx = Tx::begin},
};

const Row session_state[] = {
    {.sql = "SET search_path = a, public", .write = R, .kind = StatementKind::session, .session = SessionEffect::set, .set_name = "search_path", .set_value = "a, public"},
    {.sql = "SET SESSION search_path TO x", .write = R, .session = SessionEffect::set, .set_name = "search_path", .set_value = "x"},
    {.sql = "SET default_transaction_read_only = on", .write = R, .session = SessionEffect::set, .set_name = "default_transaction_read_only", .set_value = "on"},
    {.sql = "SET default_transaction_read_only TO off", .write = R, .session = SessionEffect::set, .set_name = "default_transaction_read_only", .set_value = "off"},
    {.sql = "SET SESSION default_transaction_read_only = true", .write = R, .session = SessionEffect::set, .set_name = "default_transaction_read_only", .set_value = "true"},
    {.sql = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", .write = R, .session = SessionEffect::set, .set_name = "default_transaction_read_only", .set_value = "on"},
    {.sql = "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", .write = R, .session = SessionEffect::set, .set_name = "default_transaction_read_only", .set_value = "off"},
    {.sql = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE", .write = R, .session = SessionEffect::set, .set_name = "default_transaction_isolation", .set_value = "serializable"},
    {.sql = "SET LOCAL search_path = x", .write = R, .session = SessionEffect::set_transaction_scoped, .set_name = "search_path", .set_value = "x"},
    {.sql = "SET LOCAL statement_timeout = 0", .write = R, .session = SessionEffect::set_transaction_scoped, .set_name = "statement_timeout", .set_value = "0"},
    {.sql = "SET TRANSACTION READ ONLY", .write = R, .session = SessionEffect::set_transaction_scoped, .set_name = "transaction"},
    {.sql = "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", .write = R, .session = SessionEffect::set_transaction_scoped, .set_name = "transaction"},
    {.sql = "SET TIME ZONE 'UTC'", .write = R, .session = SessionEffect::set, .set_name = "timezone", .set_value = "UTC"},
    {.sql = "SET statement_timeout = 5000", .write = R, .session = SessionEffect::set, .set_name = "statement_timeout", .set_value = "5000"},
    {.sql = "SET work_mem = '64MB'", .write = R, .session = SessionEffect::set, .set_name = "work_mem", .set_value = "64MB"},
    {.sql = "SET ROLE app", .write = R, .session = SessionEffect::set, .set_name = "role", .set_value = "app"},
    {.sql = "SET \"Search_Path\" = x", .write = R, .session = SessionEffect::set, .set_name = "search_path", .set_value = "x"},
    {.sql = "SET application_name = 'my app'", .write = R, .session = SessionEffect::set, .set_name = "application_name", .set_value = "my app"},
    {.sql = "SET search_path TO DEFAULT", .write = R, .session = SessionEffect::reset, .set_name = "search_path"},
    {.sql = "RESET search_path", .write = R, .session = SessionEffect::reset, .set_name = "search_path"},
    {.sql = "RESET ALL", .write = R, .session = SessionEffect::reset_all},
    {.sql = "DISCARD ALL", .write = R, .kind = StatementKind::session, .session = SessionEffect::discard_all},
    {.sql = "DISCARD PLANS", .write = R, .session = SessionEffect::discard_other},
    {.sql = "DISCARD TEMP", .write = R, .session = SessionEffect::discard_other},
    {.sql = "DISCARD SEQUENCES", .write = R, .session = SessionEffect::discard_other},
    {.sql = "SET search_path = x; INSERT INTO t VALUES (1)", .write = W, .session = SessionEffect::set, .set_name = "search_path", .set_value = "x"},
};

const Row cursors[] = {
    {.sql = "DECLARE c CURSOR FOR SELECT * FROM t", .write = R, .kind = StatementKind::cursor},
    {.sql = "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t", .write = R, .pins = true},
    {.sql = "DECLARE c CURSOR FOR SELECT * FROM t FOR UPDATE", .write = W},
    {.sql = "DECLARE c SCROLL CURSOR WITHOUT HOLD FOR SELECT nextval('s')", .write = W},
    {.sql = "DECLARE c BINARY CURSOR FOR SELECT 1", .write = R},
    {.sql = "FETCH 10 FROM c", .write = R, .kind = StatementKind::cursor},
    {.sql = "FETCH ALL IN c", .write = R},
    {.sql = "MOVE NEXT IN c", .write = R},
    {.sql = "CLOSE c", .write = R, .kind = StatementKind::cursor},
    {.sql = "CLOSE ALL", .write = R},
};

const Row hints[] = {
    {.sql = "/* pgswitch:primary */ SELECT 1", .write = R, .hint = Hint::primary},
    {.sql = "/*pgswitch:replica*/ SELECT 1", .write = R, .hint = Hint::replica},
    {.sql = "  \n/* pgswitch:replica */ INSERT INTO t VALUES (1)", .write = W, .hint = Hint::replica},
    {.sql = "/* PGSWITCH:PRIMARY */ SELECT 1", .write = R, .hint = Hint::primary},
    {.sql = "/* pgswitch:primary */ SELECT 1; SELECT 2", .write = R, .hint = Hint::primary},
    {.sql = "SELECT /* pgswitch:primary */ 1", .write = R},
    {.sql = "-- pgswitch:primary\nSELECT 1", .write = R},
    {.sql = "/* pgswitch:secondary */ SELECT 1", .write = R},
    {.sql = "/* note */ /* pgswitch:primary */ SELECT 1", .write = R},
};

const Row parse_errors[] = {
    {.sql = "SELEC 1", .write = W, .kind = StatementKind::invalid, .parse_error = true},
    {.sql = "SELECT * FROM", .write = W, .parse_error = true},
    {.sql = "INSERT INTO", .write = W, .parse_error = true},
    {.sql = "SELECT 'unterminated", .write = W, .parse_error = true},
    {.sql = "SELECT 1; SELEC 2", .write = W, .parse_error = true},
    {.sql = "/* pgswitch:replica */ SELEC 1", .write = W, .hint = Hint::replica, .parse_error = true},
};
// clang-format on

template <std::size_t N>
void run_table(const Row (&rows)[N])
{
    const FunctionCatalog catalog = test_catalog();
    for (const Row& row : rows) {
        SUBCASE(row.sql)
        {
            check_row(row, catalog);
        }
    }
}

Classification one(const char* sql)
{
    return classify(sql, nullptr);
}

}  // namespace

TEST_CASE("classifier: reads")
{
    run_table(reads);
}
TEST_CASE("classifier: writes")
{
    run_table(writes);
}
TEST_CASE("classifier: transaction control")
{
    run_table(transactions);
}
TEST_CASE("classifier: session state")
{
    run_table(session_state);
}
TEST_CASE("classifier: cursors")
{
    run_table(cursors);
}
TEST_CASE("classifier: hints")
{
    run_table(hints);
}
TEST_CASE("classifier: parse errors are writes")
{
    run_table(parse_errors);
}

TEST_CASE("classifier: the tables hold at least 150 statements")
{
    const std::size_t rows = std::size(reads) + std::size(writes) + std::size(transactions) + std::size(session_state) +
                             std::size(cursors) + std::size(hints) + std::size(parse_errors);
    CHECK(rows >= 150);
}

TEST_CASE("classifier: SQL PREPARE / EXECUTE / DEALLOCATE")
{
    struct PrepRow {
        const char* sql;
        bool write;
        std::optional<std::string> prepare = std::nullopt;
        std::optional<std::string> execute = std::nullopt;
        std::optional<std::string> deallocate = std::nullopt;
        bool inner_write = false;
        bool deallocate_all = false;
    };
    // clang-format off
    const PrepRow rows[] = {
        {.sql = "PREPARE p AS SELECT 1", .write = R, .prepare = "p"},
        {.sql = "PREPARE q (int) AS INSERT INTO t VALUES ($1)", .write = R, .prepare = "q", .inner_write = true},
        {.sql = "PREPARE r AS SELECT * FROM t FOR UPDATE", .write = R, .prepare = "r", .inner_write = true},
        {.sql = "PREPARE s AS SELECT nextval('s')", .write = R, .prepare = "s", .inner_write = true},
        {.sql = "PREPARE u AS WITH d AS (DELETE FROM t RETURNING 1) SELECT * FROM d", .write = R, .prepare = "u", .inner_write = true},
        {.sql = "EXECUTE p", .write = R, .execute = "p"},
        {.sql = "EXECUTE p(1, 'x')", .write = R, .execute = "p"},
        {.sql = "EXECUTE q(nextval('s'))", .write = W, .execute = "q"},
        {.sql = "EXPLAIN ANALYZE EXECUTE p", .write = R, .execute = "p"},
        {.sql = "EXPLAIN EXECUTE p", .write = R},
        {.sql = "DEALLOCATE p", .write = R, .deallocate = "p"},
        {.sql = "DEALLOCATE PREPARE p", .write = R, .deallocate = "p"},
        {.sql = "DEALLOCATE ALL", .write = R, .deallocate_all = true},
        {.sql = "DEALLOCATE PREPARE ALL", .write = R, .deallocate_all = true},
    };
    // clang-format on
    for (const PrepRow& row : rows) {
        SUBCASE(row.sql)
        {
            const Classification c = one(row.sql);
            REQUIRE(c.statements.size() == 1);
            const StatementInfo& s = c.statements[0];
            CHECK(c.write == row.write);
            CHECK(s.prepare_name == row.prepare);
            CHECK(s.execute_name == row.execute);
            CHECK(s.deallocate_name == row.deallocate);
            CHECK(s.prepared_statement_is_write == row.inner_write);
            CHECK(s.deallocate_all == row.deallocate_all);
            const bool bookkeeping = row.prepare || row.execute || row.deallocate || row.deallocate_all;
            CHECK(c.has_session_bookkeeping == bookkeeping);
            CHECK(c.is_plain_read() == (!bookkeeping && !row.write));  // EXPLAIN EXECUTE p only plans
        }
    }
}

TEST_CASE("classifier: multi-statement text keeps per-statement classes and byte ranges")
{
    const std::string sql = "SELECT 1; /* pgswitch:primary */ INSERT INTO t VALUES (1);SET search_path = x";
    const Classification c = one(sql.c_str());
    REQUIRE(c.statements.size() == 3);
    CHECK(c.write);
    CHECK(c.hint == Hint::none);  // the text's own leading comment decides the whole
    CHECK_FALSE(c.statements[0].write);
    CHECK(c.statements[1].write);
    CHECK(c.statements[1].hint == Hint::primary);
    CHECK(c.statements[2].session == SessionEffect::set);
    CHECK(sql.substr(c.statements[0].offset, c.statements[0].length) == "SELECT 1");
    CHECK(sql.substr(c.statements[1].offset, c.statements[1].length) ==
          " /* pgswitch:primary */ INSERT INTO t VALUES (1)");
    // The last statement runs to the end of the text: ready to replay on another server.
    CHECK(sql.substr(c.statements[2].offset, c.statements[2].length) == "SET search_path = x");
}

TEST_CASE("classifier: empty text has no statements and does not write")
{
    for (const char* sql : {"", "   ", ";", ";;", "/* just a comment */", "-- nothing\n"}) {
        CAPTURE(sql);
        const Classification c = one(sql);
        CHECK(c.statements.empty());
        CHECK_FALSE(c.write);
        CHECK_FALSE(c.parse_error);
        CHECK(c.is_plain_read());
    }
}

TEST_CASE("classifier: a parse error covers the whole text")
{
    const Classification c = one("SELECT 1; SELEC 2");
    REQUIRE(c.statements.size() == 1);
    CHECK(c.statements[0].parse_error);
    CHECK(c.statements[0].offset == 0);
    CHECK(c.statements[0].length == 17);
}

TEST_CASE("classifier: an embedded NUL is not silently truncated")
{
    const std::string sql("SELECT 1\0; DELETE FROM t", 24);
    const Classification c = classify(sql, nullptr);
    CHECK(c.write);
    CHECK(c.parse_error);
}

TEST_CASE("classifier: COMMIT/ROLLBACK AND CHAIN are flagged")
{
    CHECK(one("COMMIT AND CHAIN").statements[0].tx_chain);
    CHECK(one("ROLLBACK AND CHAIN").statements[0].tx_chain);
    CHECK_FALSE(one("COMMIT AND NO CHAIN").statements[0].tx_chain);
    CHECK_FALSE(one("COMMIT").statements[0].tx_chain);
}

TEST_CASE("classifier: without a catalog only built-ins write")
{
    CHECK_FALSE(one("SELECT audit_log('x')").write);
    CHECK(one("SELECT nextval('s')").write);
    CHECK(one("SELECT pg_advisory_lock(1)").pins_primary);
    CHECK(one("SELECT currval('s')").uses_currval);
    // A user function that happens to share a built-in's name, in its own schema.
    CHECK_FALSE(one("SELECT myschema.nextval('s')").write);
}

TEST_CASE("classifier: plain reads are what the router may balance")
{
    CHECK(one("SELECT 1").is_plain_read());
    CHECK(one("SHOW work_mem").is_plain_read());
    CHECK_FALSE(one("SELECT currval('s')").is_plain_read());
    CHECK_FALSE(one("BEGIN READ ONLY").is_plain_read());
    CHECK_FALSE(one("SET x.y = 1").is_plain_read());
    CHECK_FALSE(one("DECLARE c CURSOR WITH HOLD FOR SELECT 1").is_plain_read());
    CHECK_FALSE(one("UNLISTEN *").is_plain_read());
}

TEST_CASE("classifier: very deep nesting is a write, not a crash")
{
    std::string sql = "SELECT ";
    for (int i = 0; i < 2000; ++i)
        sql += "abs(";
    sql += "1";
    for (int i = 0; i < 2000; ++i)
        sql += ")";
    const Classification c = one(sql.c_str());
    CHECK(c.write);  // too deep to walk, or too deep for the parser: either way a write
}

TEST_CASE("parse_hint")
{
    CHECK(parse_hint("/* pgswitch:primary */") == Hint::primary);
    CHECK(parse_hint("\t/*  pgswitch:replica\n*/SELECT") == Hint::replica);
    CHECK(parse_hint("/* pgswitch:primary") == Hint::none);
    CHECK(parse_hint("/**/ SELECT 1") == Hint::none);
    CHECK(parse_hint("/* pgswitch:primary, please */ SELECT 1") == Hint::none);
    CHECK(parse_hint("") == Hint::none);
}

TEST_CASE("FunctionCatalog: lookups and precedence")
{
    const FunctionCatalog c = test_catalog();
    CHECK(c.generation() == 7);
    CHECK(c.volatile_count() == 4);
    CHECK(c.lookup("", "audit_log").write);
    CHECK(c.lookup("public", "audit_log").write);
    CHECK_FALSE(c.lookup("other", "audit_log").write);
    CHECK_FALSE(c.lookup("public", "touch").write);  // read_only_functions wins over VOLATILE
    CHECK_FALSE(c.lookup("", "touch").write);
    CHECK(c.lookup("x", "refresh_cache").write);  // unqualified config entry: any schema
    CHECK(c.lookup("billing", "charge").write);
    CHECK_FALSE(c.lookup("other", "charge").write);
    CHECK(c.lookup("", "nextval").write);  // built-ins ignore read_only_functions
    CHECK(c.lookup("pg_catalog", "pg_advisory_lock") ==
          FunctionEffect{.write = true, .pins_primary = true, .uses_currval = false});
    CHECK(c.lookup("", "lastval") == FunctionEffect{.write = false, .pins_primary = false, .uses_currval = true});
    CHECK_FALSE(c.lookup("", "unknown").write);

    FunctionCatalog mixed;
    mixed.add_volatile("Public", "MixedCase");
    mixed.add_write_function("Ops.Purge");
    CHECK(mixed.lookup("public", "mixedcase").write);
    CHECK(mixed.lookup("ops", "purge").write);
}

TEST_CASE("builtin_function_effect")
{
    CHECK(builtin_function_effect("pg_advisory_lock").pins_primary);
    CHECK(builtin_function_effect("pg_try_advisory_lock_shared").pins_primary);
    CHECK_FALSE(builtin_function_effect("pg_advisory_xact_lock").pins_primary);
    CHECK(builtin_function_effect("pg_advisory_xact_lock").write);
    CHECK(builtin_function_effect("lo_put").write);
    CHECK(builtin_function_effect("pg_stat_reset_single_table_counters").write);
    CHECK_FALSE(builtin_function_effect("pg_sleep").write);
    CHECK_FALSE(builtin_function_effect("set_config").write);  // decided by its arguments
    CHECK_FALSE(builtin_function_effect("now").write);
}

TEST_CASE("to_string names every enumerator")
{
    CHECK(to_string(Tx::begin_read_only) == "begin_read_only");
    CHECK(to_string(SessionEffect::discard_all) == "discard_all");
    CHECK(to_string(Hint::replica) == "replica");
    CHECK(to_string(StatementKind::copy_from) == "copy_from");
}
