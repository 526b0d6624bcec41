// Read/write splitting through pgswitch (SPEC §3), observed the way a user would:
// `SELECT inet_server_port()` (or `SHOW port`, or a value only one server can produce) tells
// which server ran a statement; the cluster env gives the primary's and replicas' ports.
//
// Most cases share one pgswitch with round_robin and a 100 ms health interval; the load
// balancing variants and the replica-stop case get their own. Every read-placement check runs
// on a session that has not written (read-your-writes sends such reads to the primary until the
// replicas replay past the write), or waits, with a deadline, until the gate is open.
#include "harness.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace e2e;

namespace {

int primary_port()
{
    return cluster().primary_port();
}
int replica1_port()
{
    return cluster().replica_port(1);
}
int replica2_port()
{
    return cluster().replica_port(2);
}
bool is_replica(int port)
{
    return port == replica1_port() || port == replica2_port();
}

std::string server_name(int port)
{
    if (port == primary_port())
        return "primary";
    if (port == replica1_port())
        return "replica1";
    if (port == replica2_port())
        return "replica2";
    return "port " + std::to_string(port);
}

/// Port of the server that ran `sql` (its first row's first column must be inet_server_port()).
int server_port(PGconn* c, const std::string& sql = "SELECT inet_server_port()")
{
    return std::stoi(query_value(c, sql));
}

/// Statements per server.
struct Tally {
    std::map<int, int> n;
    void add(int port) { ++n[port]; }
    int of(int port) const
    {
        auto it = n.find(port);
        return it == n.end() ? 0 : it->second;
    }
    int primary() const { return of(primary_port()); }
    int r1() const { return of(replica1_port()); }
    int r2() const { return of(replica2_port()); }
    int total() const
    {
        int t = 0;
        for (const auto& [p, k] : n)
            t += k;
        return t;
    }
    std::string str() const
    {
        std::ostringstream o;
        for (const auto& [p, k] : n)
            o << server_name(p) << "=" << k << " ";
        return o.str();
    }
};

/// A superuser connection straight to one server (no pgswitch).
Conn direct(int port)
{
    const ClusterEnv& env = cluster();
    return connect_ok("host=" + env.host() + " port=" + std::to_string(port) + " dbname=" + cq(env.get("APP_DB")) +
                      " user=" + cq(env.get("SUPERUSER")) + " password=" + cq(env.get("SUPERPASS")) +
                      " connect_timeout=5 sslmode=disable");
}

/// Waits until both replicas have replayed everything the primary has written so far.
void wait_replay_caught_up(std::chrono::milliseconds timeout = 15s)
{
    Conn p = direct(primary_port());
    const std::string lsn = query_value(p.get(), "SELECT pg_current_wal_lsn()");
    for (int port : {replica1_port(), replica2_port()}) {
        Conn r = direct(port);
        const auto deadline = Clock::now() + timeout;
        for (;;) {
            if (query_value(r.get(), "SELECT coalesce(pg_last_wal_replay_lsn() >= '" + lsn + "'::pg_lsn, false)") ==
                "t")
                break;
            REQUIRE_MESSAGE(Clock::now() < deadline, server_name(port) << " did not replay up to " << lsn);
            std::this_thread::sleep_for(10ms);
        }
    }
}

/// Reads from a session that has not written until both replicas answered (health checks
/// discover the roles shortly after pgswitch starts).
void wait_replicas_serving(Proxy& px, std::chrono::milliseconds timeout = 15s)
{
    Conn c = px.connect_app();
    Tally t;
    const auto deadline = Clock::now() + timeout;
    while (t.r1() == 0 || t.r2() == 0) {
        REQUIRE_MESSAGE(Clock::now() < deadline, "reads did not reach both replicas: " << t.str());
        t.add(server_port(c.get()));
        if (t.r1() == 0 || t.r2() == 0)
            std::this_thread::sleep_for(5ms);
    }
}

std::unique_ptr<Proxy> start_proxy(ProxyOptions o)
{
    auto px = std::make_unique<Proxy>(std::move(o));
    px->start();
    wait_replicas_serving(*px);
    return px;
}

/// The pgswitch most cases share: round_robin, read_your_writes = lsn (the default).
Proxy& routing_proxy()
{
    static std::unique_ptr<Proxy> px;
    if (px && !px->alive()) {
        FAIL_CHECK("the routing pgswitch died during an earlier test; log:\n" << px->log_text());
        px.reset();
    }
    if (!px) {
        ProxyOptions o;
        o.health_interval_ms = 100;
        o.extra_toml = "[routing]\nload_balancing = \"round_robin\"\n";
        px = start_proxy(std::move(o));
    }
    return *px;
}

/// A session of its own writes (after everything `px`'s sessions wrote so far), then reads
/// until a replica answers: from then on the read-your-writes gate of every earlier write is
/// open, so reads that still go to the primary do so for another reason (a pin).
void wait_ryw_gate_open(Proxy& px, std::chrono::milliseconds timeout = 10s)
{
    Conn c = px.connect_app();
    exec_ok(c.get(), "CREATE TABLE IF NOT EXISTS rt_ctl (id serial PRIMARY KEY, at timestamptz DEFAULT now())");
    exec_ok(c.get(), "INSERT INTO rt_ctl DEFAULT VALUES");
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        if (is_replica(server_port(c.get())))
            return;
        REQUIRE_MESSAGE(Clock::now() < deadline, "reads after a write never went back to a replica");
        std::this_thread::sleep_for(5ms);
    }
}

std::vector<std::string> split_ws(const std::string& s)
{
    std::vector<std::string> out;
    std::istringstream in(s);
    std::string w;
    while (in >> w)
        out.push_back(w);
    return out;
}

/// pg_ctl on one cluster node, as the cluster's owner ("stop -m immediate", "start").
CommandResult pg_ctl(const std::string& node, const std::vector<std::string>& args)
{
    const ClusterEnv& env = cluster();
    std::vector<std::string> argv;
    auto it = env.vars.find("PG_RUNAS");
    if (it != env.vars.end())
        argv = split_ws(it->second);
    argv.push_back(env.pgbin() + "/pg_ctl");
    argv.push_back("-D");
    argv.push_back(env.get(node + "_DATA"));
    for (const auto& a : args)
        argv.push_back(a);
    return run_command(argv, {}, 60s);
}

bool node_running(const std::string& node)
{
    return pg_ctl(node, {"status"}).exit_code == 0;
}

std::uint64_t parse_lsn(const std::string& s)
{
    unsigned hi = 0, lo = 0;
    if (std::sscanf(s.c_str(), "%X/%X", &hi, &lo) != 2)
        return 0;
    return (std::uint64_t(hi) << 32) | lo;
}

}  // namespace

// ====================================================================== 1. load balancing

TEST_CASE("routing: round_robin spreads autocommit reads over both replicas, none on the primary")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    Conn c = px.connect_app();
    Tally t;
    for (int i = 0; i < 100; ++i)
        t.add(server_port(c.get()));
    INFO("100 reads on one session: " << t.str());
    CHECK(t.primary() == 0);
    CHECK(t.total() == 100);
    CHECK(t.r1() >= 35);
    CHECK(t.r2() >= 35);

    // Three sessions taking turns: still a fair share each, still nothing on the primary.
    Conn a = px.connect_app(), b = px.connect_app(), d = px.connect_app();
    Tally t3;
    for (int i = 0; i < 40; ++i)
        for (PGconn* s : {a.get(), b.get(), d.get()})
            t3.add(server_port(s));
    INFO("120 reads over three sessions: " << t3.str());
    CHECK(t3.primary() == 0);
    CHECK(t3.r1() >= 40);
    CHECK(t3.r2() >= 40);
}

TEST_CASE("routing: replica weights 3:1 give about three times the reads to replica1")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    ProxyOptions o;
    o.health_interval_ms = 100;
    o.weights = {{"replica1", 3}, {"replica2", 1}};
    o.extra_toml = "[routing]\nload_balancing = \"round_robin\"\n";
    auto px = start_proxy(std::move(o));
    Conn c = px->connect_app();
    Tally t;
    for (int i = 0; i < 200; ++i)
        t.add(server_port(c.get()));
    INFO("200 reads with weights replica1=3 replica2=1: " << t.str());
    CHECK(t.primary() == 0);
    REQUIRE(t.r2() > 0);
    const double ratio = double(t.r1()) / double(t.r2());
    CHECK(ratio >= 2.3);
    CHECK(ratio <= 4.0);
}

TEST_CASE("routing: least_connections sends reads away from a replica busy with a long statement")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    ProxyOptions o;
    o.health_interval_ms = 100;
    o.extra_toml = "[routing]\nload_balancing = \"least_connections\"\n";
    auto px = start_proxy(std::move(o));

    Conn c = px->connect_app();
    Tally idle;
    for (int i = 0; i < 60; ++i)
        idle.add(server_port(c.get()));
    INFO("60 reads, nothing else in flight: " << idle.str());
    CHECK(idle.primary() == 0);
    CHECK(idle.total() == 60);

    // Which replica runs a given in-flight statement: pg_stat_activity on each.
    Conn d1 = direct(replica1_port()), d2 = direct(replica2_port());
    auto where_running = [&](const std::string& marker) -> int {
        const auto deadline = Clock::now() + 10s;
        for (;;) {
            for (auto [conn, port] : {std::pair{d1.get(), replica1_port()}, std::pair{d2.get(), replica2_port()}}) {
                const std::string n = query_value(
                    conn, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%" + marker +
                              "%' AND pid <> pg_backend_pid()");
                if (n != "0")
                    return port;
            }
            REQUIRE_MESSAGE(Clock::now() < deadline, "the slow read " << marker << " never showed up on a replica");
            std::this_thread::sleep_for(5ms);
        }
    };

    Conn slow1 = px->connect_app();
    REQUIRE(PQsendQuery(slow1.get(), "SELECT inet_server_port() AS rt_lc_one FROM pg_sleep(2)") == 1);
    const int busy = where_running("rt_lc_one");
    REQUIRE(is_replica(busy));
    const int other = busy == replica1_port() ? replica2_port() : replica1_port();

    Tally during;
    for (int i = 0; i < 20; ++i)
        during.add(server_port(c.get()));
    INFO("20 reads while " << server_name(busy) << " runs a 2 s statement: " << during.str());
    CHECK(during.of(other) == 20);

    // A second long read goes to the replica with nothing in flight.
    Conn slow2 = px->connect_app();
    REQUIRE(PQsendQuery(slow2.get(), "SELECT inet_server_port() AS rt_lc_two FROM pg_sleep(1)") == 1);
    CHECK(where_running("rt_lc_two") == other);

    for (PGconn* s : {slow1.get(), slow2.get()}) {
        Result r(PQgetResult(s));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(s));
        CHECK(is_replica(std::stoi(PQgetvalue(r.get(), 0, 0))));
        while (Result more{PQgetResult(s)}) {
        }
    }
}

TEST_CASE("routing: adaptive sends few reads to a replica that answers them slowly; round_robin sends it half")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    // The same read costs 20 ms on replica1 and next to nothing on replica2.
    const std::string slow_on_replica1 = "SELECT inet_server_port() FROM (SELECT CASE WHEN inet_server_port() = " +
                                         std::to_string(replica1_port()) + " THEN pg_sleep(0.02) END) AS rt_adaptive";
    auto share_of_replica1 = [&](const std::string& policy) {
        ProxyOptions o;
        o.health_interval_ms = 100;
        o.extra_toml = "[routing]\nload_balancing = \"" + policy + "\"\n";
        auto px = start_proxy(std::move(o));
        Conn c = px->connect_app();
        Tally t;
        for (int i = 0; i < 100; ++i)
            t.add(server_port(c.get(), slow_on_replica1));
        INFO(policy << ": 100 reads: " << t.str());
        CHECK(t.primary() == 0);
        CHECK(t.total() == 100);
        return t.of(replica1_port());
    };
    const int adaptive = share_of_replica1("adaptive");
    const int round_robin = share_of_replica1("round_robin");
    MESSAGE("reads on the slow replica: adaptive " << adaptive << " of 100, round_robin " << round_robin << " of 100");
    CHECK(round_robin == 50);
    // (It may get none: both start unmeasured, and a first read on replica2
    // makes replica2 the cheaper one. Not starved for good: an avoided
    // server's estimate decays until it is tried again — unit-tested.)
    CHECK(adaptive <= 15);
}

TEST_CASE("routing: ip_hash keeps a client on one replica")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    ProxyOptions o;
    o.health_interval_ms = 100;
    o.extra_toml = "[routing]\nload_balancing = \"ip_hash\"\n";
    auto px = std::make_unique<Proxy>(std::move(o));
    px->start();
    // Only one replica serves 127.0.0.1 here, so wait for "a replica", not both.
    std::set<int> chosen;
    {
        Conn c = px->connect_app();
        const auto deadline = Clock::now() + 15s;
        while (!is_replica(server_port(c.get()))) {
            REQUIRE_MESSAGE(Clock::now() < deadline, "ip_hash reads never reached a replica");
            std::this_thread::sleep_for(10ms);
        }
    }
    // Every client connects from 127.0.0.1 (one address on loopback): each session sticks to
    // one replica, and all of them to the same one.
    for (int s = 0; s < 5; ++s) {
        Conn c = px->connect_app();
        Tally t;
        for (int i = 0; i < 30; ++i)
            t.add(server_port(c.get()));
        INFO("session " << s << ": " << t.str());
        CHECK(t.n.size() == 1);
        CHECK(is_replica(t.n.begin()->first));
        chosen.insert(t.n.begin()->first);
    }
    CHECK(chosen.size() == 1);
}

// ====================================================================== 2. statement classes

TEST_CASE("routing: every kind of write runs on the primary, reads on replicas")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP VIEW IF EXISTS rt_portview; DROP TABLE IF EXISTS rt_w, rt_into, rt_ddl CASCADE;"
                         "DROP SEQUENCE IF EXISTS rt_seq;"
                         "DROP FUNCTION IF EXISTS rt_vol(int); DROP FUNCTION IF EXISTS rt_port();"
                         "CREATE TABLE rt_w (id int, v int DEFAULT 0);"
                         "INSERT INTO rt_w VALUES (0, 0), (100, 0), (101, 0);"
                         "CREATE SEQUENCE rt_seq;"
                         "CREATE VIEW rt_portview AS SELECT inet_server_port() AS port;"
                         // A user function that writes: VOLATILE in the catalog.
                         "CREATE FUNCTION rt_vol(n int) RETURNS int VOLATILE LANGUAGE sql AS "
                         "$$ INSERT INTO rt_w VALUES (n, 1) RETURNING 1 $$;"
                         // IMMUTABLE on purpose: the planner evaluates it, so plain EXPLAIN shows the port.
                         "CREATE FUNCTION rt_port() RETURNS int IMMUTABLE LANGUAGE plpgsql AS "
                         "$$ BEGIN RETURN inet_server_port(); END $$;");
    }
    wait_replay_caught_up();
    Conn prim = direct(primary_port());

    struct Write {
        const char* what;
        std::string sql;
        bool port_in_result;  // first column of the first row is inet_server_port()
        std::string verify;   // run on the primary directly afterwards; must return "t"
    };
    const std::vector<Write> writes = {
        {"INSERT", "INSERT INTO rt_w VALUES (1) RETURNING inet_server_port()", true,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 1"},
        {"UPDATE", "UPDATE rt_w SET v = v + 1 WHERE id = 0 RETURNING inet_server_port()", true,
         "SELECT v = 1 FROM rt_w WHERE id = 0"},
        {"DELETE", "DELETE FROM rt_w WHERE id = 100 RETURNING inet_server_port()", true,
         "SELECT count(*) = 0 FROM rt_w WHERE id = 100"},
        {"SELECT ... FOR UPDATE", "SELECT inet_server_port() FROM rt_w WHERE id = 101 FOR UPDATE", true, ""},
        {"SELECT ... FOR SHARE", "SELECT inet_server_port() FROM rt_w WHERE id = 101 FOR SHARE", true, ""},
        {"writable CTE", "WITH x AS (INSERT INTO rt_w VALUES (2) RETURNING id) SELECT inet_server_port() FROM x", true,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 2"},
        {"SELECT INTO", "SELECT inet_server_port() AS port INTO rt_into", false,
         "SELECT port = inet_server_port() FROM rt_into"},
        {"nextval", "SELECT inet_server_port(), nextval('rt_seq')", true, ""},
        {"setval", "SELECT inet_server_port(), setval('rt_seq', 500)", true, "SELECT last_value = 500 FROM rt_seq"},
        {"pg_advisory_xact_lock", "SELECT inet_server_port(), pg_advisory_xact_lock(1)", true, ""},
        {"pg_notify", "SELECT inet_server_port(), pg_notify('rt_chan', 'x')", true, ""},
        {"user VOLATILE function", "SELECT inet_server_port(), rt_vol(5000)", true,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 5000"},
        {"user VOLATILE function, schema-qualified", "SELECT inet_server_port(), public.rt_vol(5001)", true,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 5001"},
        {"multi-statement query with one write", "INSERT INTO rt_w VALUES (3); SELECT inet_server_port()", true,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 3"},
        {"EXPLAIN ANALYZE of an INSERT", "EXPLAIN ANALYZE INSERT INTO rt_w VALUES (4)", false,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 4"},
        {"DO block", "DO $$ BEGIN INSERT INTO rt_w VALUES (6); END $$", false,
         "SELECT count(*) = 1 FROM rt_w WHERE id = 6"},
        {"DDL", "CREATE TABLE rt_ddl (x int)", false, "SELECT to_regclass('rt_ddl') IS NOT NULL"},
    };
    for (const auto& w : writes) {
        const std::string what = w.what;
        CAPTURE(what);
        CAPTURE(w.sql);
        Conn c = px.connect_app();  // fresh: no pins, no read-your-writes
        Result r(PQexec(c.get(), w.sql.c_str()));
        const auto st = PQresultStatus(r.get());
        // On a replica each of these fails ("cannot execute ... in a read-only transaction").
        CHECK_MESSAGE((st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK), errmsg(c.get()));
        if (w.port_in_result && st == PGRES_TUPLES_OK && PQntuples(r.get()) == 1)
            CHECK(server_name(std::stoi(PQgetvalue(r.get(), 0, 0))) == "primary");
        else if (w.port_in_result)
            FAIL_CHECK("no row with the server's port");
        if (!w.verify.empty())
            CHECK(query_value(prim.get(), w.verify) == "t");
    }

    {  // COPY FROM
        Conn c = px.connect_app();
        Result r(PQexec(c.get(), "COPY rt_w (id, v) FROM STDIN"));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_COPY_IN, errmsg(c.get()));
        const std::string data = "7001\t1\n7002\t1\n";
        REQUIRE(PQputCopyData(c.get(), data.data(), int(data.size())) == 1);
        REQUIRE(PQputCopyEnd(c.get(), nullptr) == 1);
        Result done(PQgetResult(c.get()));
        CHECK_MESSAGE(PQresultStatus(done.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
        while (Result more{PQgetResult(c.get())}) {
        }
        CHECK(query_value(prim.get(), "SELECT count(*) FROM rt_w WHERE id IN (7001, 7002)") == "2");
    }
    {  // LISTEN: on the primary (fails on a hot standby), notifications arrive, the session stays there
        Conn c = px.connect_app();
        exec_ok(c.get(), "LISTEN rt_chan");  // fails on a hot standby
        exec_ok(prim.get(), "NOTIFY rt_chan, 'hello'");
        const auto deadline = Clock::now() + 5s;
        std::string payload;
        while (payload.empty()) {
            REQUIRE_MESSAGE(wait_readable(PQsocket(c.get()), deadline), "no notification within 5 s");
            REQUIRE(PQconsumeInput(c.get()) == 1);
            while (PGnotify* n = PQnotifies(c.get())) {
                if (std::string(n->relname) == "rt_chan")
                    payload = n->extra;
                PQfreemem(n);
            }
        }
        CHECK(payload == "hello");
        for (int i = 0; i < 5; ++i)
            CHECK(server_name(server_port(c.get())) == "primary");
    }
    {  // reads: SELECT, VALUES, TABLE, SHOW, EXPLAIN, read-only CTE
        wait_replay_caught_up();
        struct Read {
            const char* what;
            std::string sql;
            // how to find the port in the result's text (first column of every row, joined)
            enum { first_value, explain_output, explain_rows } how;
        };
        const std::vector<Read> reads = {
            {"SELECT", "SELECT inet_server_port()", Read::first_value},
            {"SELECT from a table", "SELECT inet_server_port() FROM rt_w LIMIT 1", Read::first_value},
            {"read-only CTE", "WITH x AS (SELECT 1) SELECT inet_server_port() FROM x", Read::first_value},
            {"VALUES", "VALUES (inet_server_port())", Read::first_value},
            {"TABLE", "TABLE rt_portview", Read::first_value},
            {"SHOW", "SHOW port", Read::first_value},
            {"EXPLAIN SELECT", "EXPLAIN (VERBOSE, COSTS OFF) SELECT rt_port()", Read::explain_output},
            {"EXPLAIN ANALYZE SELECT",
             "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT * FROM generate_series(1, inet_server_port())",
             Read::explain_rows},
        };
        for (const auto& rd : reads) {
            const std::string what = rd.what;
            CAPTURE(what);
            Tally t;
            for (int i = 0; i < 4; ++i) {  // fresh sessions: no writes, no pins
                Conn c = px.connect_app();
                Result r = exec_ok(c.get(), rd.sql, PGRES_TUPLES_OK);
                std::string text;
                for (int row = 0; row < PQntuples(r.get()); ++row)
                    text += std::string(PQgetvalue(r.get(), row, 0)) + "\n";
                CAPTURE(text);
                int port = 0;
                for (int p : {primary_port(), replica1_port(), replica2_port()}) {
                    const std::string ps = std::to_string(p);
                    if ((rd.how == Read::first_value && std::string(PQgetvalue(r.get(), 0, 0)) == ps) ||
                        (rd.how == Read::explain_output && text.find("Output: " + ps) != std::string::npos) ||
                        (rd.how == Read::explain_rows && text.find("rows=" + ps + " loops") != std::string::npos))
                        port = p;
                }
                REQUIRE_MESSAGE(port != 0, "no server port in the result");
                t.add(port);
            }
            INFO(t.str());
            CHECK(t.primary() == 0);
        }
    }
}

// ====================================================================== 3. transactions

TEST_CASE("routing: transactions run on one server; read-only ones on a replica")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_tx; CREATE TABLE rt_tx (id int PRIMARY KEY, v text)");
    }
    wait_replay_caught_up();
    Conn prim = direct(primary_port());

    SUBCASE("a read-write transaction: every statement on the primary, COMMIT keeps all")
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "BEGIN");
        Tally t;
        t.add(server_port(c.get()));  // a read first: still the transaction's server
        t.add(server_port(c.get(), "INSERT INTO rt_tx VALUES (1, 'a') RETURNING inet_server_port()"));
        t.add(server_port(c.get()));
        t.add(server_port(c.get(), "UPDATE rt_tx SET v = 'b' WHERE id = 1 RETURNING inet_server_port()"));
        t.add(server_port(c.get(), "SELECT inet_server_port() FROM rt_tx WHERE v = 'b'"));  // sees its own write
        const char* vals[1] = {"2"};
        Result pr(PQexecParams(c.get(), "INSERT INTO rt_tx VALUES ($1::int, 'c') RETURNING inet_server_port()", 1,
                               nullptr, vals, nullptr, nullptr, 0));
        REQUIRE_MESSAGE(PQresultStatus(pr.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        t.add(std::stoi(PQgetvalue(pr.get(), 0, 0)));
        exec_ok(c.get(), "COMMIT");
        INFO(t.str());
        CHECK(t.primary() == 6);
        CHECK(query_value(prim.get(), "SELECT string_agg(id || v, ',' ORDER BY id) FROM rt_tx") == "1b,2c");
    }
    SUBCASE("a read-only-looking explicit transaction still runs on the primary")
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "BEGIN");
        Tally t;
        for (int i = 0; i < 5; ++i)
            t.add(server_port(c.get()));
        exec_ok(c.get(), "COMMIT");
        INFO(t.str());
        CHECK(t.primary() == 5);
    }
    SUBCASE("ROLLBACK leaves nothing")
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "BEGIN");
        exec_ok(c.get(), "INSERT INTO rt_tx VALUES (10, 'x'), (11, 'y')");
        exec_ok(c.get(), "INSERT INTO rt_tx VALUES (12, 'z')");
        CHECK(query_value(c.get(), "SELECT count(*) FROM rt_tx WHERE id >= 10") == "3");
        exec_ok(c.get(), "ROLLBACK");
        CHECK(query_value(prim.get(), "SELECT count(*) FROM rt_tx WHERE id >= 10") == "0");
        CHECK(query_value(c.get(), "SELECT count(*) FROM rt_tx WHERE id >= 10") == "0");
        // A failed statement aborts the whole transaction: COMMIT turns into ROLLBACK.
        exec_ok(c.get(), "BEGIN");
        exec_ok(c.get(), "INSERT INTO rt_tx VALUES (13, 'w')");
        Result dup(PQexec(c.get(), "INSERT INTO rt_tx VALUES (13, 'dup')"));
        CHECK(sqlstate(dup.get()) == "23505");
        Result com(PQexec(c.get(), "COMMIT"));
        CHECK(std::string(PQcmdStatus(com.get())) == "ROLLBACK");
        CHECK(query_value(prim.get(), "SELECT count(*) FROM rt_tx WHERE id = 13") == "0");
    }
    SUBCASE("read-only transactions: one replica for every statement")
    {
        struct Opener {
            const char* setup;
            const char* begin;
        };
        const std::vector<Opener> openers = {
            {"", "BEGIN READ ONLY"},
            {"", "START TRANSACTION READ ONLY"},
            {"", "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"},
            {"SET default_transaction_read_only = on", "BEGIN"},
            {"SET default_transaction_read_only = on", "START TRANSACTION"},
        };
        for (const auto& op : openers) {
            const std::string opener = std::string(op.setup) + (*op.setup ? "; " : "") + op.begin;
            CAPTURE(opener);
            Conn c = px.connect_app();
            if (*op.setup)
                exec_ok(c.get(), op.setup);
            exec_ok(c.get(), op.begin);
            Tally t;
            for (int i = 0; i < 6; ++i)
                t.add(server_port(c.get(), "SELECT inet_server_port() FROM (SELECT count(*) FROM rt_tx) s"));
            CHECK(query_value(c.get(), "SHOW transaction_read_only") == "on");
            // A write inside a read-only transaction fails as PostgreSQL says, and ends nothing.
            Result w(PQexec(c.get(), "INSERT INTO rt_tx VALUES (99, 'no')"));
            CHECK(sqlstate(w.get()) == "25006");
            exec_ok(c.get(), "ROLLBACK");
            INFO(t.str());
            CHECK(t.n.size() == 1);
            CHECK(is_replica(t.n.begin()->first));
            // The session is fine afterwards.
            CHECK(query_value(c.get(), "SELECT 1") == "1");
        }
    }
}

// ====================================================================== 4. session state

TEST_CASE("routing: SET follows the session to every server, RESET restores the default everywhere")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP SCHEMA IF EXISTS rt_sp CASCADE; CREATE SCHEMA rt_sp;"
                         "CREATE TABLE rt_sp.sp_only (x int); INSERT INTO rt_sp.sp_only VALUES (42)");
    }
    wait_replay_caught_up();

    Conn c = px.connect_app();
    const std::string default_path = query_value(c.get(), "SHOW search_path");
    exec_ok(c.get(), "SET search_path = rt_sp, public");
    exec_ok(c.get(), "SET work_mem = '7MB'");

    const std::string probe = "SELECT inet_server_port(), current_setting('search_path'), current_setting('work_mem'), "
                              "(SELECT max(x) FROM sp_only)";  // sp_only resolves only through the search_path
    // Reads until both replicas answered (at least 20); every answer sees both settings.
    auto reads_until_both_replicas = [&](const std::string& sql, const std::vector<std::string>& expect) {
        Tally t;
        const auto deadline = Clock::now() + 10s;
        while (t.total() < 20 || t.r1() == 0 || t.r2() == 0) {
            REQUIRE_MESSAGE(Clock::now() < deadline, "reads did not reach both replicas: " << t.str());
            Result r = exec_ok(c.get(), sql, PGRES_TUPLES_OK);
            const int port = std::stoi(PQgetvalue(r.get(), 0, 0));
            t.add(port);
            for (size_t f = 0; f < expect.size(); ++f) {
                INFO("on " << server_name(port) << ", column " << f + 1);
                CHECK(std::string(PQgetvalue(r.get(), 0, int(f + 1))) == expect[f]);
            }
        }
        return t;
    };
    Tally t1 = reads_until_both_replicas(probe, {"rt_sp, public", "7MB", "42"});
    CHECK(t1.primary() == 0);

    // A write runs on the primary with the same settings.
    Result w = exec_ok(c.get(),
                       "INSERT INTO sp_only VALUES (43) RETURNING inet_server_port(), current_setting('search_path'), "
                       "current_setting('work_mem')",
                       PGRES_TUPLES_OK);
    CHECK(server_name(std::stoi(PQgetvalue(w.get(), 0, 0))) == "primary");
    CHECK(std::string(PQgetvalue(w.get(), 0, 1)) == "rt_sp, public");
    CHECK(std::string(PQgetvalue(w.get(), 0, 2)) == "7MB");
    // Right after the write some reads go to the primary (read your writes): same settings.
    reads_until_both_replicas(probe, {"rt_sp, public", "7MB", "43"});

    exec_ok(c.get(), "RESET search_path");
    exec_ok(c.get(), "RESET work_mem");
    const std::string probe2 =
        "SELECT inet_server_port(), current_setting('search_path'), current_setting('work_mem'), "
        "coalesce(to_regclass('sp_only')::text, 'none')";
    reads_until_both_replicas(probe2, {default_path, "4MB", "none"});
    Result w2 = exec_ok(c.get(),
                        "INSERT INTO rt_sp.sp_only VALUES (44) RETURNING inet_server_port(), "
                        "current_setting('search_path'), current_setting('work_mem')",
                        PGRES_TUPLES_OK);
    CHECK(server_name(std::stoi(PQgetvalue(w2.get(), 0, 0))) == "primary");
    CHECK(std::string(PQgetvalue(w2.get(), 0, 1)) == default_path);
    CHECK(std::string(PQgetvalue(w2.get(), 0, 2)) == "4MB");
}

// ====================================================================== 5. prepared statements

TEST_CASE("routing: named statements used 1000 times across reads and writes (libpq)")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_ps; CREATE TABLE rt_ps (id int PRIMARY KEY)");
    }
    wait_replay_caught_up();
    wait_replicas_serving(px);  // pgswitch saw both replicas replay that DDL (every session's reads need it)

    Conn c = px.connect_app();
    auto exec_prepared = [&](const char* name, int arg) -> Result {
        const std::string a = std::to_string(arg);
        const char* vals[1] = {a.c_str()};
        return Result(PQexecPrepared(c.get(), name, 1, vals, nullptr, nullptr, 0));
    };
    Result p1(PQprepare(c.get(), "rt_rd", "SELECT inet_server_port(), $1::int + 1", 1, nullptr));
    REQUIRE_MESSAGE(PQresultStatus(p1.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
    Result desc(PQdescribePrepared(c.get(), "rt_rd"));
    REQUIRE_MESSAGE(PQresultStatus(desc.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
    CHECK(PQnparams(desc.get()) == 1);
    CHECK(PQnfields(desc.get()) == 2);
    // Nothing written yet: the read statement runs on the replicas (prepared where it lands).
    Tally first;
    for (int i = 0; i < 10; ++i) {
        Result r = exec_prepared("rt_rd", i);
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        first.add(std::stoi(PQgetvalue(r.get(), 0, 0)));
    }
    INFO("the prepared read before any write: " << first.str());
    CHECK(first.primary() == 0);
    CHECK(first.r1() > 0);
    CHECK(first.r2() > 0);

    // Another session writes just before (so the primary's position is ahead of what the
    // health checks last saw the replicas replay); this session only prepares a write.
    exec_ok(px.connect_app().get(), "INSERT INTO rt_ps VALUES (-1)");
    Result p2(
        PQprepare(c.get(), "rt_wr", "INSERT INTO rt_ps VALUES ($1::int) RETURNING inet_server_port()", 1, nullptr));
    REQUIRE_MESSAGE(PQresultStatus(p2.get()) == PGRES_COMMAND_OK, errmsg(c.get()));
    // Preparing a write executes nothing, so it is no write to read back: reads stay on replicas.
    Tally after_prepare;
    for (int i = 0; i < 6; ++i)
        after_prepare.add(server_port(c.get()));
    CHECK_MESSAGE(after_prepare.primary() == 0,
                  "reads right after PQprepare of an INSERT (nothing executed): "
                      << after_prepare.str() << "; SHOW pgswitch.lsn = " << query_value(c.get(), "SHOW pgswitch.lsn"));

    Tally reads, writes;
    int failures = 0;
    std::string first_failure;
    for (int i = 0; i < 1000; ++i) {
        const bool read = i % 2 == 0;
        Result r = exec_prepared(read ? "rt_rd" : "rt_wr", i);
        if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1 ||
            (read && std::string(PQgetvalue(r.get(), 0, 1)) != std::to_string(i + 1))) {
            if (failures++ == 0)
                first_failure = "iteration " + std::to_string(i) + ": " + errmsg(c.get());
            continue;
        }
        (read ? reads : writes).add(std::stoi(PQgetvalue(r.get(), 0, 0)));
    }
    INFO("reads: " << reads.str() << "; writes: " << writes.str() << "; first failure: " << first_failure);
    MESSAGE("libpq named statements, 1000 executions: reads " << reads.str() << "; writes " << writes.str());
    CHECK(failures == 0);
    CHECK(writes.primary() == 500);
    CHECK(query_value(direct(primary_port()).get(), "SELECT count(*) FROM rt_ps WHERE id >= 0") == "500");

    // Once the replicas caught up, the read statement runs on each of them.
    Tally after;
    const auto deadline = Clock::now() + 10s;
    while (after.r1() == 0 || after.r2() == 0) {
        REQUIRE_MESSAGE(Clock::now() < deadline, "the prepared read never reached both replicas: " << after.str());
        Result r = exec_prepared("rt_rd", 7);
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "8");
        after.add(std::stoi(PQgetvalue(r.get(), 0, 0)));
    }
}

TEST_CASE("routing: SQL PREPARE / EXECUTE / DEALLOCATE across servers")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_sqlps; CREATE TABLE rt_sqlps (id int PRIMARY KEY)");
    }
    wait_replay_caught_up();
    wait_replicas_serving(px);  // pgswitch saw both replicas replay that DDL (every session's reads need it)

    Conn c = px.connect_app();
    exec_ok(c.get(), "PREPARE rt_q(int) AS SELECT inet_server_port(), $1 * 2");
    exec_ok(c.get(), "PREPARE rt_i(int) AS INSERT INTO rt_sqlps VALUES ($1) RETURNING inet_server_port()");
    Tally before;
    for (int i = 0; i < 10; ++i) {
        Result r = exec_ok(c.get(), "EXECUTE rt_q(" + std::to_string(i) + ")", PGRES_TUPLES_OK);
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == std::to_string(i * 2));
        before.add(std::stoi(PQgetvalue(r.get(), 0, 0)));
    }
    INFO("EXECUTE of a read before any write: " << before.str());
    CHECK(before.primary() == 0);
    CHECK(before.r1() > 0);
    CHECK(before.r2() > 0);
    for (int i = 0; i < 3; ++i)
        CHECK(server_name(server_port(c.get(), "EXECUTE rt_i(" + std::to_string(i) + ")")) == "primary");
    // Both were PREPAREd where the session logged in (the primary); a replica
    // has only what ran there.
    CHECK(query_value(c.get(), "/* pgswitch:primary */ SELECT count(*) FROM pg_prepared_statements "
                               "WHERE name IN ('rt_q', 'rt_i')") == "2");

    exec_ok(c.get(), "DEALLOCATE rt_q");
    for (int i = 0; i < 6; ++i) {  // gone wherever the next EXECUTE lands
        Result r(PQexec(c.get(), "EXECUTE rt_q(1)"));
        CHECK(sqlstate(r.get()) == "26000");
    }
    CHECK(server_name(server_port(c.get(), "EXECUTE rt_i(10)")) == "primary");
    exec_ok(c.get(), "DEALLOCATE ALL");
    Result gone(PQexec(c.get(), "EXECUTE rt_i(11)"));
    CHECK(sqlstate(gone.get()) == "26000");
    CHECK(query_value(direct(primary_port()).get(), "SELECT string_agg(id::text, ',' ORDER BY id) FROM rt_sqlps") ==
          "0,1,2,10");
}

#ifdef ROUTING_PSYCOPG_PY
TEST_CASE("routing: psycopg 3 prepared statements (prepare=True) 1000 times across reads and writes")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    if (run_command({"/usr/bin/python3", "-c", "import psycopg"}, {}, 30s).exit_code != 0) {
        MESSAGE("skipped: /usr/bin/python3 has no psycopg (Debian python3-psycopg)");
        return;
    }
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_py; CREATE TABLE rt_py (id int PRIMARY KEY)");
    }
    wait_replay_caught_up();
    CommandResult r = run_command({"/usr/bin/python3", ROUTING_PSYCOPG_PY, px.conninfo(),
                                   std::to_string(primary_port()), std::to_string(replica1_port()),
                                   std::to_string(replica2_port())},
                                  {}, 90s);
    INFO("routing_psycopg.py output:\n" << r.output);
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("OK ") != std::string::npos);
    MESSAGE("psycopg: " << r.output);
    CHECK(query_value(direct(primary_port()).get(), "SELECT count(*) FROM rt_py") == "550");
}
#endif

// ====================================================================== 6. read your writes

namespace {
/// Pauses WAL replay on both replicas; resumes on destruction (also when a check failed).
struct ReplayPause {
    std::vector<Conn> conns;
    ReplayPause()
    {
        for (int port : {replica1_port(), replica2_port()}) {
            conns.push_back(direct(port));
            exec_ok(conns.back().get(), "SELECT pg_wal_replay_pause()", PGRES_TUPLES_OK);
        }
        for (auto& c : conns) {
            const auto deadline = Clock::now() + 10s;
            while (query_value(c.get(), "SELECT pg_get_wal_replay_pause_state()") != "paused") {
                REQUIRE_MESSAGE(Clock::now() < deadline, "replay did not pause");
                std::this_thread::sleep_for(5ms);
            }
        }
    }
    void resume()
    {
        for (auto& c : conns)
            Result r(PQexec(c.get(), "SELECT pg_wal_replay_resume()"));
        conns.clear();
    }
    ~ReplayPause() { resume(); }
};
}  // namespace

TEST_CASE("routing: read your writes (lsn) while the replicas lag; SHOW pgswitch.lsn, SET pgswitch.min_lsn")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_ryw; CREATE TABLE rt_ryw (id int PRIMARY KEY)");
    }
    wait_replay_caught_up();
    Conn prim = direct(primary_port());

    Conn c = px.connect_app();
    CHECK(query_value(c.get(), "SHOW pgswitch.lsn") == "0/0");  // nothing written yet

    ReplayPause pause;  // the replicas now fall behind with every write
    Tally reads;
    int misses = 0, errors = 0;
    std::string first_problem;
    // Each read first waits read_your_writes_wait_ms on a replica that never
    // gets there, then runs on the primary.
    for (int i = 1; i <= 200; ++i) {
        const std::string id = std::to_string(i);
        Result ins(PQexec(c.get(), ("INSERT INTO rt_ryw VALUES (" + id + ")").c_str()));
        Result sel(PQexec(c.get(), ("SELECT inet_server_port(), count(*) FROM rt_ryw WHERE id = " + id).c_str()));
        if (PQresultStatus(ins.get()) != PGRES_COMMAND_OK || PQresultStatus(sel.get()) != PGRES_TUPLES_OK) {
            if (errors++ == 0)
                first_problem = "iteration " + id + ": " + errmsg(c.get());
            continue;
        }
        reads.add(std::stoi(PQgetvalue(sel.get(), 0, 0)));
        if (std::string(PQgetvalue(sel.get(), 0, 1)) != "1" && misses++ == 0)
            first_problem = "iteration " + id + ": row not seen on " +
                            server_name(std::stoi(PQgetvalue(sel.get(), 0, 0)));
    }
    INFO("reads after each insert: " << reads.str() << "; " << first_problem);
    CHECK(errors == 0);
    CHECK(misses == 0);
    CHECK(reads.primary() == 200);  // the replicas never replayed those writes

    // Reads pipelined after a write (libpq pipeline mode): each is answered
    // in order, with the write seen, though the first one's replay wait falls
    // short and it is re-run on the primary (the others must not overtake it).
    {
        exec_ok(c.get(), "INSERT INTO rt_ryw VALUES (900)");
        REQUIRE(PQenterPipelineMode(c.get()) == 1);
        for (int k = 0; k < 3; ++k) {
            const std::string sql = "SELECT " + std::to_string(k) + ", count(*) FROM rt_ryw WHERE id = 900";
            REQUIRE(PQsendQueryParams(c.get(), sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0) == 1);
            REQUIRE(PQpipelineSync(c.get()) == 1);
        }
        std::vector<std::string> got;
        int syncs = 0;
        while (syncs < 3) {
            PGresult* r = PQgetResult(c.get());
            if (!r)
                continue;  // end of one query's results
            Result res(r);
            if (PQresultStatus(r) == PGRES_PIPELINE_SYNC)
                ++syncs;
            else if (PQresultStatus(r) == PGRES_TUPLES_OK)
                got.push_back(std::string(PQgetvalue(r, 0, 0)) + ":" + PQgetvalue(r, 0, 1));
            else if (PQresultStatus(r) != PGRES_COMMAND_OK)
                FAIL("pipelined statement failed: " << PQresultErrorMessage(r));
        }
        REQUIRE(PQexitPipelineMode(c.get()) == 1);
        CHECK(got == std::vector<std::string>{"0:1", "1:1", "2:1"});
    }

    // A session that wrote nothing still reads from a (lagging) replica: the lag is real.
    {
        Conn fresh = px.connect_app();
        Result r = exec_ok(fresh.get(), "SELECT inet_server_port(), count(*) FROM rt_ryw", PGRES_TUPLES_OK);
        CHECK(is_replica(std::stoi(PQgetvalue(r.get(), 0, 0))));
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "0");
    }

    // SHOW pgswitch.lsn after a write: the primary's position after that commit.
    const std::string before = query_value(prim.get(), "SELECT pg_current_wal_lsn()");
    exec_ok(c.get(), "INSERT INTO rt_ryw VALUES (5000)");
    const std::string lsn = query_value(c.get(), "SHOW pgswitch.lsn");
    INFO("pgswitch.lsn = " << lsn << ", primary before the insert " << before);
    CHECK(parse_lsn(lsn) > 0);
    CHECK(query_value(prim.get(), "SELECT '" + lsn + "'::pg_lsn > '" + before + "'::pg_lsn AND '" + lsn +
                                      "'::pg_lsn <= pg_current_wal_lsn()") == "t");

    // Another session that raises its position to that LSN reads the row.
    {
        Conn other = px.connect_app();
        exec_ok(other.get(), "SET pgswitch.min_lsn = '" + lsn + "'");
        CHECK(parse_lsn(query_value(other.get(), "SHOW pgswitch.lsn")) >= parse_lsn(lsn));
        Result r = exec_ok(other.get(), "SELECT inet_server_port(), count(*) FROM rt_ryw WHERE id = 5000",
                           PGRES_TUPLES_OK);
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "1");
        CHECK(server_name(std::stoi(PQgetvalue(r.get(), 0, 0))) == "primary");  // replicas are paused
        Result bad(PQexec(other.get(), "SET pgswitch.min_lsn = 'not an lsn'"));
        CHECK(sqlstate(bad.get()) == "22023");
        CHECK(query_value(other.get(), "SELECT 1") == "1");
    }

    // Resume: once the replicas caught up, the session's reads go back to them, and see everything.
    pause.resume();
    {
        Conn other = px.connect_app();
        exec_ok(other.get(), "SET pgswitch.min_lsn = '" + lsn + "'");
        Tally back;
        const auto deadline = Clock::now() + 15s;
        for (;;) {
            Result r = exec_ok(c.get(), "SELECT inet_server_port(), count(*) FROM rt_ryw", PGRES_TUPLES_OK);
            Result r2 = exec_ok(other.get(), "SELECT inet_server_port(), count(*) FROM rt_ryw WHERE id = 5000",
                                PGRES_TUPLES_OK);
            CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == "202");
            CHECK(std::string(PQgetvalue(r2.get(), 0, 1)) == "1");
            const int p1 = std::stoi(PQgetvalue(r.get(), 0, 0)), p2 = std::stoi(PQgetvalue(r2.get(), 0, 0));
            back.add(p1);
            if (is_replica(p1) && is_replica(p2))
                break;
            REQUIRE_MESSAGE(Clock::now() < deadline, "reads never went back to the replicas: " << back.str());
            std::this_thread::sleep_for(5ms);
        }
    }
}

TEST_CASE("routing: SHOW pgswitch.lsn right after a write hands that write to another session (SET pgswitch.min_lsn)")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_handoff; CREATE TABLE rt_handoff (id int PRIMARY KEY)");
    }
    wait_replay_caught_up();
    Conn prim = direct(primary_port());
    Conn writer = px.connect_app();
    Conn reader = px.connect_app();
    int stale = 0, misses = 0;
    std::string first_problem;
    Tally reads;
    for (int i = 1; i <= 200; ++i) {
        const std::string id = std::to_string(i);
        const std::string before = query_value(prim.get(), "SELECT pg_current_wal_lsn()");
        exec_ok(writer.get(), "INSERT INTO rt_handoff VALUES (" + id + ")");
        const std::string lsn = query_value(writer.get(), "SHOW pgswitch.lsn");
        if (parse_lsn(lsn) <= parse_lsn(before) && stale++ == 0)
            first_problem = "iteration " + id + ": SHOW pgswitch.lsn = " + lsn +
                            " right after the INSERT, but the primary was already at " + before + " before it";
        exec_ok(reader.get(), "SET pgswitch.min_lsn = '" + lsn + "'");
        Result r = exec_ok(reader.get(), "SELECT inet_server_port(), count(*) FROM rt_handoff WHERE id = " + id,
                           PGRES_TUPLES_OK);
        reads.add(std::stoi(PQgetvalue(r.get(), 0, 0)));
        if (std::string(PQgetvalue(r.get(), 0, 1)) != "1" && misses++ == 0 && first_problem.empty())
            first_problem = "iteration " + id + ": the other session did not see the row (read on " +
                            server_name(std::stoi(PQgetvalue(r.get(), 0, 0))) + ")";
    }
    INFO("the other session read on: " << reads.str() << "; " << first_problem);
    CHECK(stale == 0);
    CHECK(misses == 0);
}

// ====================================================================== 7. pins and hints

TEST_CASE("routing: pins keep the session on the primary until DISCARD ALL")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    struct Pin {
        const char* what;
        std::string pin;   // statement(s) that pin the session
        std::string read;  // a read that afterwards works (on the primary)
    };
    const std::vector<Pin> pins = {
        {"temporary table", "CREATE TEMP TABLE rt_tmp (x int); INSERT INTO rt_tmp VALUES (1)",
         "SELECT inet_server_port() FROM rt_tmp"},
        {"session advisory lock", "SELECT pg_advisory_lock(4242)",
         "SELECT inet_server_port() FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 "
         "AND pid = pg_backend_pid()"},
        {"LISTEN", "LISTEN rt_pin_chan",
         "SELECT inet_server_port() FROM pg_listening_channels() c WHERE c = 'rt_pin_chan'"},
    };
    for (const auto& p : pins) {
        const std::string what = p.what;
        CAPTURE(what);
        Conn c = px.connect_app();
        CHECK(is_replica(server_port(c.get())));  // a fresh session reads from replicas
        exec_ok(c.get(), p.pin, p.pin.rfind("SELECT", 0) == 0 ? PGRES_TUPLES_OK : PGRES_COMMAND_OK);
        // Not read-your-writes: wait until that gate is open for everything written so far.
        wait_ryw_gate_open(px);
        Tally t;
        for (int i = 0; i < 10; ++i)
            t.add(server_port(c.get(), p.read));  // one row each: only the primary has it
        for (int i = 0; i < 10; ++i)
            t.add(server_port(c.get()));
        INFO(t.str());
        CHECK(t.primary() == 20);

        exec_ok(c.get(), "DISCARD ALL");
        Tally after;
        const auto deadline = Clock::now() + 5s;
        while (after.r1() + after.r2() == 0) {
            REQUIRE_MESSAGE(Clock::now() < deadline, "DISCARD ALL did not unpin: " << after.str());
            after.add(server_port(c.get()));
        }
        INFO("after DISCARD ALL: " << after.str());
        CHECK(after.primary() == 0);
    }
}

TEST_CASE("routing: a WITH HOLD cursor declared in autocommit pins the session; FETCH works")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    Conn c = px.connect_app();
    CHECK(is_replica(server_port(c.get())));
    exec_ok(c.get(), "DECLARE rt_cur CURSOR WITH HOLD FOR SELECT inet_server_port(), g FROM generate_series(1, 100) g");
    // Every FETCH must find the cursor, wherever later reads would otherwise be balanced.
    Tally fetched, reads;
    for (int i = 1; i <= 10; ++i) {
        Result r(PQexec(c.get(), "FETCH rt_cur"));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, "FETCH " << i << ": " << errmsg(c.get()));
        CHECK(std::string(PQgetvalue(r.get(), 0, 1)) == std::to_string(i));
        fetched.add(std::stoi(PQgetvalue(r.get(), 0, 0)));
        reads.add(server_port(c.get()));
    }
    INFO("FETCH ran on: " << fetched.str() << "; reads in between: " << reads.str());
    CHECK(fetched.primary() == 10);
    CHECK(reads.primary() == 10);
    exec_ok(c.get(), "DISCARD ALL");
    Tally after;
    const auto deadline = Clock::now() + 5s;
    while (after.r1() + after.r2() == 0) {
        REQUIRE_MESSAGE(Clock::now() < deadline, "DISCARD ALL did not unpin: " << after.str());
        after.add(server_port(c.get()));
    }
}

/// A name no earlier run of the suite used (functions outlive a run on the shared cluster).
std::string fresh_name(const std::string& stem)
{
    return stem + "_" + std::to_string(::getpid()) + "_" +
           std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
}

/// Runs `sql` with one text parameter over the extended protocol (PQexecParams).
Result exec_params(PGconn* c, const std::string& sql, const std::string& param)
{
    const char* values[1] = {param.c_str()};
    return Result(PQexecParams(c, sql.c_str(), 1, nullptr, values, nullptr, nullptr, 0));
}

TEST_CASE("routing: a function created behind pgswitch's back is looked up before routing (simple and extended)")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();  // the database's function catalog is loaded by now
        exec_ok(c.get(), "CREATE TABLE IF NOT EXISTS rt_sneaky_log (id int)");
    }
    // A migration run straight against the primary: pgswitch's catalog does
    // not know this function, which writes.
    const std::string fn = fresh_name("rt_sneaky");
    {
        Conn su = direct(primary_port());
        exec_ok(su.get(), "CREATE FUNCTION " + fn +
                              "(x text) RETURNS int LANGUAGE sql VOLATILE "
                              "AS 'INSERT INTO rt_sneaky_log VALUES (1) RETURNING inet_server_port()'");
        exec_ok(su.get(), "GRANT ALL ON rt_sneaky_log TO app");
    }
    wait_replay_caught_up();
    const auto log_before = px.log_size();
    Conn c = px.connect_app();
    for (int i = 0; i < 5; ++i) {
        Result r(PQexec(c.get(), ("SELECT " + fn + "('a')").c_str()));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        CHECK(server_name(std::atoi(PQgetvalue(r.get(), 0, 0))) == "primary");
        Result e = exec_params(c.get(), "SELECT " + fn + "($1)", "b");
        REQUIRE_MESSAGE(PQresultStatus(e.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        CHECK(server_name(std::atoi(PQgetvalue(e.get(), 0, 0))) == "primary");
    }
    const std::string log = px.log_text(log_before, 1 << 20);
    INFO(log);
    CHECK(log.find("looked up functions unknown to pgswitch") != std::string::npos);
    CHECK(log.find("misroute") == std::string::npos);  // never sent to a replica first
}

TEST_CASE("routing: UNLOGGED tables (which a standby cannot read) are read on the primary, also when created behind "
          "pgswitch's back")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    Conn c = px.connect_app();
    exec_ok(c.get(), "DROP TABLE IF EXISTS rt_unlogged; CREATE UNLOGGED TABLE rt_unlogged (id int); "
                     "INSERT INTO rt_unlogged VALUES (1)");
    const std::string behind = fresh_name("rt_unlogged_behind");
    {
        Conn su = direct(primary_port());
        exec_ok(su.get(), "CREATE UNLOGGED TABLE " + behind + " (id int); INSERT INTO " + behind +
                              " VALUES (2); GRANT ALL ON " + behind + " TO app");
    }
    wait_replay_caught_up();
    Conn other = px.connect_app();  // a session that wrote nothing
    for (int i = 0; i < 4; ++i) {
        for (const std::string& table : {std::string("rt_unlogged"), behind}) {
            Result r(PQexec(other.get(), ("SELECT inet_server_port(), count(*) FROM " + table).c_str()));
            REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, table << ": " << errmsg(other.get()));
            CHECK(server_name(std::atoi(PQgetvalue(r.get(), 0, 0))) == "primary");
            Result e = exec_params(other.get(), "SELECT inet_server_port() FROM " + table + " WHERE id > $1::int", "0");
            REQUIRE_MESSAGE(PQresultStatus(e.get()) == PGRES_TUPLES_OK, table << ": " << errmsg(other.get()));
            CHECK(server_name(std::atoi(PQgetvalue(e.get(), 0, 0))) == "primary");
        }
    }
    exec_ok(direct(primary_port()).get(), "DROP TABLE " + behind);
}

TEST_CASE("routing: a read that writes after all (25006 on a replica) is re-run on the primary, simple and extended")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    // A function wrongly listed in read_only_functions: the classifier sends
    // its calls to replicas, which refuse the write it does.
    const std::string fn = fresh_name("rt_liar");
    ProxyOptions o;
    o.health_interval_ms = 100;
    o.extra_toml = "[routing]\nread_only_functions = [\"" + fn + "\"]\n";
    auto px = start_proxy(std::move(o));
    {
        Conn su = direct(primary_port());
        exec_ok(su.get(), "CREATE TABLE IF NOT EXISTS rt_misroute (id int)");
        exec_ok(su.get(), "TRUNCATE rt_misroute; GRANT ALL ON rt_misroute TO app");
        exec_ok(su.get(), "CREATE FUNCTION " + fn +
                              "(x text) RETURNS int LANGUAGE sql VOLATILE "
                              "AS 'INSERT INTO rt_misroute VALUES (1) RETURNING inet_server_port()'");
    }
    wait_replay_caught_up();
    Conn c = px->connect_app();
    for (int i = 0; i < 5; ++i) {
        Result r(PQexec(c.get(), ("SELECT " + fn + "('a')").c_str()));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        CHECK(server_name(std::atoi(PQgetvalue(r.get(), 0, 0))) == "primary");
        Result e = exec_params(c.get(), "SELECT " + fn + "($1)", "b");
        REQUIRE_MESSAGE(PQresultStatus(e.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        CHECK(server_name(std::atoi(PQgetvalue(e.get(), 0, 0))) == "primary");
    }
    CHECK(query_value(direct(primary_port()).get(), "SELECT count(*) FROM rt_misroute") == "10");
    CHECK(px->log_text(0, 1 << 20).find("misroute") != std::string::npos);
}

TEST_CASE("routing: hints /* pgswitch:primary */ and /* pgswitch:replica */")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    Proxy& px = routing_proxy();
    {
        Conn c = px.connect_app();
        exec_ok(c.get(), "DROP TABLE IF EXISTS rt_hint; CREATE TABLE rt_hint (id int)");
    }
    wait_replay_caught_up();
    Conn c = px.connect_app();
    Tally prim, repl;
    for (int i = 0; i < 10; ++i)
        prim.add(server_port(c.get(), "/* pgswitch:primary */ SELECT inet_server_port()"));
    for (int i = 0; i < 10; ++i)
        repl.add(server_port(c.get(), "/* pgswitch:replica */ SELECT inet_server_port()"));
    INFO("primary hint: " << prim.str() << "; replica hint: " << repl.str());
    CHECK(prim.primary() == 10);
    CHECK(repl.primary() == 0);
    // A write never goes to a replica, whatever the hint says.
    CHECK(server_name(server_port(c.get(), "/* pgswitch:replica */ INSERT INTO rt_hint VALUES (1) "
                                           "RETURNING inet_server_port()")) == "primary");
    // Right after that write a plain read would go to the primary (read your writes); the
    // replica hint overrides that choice.
    Tally over;
    for (int i = 0; i < 5; ++i)
        over.add(server_port(c.get(), "/* pgswitch:replica */ SELECT inet_server_port()"));
    INFO("replica hint right after a write: " << over.str());
    CHECK(over.primary() == 0);
    // The extended protocol carries hints too.
    Result r(PQexecParams(c.get(), "/* pgswitch:primary */ SELECT inet_server_port(), $1::int", 1, nullptr,
                          std::vector<const char*>{"1"}.data(), nullptr, nullptr, 0));
    REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
    CHECK(server_name(std::stoi(PQgetvalue(r.get(), 0, 0))) == "primary");
}

// ====================================================================== 8. replica down (last)

TEST_CASE("routing: a replica stopped mid-test stops getting reads, reads keep working, and it comes back")
{
    E2E_SKIP_IF_DIRECT("routing needs pgswitch");
    REQUIRE(node_running("REPLICA2"));
    ProxyOptions o;
    o.health_interval_ms = 100;
    o.health_extra = "timeout_ms = 500\n";
    o.extra_toml = "[routing]\nload_balancing = \"round_robin\"\n";
    auto px = start_proxy(std::move(o));

    // Whatever happens below, leave replica2 running.
    struct Restart {
        ~Restart()
        {
            if (!node_running("REPLICA2"))
                pg_ctl("REPLICA2", {"-l", cluster().get("REPLICA2_LOG"), "-w", "-t", "60", "start"});
        }
    } restart_guard;

    // An idle session that has read from both replicas before the stop: its connection to
    // replica2 dies while it is idle, which must cost it nothing.
    Conn idle = px->connect_app();
    {
        Tally t;
        const auto deadline = Clock::now() + 10s;
        while (t.r1() == 0 || t.r2() == 0) {
            REQUIRE(Clock::now() < deadline);
            t.add(server_port(idle.get()));
        }
    }

    // Reader sessions, each one statement at a time, run throughout.
    struct Event {
        Clock::time_point at;
        int reader;
        int port;  // 0 = error
        std::string error;
    };
    constexpr int kReaders = 3;
    std::mutex mu;
    std::vector<Event> events;
    std::atomic<bool> stop{false};
    std::vector<std::thread> readers;
    const std::string conninfo = px->conninfo();
    for (int k = 0; k < kReaders; ++k) {
        readers.emplace_back([&, k] {
            Conn c = connect(conninfo);
            while (!stop) {
                Event ev{Clock::now(), k, 0, ""};
                if (PQstatus(c.get()) != CONNECTION_OK) {
                    ev.error = "could not reconnect: " + errmsg(c.get());
                } else {
                    Result r(PQexec(c.get(), "SELECT inet_server_port()"));
                    if (PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) == 1)
                        ev.port = std::atoi(PQgetvalue(r.get(), 0, 0));
                    else
                        ev.error = errmsg(c.get());
                }
                if (PQstatus(c.get()) != CONNECTION_OK) {  // pgswitch ended the session: a new one
                    ev.error += " [session ended]";
                    c = connect(conninfo);
                }
                std::lock_guard lk(mu);
                events.push_back(std::move(ev));
            }
        });
    }
    auto count_events = [&] {
        std::lock_guard lk(mu);
        return events.size();
    };
    auto wait_for = [&](auto pred, std::chrono::milliseconds timeout, const char* what) {
        const auto deadline = Clock::now() + timeout;
        while (!pred()) {
            if (Clock::now() > deadline) {
                stop = true;
                for (auto& t : readers)
                    t.join();
                readers.clear();
                FAIL(what);
            }
            std::this_thread::sleep_for(10ms);
        }
    };
    // The last `n` successful reads all ran on `port`.
    auto last_reads_only = [&](int port, size_t n) {
        std::lock_guard lk(mu);
        size_t seen = 0;
        for (auto it = events.rbegin(); it != events.rend() && seen < n; ++it) {
            if (it->port == 0)
                continue;
            if (it->port != port)
                return false;
            ++seen;
        }
        return seen == n;
    };
    wait_for([&] { return count_events() >= 300; }, 10s, "the readers made no progress");

    const size_t at_kill = count_events();
    const auto kill_at = Clock::now();
    CommandResult st = pg_ctl("REPLICA2", {"-m", "immediate", "-w", "stop"});
    INFO("pg_ctl stop: " << st.output);
    REQUIRE(st.exit_code == 0);
    wait_for([&] { return last_reads_only(replica1_port(), 300); }, 15s,
             "reads kept going to replica2 (or the primary) after it stopped");
    const size_t at_settled = count_events();
    const auto settled_at = Clock::now();

    // The idle session: its next reads just work (on replica1).
    for (int i = 0; i < 4; ++i) {
        Result r(PQexec(idle.get(), "SELECT inet_server_port()"));
        CHECK_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK,
                      "an idle session's read after replica2 stopped: " << errmsg(idle.get()));
        if (PQresultStatus(r.get()) == PGRES_TUPLES_OK)
            CHECK(server_name(std::atoi(PQgetvalue(r.get(), 0, 0))) == "replica1");
    }

    const size_t at_restart = count_events();
    CommandResult start = pg_ctl("REPLICA2", {"-l", cluster().get("REPLICA2_LOG"), "-w", "-t", "60", "start"});
    INFO("pg_ctl start: " << start.output);
    REQUIRE(start.exit_code == 0);
    size_t at_back = 0;  // the first read replica2 answered after the restart
    wait_for(
        [&] {
            std::lock_guard lk(mu);
            for (size_t i = at_restart; i < events.size(); ++i)
                if (events[i].port == replica2_port()) {
                    at_back = i;
                    return true;
                }
            return false;
        },
        30s, "replica2 got no reads after it was restarted");
    wait_for([&] { return count_events() >= at_back + 300; }, 10s, "the readers stalled after the restart");
    stop = true;
    for (auto& t : readers)
        t.join();

    Tally before, transition, down, coming_back, after;
    std::vector<std::string> errors;
    std::map<int, int> errors_per_reader;
    for (size_t i = 0; i < events.size(); ++i) {
        const Event& e = events[i];
        if (e.port == 0) {
            ++errors_per_reader[e.reader];
            errors.push_back(
                "reader " + std::to_string(e.reader) + ", " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(e.at - kill_at).count()) +
                " ms after the kill: " + e.error);
            continue;
        }
        (i < at_kill      ? before
         : i < at_settled ? transition
         : i < at_restart ? down
         : i < at_back    ? coming_back
                          : after)
            .add(e.port);
    }
    std::string error_list;
    for (const auto& e : errors)
        error_list += "  " + e + "\n";
    INFO(
        "reads before the stop: " << before.str() << "; until replica2 was avoided: " << transition.str()
                                  << "; while down: " << down.str() << "; during the restart: " << coming_back.str()
                                  << "; once replica2 answered again: " << after.str() << "; avoided after "
                                  << std::chrono::duration_cast<std::chrono::milliseconds>(settled_at - kill_at).count()
                                  << " ms\nerrors:\n"
                                  << error_list);
    CHECK(before.primary() == 0);
    CHECK(down.primary() == 0);
    CHECK(down.r2() == 0);
    CHECK(after.primary() == 0);
    CHECK(after.r2() > 0);
    // A read running on replica2 at the instant of the kill had sent nothing to its client
    // yet (one short row): pgswitch re-runs it elsewhere, so no read may fail at all.
    CHECK_MESSAGE(errors.empty(), "failed reads:\n" << error_list);
    MESSAGE("replica stop: " << errors.size() << " failed reads of " << events.size() << "; reads on the primary "
                             << "between the kill and the switch to replica1: " << transition.primary()
                             << ", during the restart: " << coming_back.primary() << "\n"
                             << error_list);
}
