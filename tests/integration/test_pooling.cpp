// Transaction pooling (proxy.pool_mode = "transaction", issue 5): many clients
// through a few server connections, the FIFO wait and its 53300, session
// state (SET, prepared statements) following each client onto whichever
// pooled connection it gets and never leaking to another client, and dirty
// connections cleaned before reuse.
#include "harness.h"
#include "http_client.h"

#include <doctest/doctest.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <regex>
#include <set>
#include <string>
#include <thread>

using namespace e2e;

namespace {

long long pgbench_number(const std::string& out, const std::string& label)
{
    std::smatch m;
    if (std::regex_search(out, m, std::regex(label + ":\\s*([0-9]+)")))
        return std::stoll(m[1]);
    return -1;
}

std::string pgbench_tps(const std::string& out)
{
    std::smatch m;
    if (std::regex_search(out, m, std::regex("tps = ([0-9.]+)")))
        return m[1];
    return "?";
}

std::string pgbench_bin()
{
    const std::string p = cluster().pgbin() + "/pgbench";
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? p : "pgbench";
}

// One worker unless `more` says otherwise: each worker has its own pool with
// pool_size / workers connections, and these tests count on exactly pool_size
// connections shared by every client.
ProxyOptions pooled(int pool_size, const std::string& more = "")
{
    ProxyOptions o;
    o.max_client_connections = 1200;
    o.proxy_extra = "pool_mode = \"transaction\"\npool_size = " + std::to_string(pool_size) + "\n" + more;
    if (more.find("workers") == std::string::npos)
        o.proxy_extra += "workers = 1\n";
    return o;
}

std::string server_conninfo(int port)
{
    const auto& env = cluster();
    return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=" + cq(env.get("APP_DB")) +
           " user=" + cq(env.get("SUPERUSER")) + " password=" + cq(env.get("SUPERPASS")) +
           " sslmode=disable connect_timeout=5";
}

/// Server connections pgswitch holds for `application_name` on one server.
int server_connections(int port, const std::string& app)
{
    Conn c = connect_ok(server_conninfo(port));
    return std::stoi(
        query_value(c.get(), "SELECT count(*) FROM pg_stat_activity WHERE application_name = '" + app + "'"));
}

std::vector<std::string> pgbench_env()
{
    const auto& env = cluster();
    return {"PGPASSWORD=" + env.get("APP_PASSWORD"), "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=30"};
}

CommandResult run_pgbench(const Proxy& px, std::vector<std::string> args)
{
    const auto& env = cluster();
    std::vector<std::string> argv = {pgbench_bin(),      "-n", "-h", "127.0.0.1", "-p", std::to_string(px.port()), "-U",
                                     env.get("APP_USER")};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(env.get("APP_DB"));
    return run_command(argv, pgbench_env(), 240s);
}

void pgbench_init()
{
    const auto& env = cluster();
    CommandResult init = run_command({pgbench_bin(), "-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p",
                                      std::to_string(env.primary_port()), "-U", env.get("APP_USER"), env.get("APP_DB")},
                                     pgbench_env(), 120s);
    INFO("pgbench -i output:\n" << init.output);
    REQUIRE(init.exit_code == 0);
}

void check_clean_run(const CommandResult& r)
{
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code == 0);
    CHECK(pgbench_number(r.output, "number of transactions actually processed") > 0);
    const long long failed = pgbench_number(r.output, "number of failed transactions");
    CHECK((failed == -1 || failed == 0));
    CHECK(r.output.find("error") == std::string::npos);
    CHECK(r.output.find("aborted") == std::string::npos);
}

}  // namespace

TEST_CASE("pooling: 1000 pgbench clients through pool_size = 20 (select-only, -M prepared) and TPC-B, no errors")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    pgbench_init();
    // The queue, not its timeout, is under test here (53300 has its own test):
    // on a loaded 2-core test machine 1000 clients may wait seconds for a turn.
    // Default workers (one per core): the 20 connections are split between them.
    Proxy px(pooled(20, "query_wait_timeout_ms = 120000\nworkers = 0\n"));
    px.start();
    const auto& env = cluster();

    SUBCASE("select-only, simple protocol")
    {
        // -t, not -T: logging 1000 clients in (SCRAM) takes seconds of the duration.
        CommandResult r = run_pgbench(px, {"-S", "-c", "1000", "-j", "2", "-t", "20"});
        INFO("pgbench output:\n" << r.output);
        MESSAGE("1000 clients, pool_size 20, -S -t 20: tps = "
                << pgbench_tps(r.output) << ", processed "
                << pgbench_number(r.output, "number of transactions actually processed"));
        check_clean_run(r);
    }
    SUBCASE("select-only, -M prepared (statement names shared by all clients)")
    {
        CommandResult r = run_pgbench(px, {"-S", "-M", "prepared", "-c", "1000", "-j", "2", "-t", "20"});
        INFO("pgbench output:\n" << r.output);
        MESSAGE("1000 clients, pool_size 20, -S -M prepared -t 20: tps = " << pgbench_tps(r.output));
        check_clean_run(r);
    }
    SUBCASE("TPC-B, 200 clients")
    {
        // Scale 1 has one branch row every transaction updates: they queue on
        // its lock, so 200 clients already keep the 20 connections waiting.
        CommandResult r = run_pgbench(px, {"-c", "200", "-j", "2", "-t", "10"});
        INFO("pgbench output:\n" << r.output);
        MESSAGE("200 clients, pool_size 20, TPC-B -t 10: tps = " << pgbench_tps(r.output));
        check_clean_run(r);
        // Every processed transaction committed once (history starts empty after -i).
        Conn direct = connect_ok(server_conninfo(env.primary_port()));
        CHECK(std::stoll(query_value(direct.get(), "SELECT count(*) FROM pgbench_history")) ==
              pgbench_number(r.output, "number of transactions actually processed"));
    }
    // The 1000 clients never had more than pool_size server connections per server.
    for (int port : {env.primary_port(), env.replica_port(1), env.replica_port(2)})
        CHECK(server_connections(port, "pgbench") <= 20);
}

TEST_CASE("pooling: a request waiting longer than query_wait_timeout_ms gets 53300 and the session goes on")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    Proxy px(pooled(1, "query_wait_timeout_ms = 500\n"));
    px.start();
    Conn holder = px.connect_app();
    Conn waiter = px.connect_app();
    exec_ok(holder.get(), "BEGIN");
    exec_ok(holder.get(), "SELECT 1", PGRES_TUPLES_OK);  // the primary's only pooled connection, held

    const auto t0 = Clock::now();
    Result r(PQexec(waiter.get(), "BEGIN"));  // a transaction needs the primary
    const auto waited = Clock::now() - t0;
    CHECK(PQresultStatus(r.get()) == PGRES_FATAL_ERROR);
    CHECK(sqlstate(r.get()) == "53300");
    CHECK(waited >= 400ms);
    CHECK(waited < 5s);
    CHECK(PQstatus(waiter.get()) == CONNECTION_OK);
    CHECK(PQtransactionStatus(waiter.get()) == PQTRANS_IDLE);

    // Once the holder is done, the waiter's next transaction runs.
    exec_ok(holder.get(), "COMMIT");
    exec_ok(waiter.get(), "BEGIN");
    CHECK(query_value(waiter.get(), "SELECT 42") == "42");
    exec_ok(waiter.get(), "COMMIT");

    SUBCASE("a waiter is served as soon as the connection is given back")
    {
        exec_ok(holder.get(), "BEGIN");
        exec_ok(holder.get(), "SELECT 1", PGRES_TUPLES_OK);
        REQUIRE(PQsendQuery(waiter.get(), "BEGIN") == 1);
        std::this_thread::sleep_for(100ms);  // let it queue (not a condition: the checks below are)
        exec_ok(holder.get(), "COMMIT");
        Result b(PQgetResult(waiter.get()));
        CHECK(PQresultStatus(b.get()) == PGRES_COMMAND_OK);
        while (Result more{PQgetResult(waiter.get())}) {
        }
        exec_ok(waiter.get(), "COMMIT");
    }
}

TEST_CASE("pooling: SET follows its client onto another pooled connection and never reaches other clients")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    const auto& env = cluster();
    Proxy px(pooled(2));
    px.start();
    Conn direct = connect_ok(server_conninfo(env.primary_port()));
    const std::string default_work_mem = query_value(direct.get(), "SELECT current_setting('work_mem')");
    REQUIRE(default_work_mem != "77MB");

    Conn a = px.connect_app();
    Conn b = px.connect_app();
    Conn c = px.connect_app();
    exec_ok(a.get(), "SET work_mem = '77MB'");

    // In a transaction (primary): pid and setting.
    auto tx_probe = [](PGconn* conn) {
        exec_ok(conn, "BEGIN");
        Result r = exec_ok(conn, "SELECT pg_backend_pid(), current_setting('work_mem')", PGRES_TUPLES_OK);
        return std::pair<std::string, std::string>{PQgetvalue(r.get(), 0, 0), PQgetvalue(r.get(), 0, 1)};
    };
    auto [a_pid1, a_mem1] = tx_probe(a.get());
    exec_ok(a.get(), "COMMIT");
    CHECK(a_mem1 == "77MB");

    // b holds one of the two connections: a's next transaction gets the other.
    auto [b_pid, b_mem] = tx_probe(b.get());
    CHECK(b_mem == default_work_mem);
    auto [a_pid2, a_mem2] = tx_probe(a.get());
    CHECK(a_pid2 != b_pid);
    CHECK(a_mem2 == "77MB");
    exec_ok(a.get(), "COMMIT");
    exec_ok(b.get(), "COMMIT");
    CHECK(query_value(a.get(), "SHOW work_mem") == "77MB");  // a read on a replica's pooled connection

    // Both connections, used by clients that SET nothing, show the default.
    auto [b_pid2, b_mem2] = tx_probe(b.get());
    auto [c_pid, c_mem] = tx_probe(c.get());
    CHECK(b_pid2 != c_pid);
    CHECK(std::set<std::string>{b_pid2, c_pid} == std::set<std::string>{a_pid1 == b_pid ? a_pid2 : a_pid1, b_pid});
    CHECK(b_mem2 == default_work_mem);
    CHECK(c_mem == default_work_mem);
    exec_ok(b.get(), "COMMIT");
    exec_ok(c.get(), "COMMIT");
    for (int i = 0; i < 4; ++i)
        CHECK(query_value(c.get(), "SHOW work_mem") == default_work_mem);

    // RESET ALL ends it for a too.
    exec_ok(a.get(), "RESET ALL");
    auto [a_pid3, a_mem3] = tx_probe(a.get());
    CHECK(a_mem3 == default_work_mem);
    exec_ok(a.get(), "COMMIT");
}

TEST_CASE("pooling: two clients, one statement name, different texts, across pooled connections")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    Proxy px(pooled(1));  // one connection per server: the clients share them all
    px.start();
    Conn a = px.connect_app();
    Conn b = px.connect_app();
    {
        Result ra(PQprepare(a.get(), "S_1", "SELECT 'a:' || $1::text", 1, nullptr));
        REQUIRE_MESSAGE(PQresultStatus(ra.get()) == PGRES_COMMAND_OK, errmsg(a.get()));
        Result rb(PQprepare(b.get(), "S_1", "SELECT $1::int * 2", 1, nullptr));
        REQUIRE_MESSAGE(PQresultStatus(rb.get()) == PGRES_COMMAND_OK, errmsg(b.get()));
    }
    for (int i = 0; i < 12; ++i) {
        const std::string v = std::to_string(i);
        const char* params[] = {v.c_str()};
        PGconn* conn = (i % 2) ? a.get() : b.get();
        const bool in_tx = i % 3 == 0;  // some inside a transaction (primary), some reads (replicas)
        if (in_tx)
            exec_ok(conn, "BEGIN");
        Result r(PQexecPrepared(conn, "S_1", 1, params, nullptr, nullptr, 0));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(conn));
        const std::string expected = (i % 2) ? "a:" + v : std::to_string(i * 2);
        CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == expected);
        if (in_tx)
            exec_ok(conn, "COMMIT");
    }
    // SQL PREPARE with one name in both clients, too.
    exec_ok(a.get(), "PREPARE q AS SELECT 'from a'");
    exec_ok(b.get(), "PREPARE q AS SELECT 'from b'");
    for (int i = 0; i < 4; ++i) {
        CHECK(query_value(a.get(), "EXECUTE q") == "from a");
        CHECK(query_value(b.get(), "EXECUTE q") == "from b");
    }
    // A third client has no S_1: the server's own error, not another client's statement.
    Conn c = px.connect_app();
    const char* params[] = {"1"};
    Result rc(PQexecPrepared(c.get(), "S_1", 1, params, nullptr, nullptr, 0));
    CHECK(PQresultStatus(rc.get()) == PGRES_FATAL_ERROR);
    CHECK(sqlstate(rc.get()) == "26000");
    Result rq(PQexec(c.get(), "EXECUTE q"));
    CHECK(sqlstate(rq.get()) == "26000");
    CHECK(query_value(c.get(), "SELECT 1") == "1");
}

TEST_CASE("pooling: a client killed mid-transaction leaves no open transaction and the next client is unaffected")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    const auto& env = cluster();
    Conn direct = connect_ok(server_conninfo(env.primary_port()));
    exec_ok(direct.get(), "DROP TABLE IF EXISTS pool_kill; CREATE TABLE pool_kill (i int); GRANT ALL ON pool_kill TO " +
                              env.get("APP_USER"));
    Proxy px(pooled(1));
    px.start();

    auto kill_in_transaction = [&](const std::string& last_step) {
        Conn k = px.connect_app();  // same parameters as `next` below: same pooled connections
        exec_ok(k.get(), "BEGIN");
        const std::string pid = query_value(k.get(), "SELECT pg_backend_pid()");
        exec_ok(k.get(), "INSERT INTO pool_kill VALUES (1)");
        if (!last_step.empty())
            REQUIRE(PQsendQuery(k.get(), last_step.c_str()) == 1);  // still running when the client dies
        // The client vanishes without a Terminate (as a killed process would).
        ::shutdown(PQsocket(k.get()), SHUT_RDWR);
        return pid;
    };

    SUBCASE("idle in transaction: rolled back, and the connection is reused")
    {
        const std::string pid = kill_in_transaction("");
        const auto deadline = Clock::now() + 10s;
        std::string state;
        while (Clock::now() < deadline) {
            state = query_value(direct.get(), "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = " + pid +
                                                  "), 'gone')");
            if (state == "idle" || state == "gone")
                break;
            std::this_thread::sleep_for(20ms);
        }
        CHECK((state == "idle" || state == "gone"));
        Conn next = px.connect_app();
        exec_ok(next.get(), "BEGIN");
        const std::string next_pid = query_value(next.get(), "SELECT pg_backend_pid()");
        CHECK(next_pid == pid);  // rolled back and given back, not closed
        CHECK(query_value(next.get(), "SELECT count(*) FROM pool_kill") == "0");
        exec_ok(next.get(), "INSERT INTO pool_kill VALUES (2)");
        exec_ok(next.get(), "COMMIT");
        CHECK(query_value(direct.get(), "SELECT count(*) FROM pool_kill") == "1");
    }
    SUBCASE("in the middle of a running statement: the connection is dropped")
    {
        (void)kill_in_transaction("SELECT pg_sleep(30)");
        Conn next = px.connect_app();
        exec_ok(next.get(), "BEGIN");
        CHECK(query_value(next.get(), "SELECT count(*) FROM pool_kill") == "0");
        exec_ok(next.get(), "COMMIT");
    }
    SUBCASE("in the middle of an extended-protocol request (Flush, no Sync yet): the connection is dropped")
    {
        Conn k = px.connect_app();
        exec_ok(k.get(), "BEGIN");
        REQUIRE(PQenterPipelineMode(k.get()) == 1);
        REQUIRE(PQsendQueryParams(k.get(), "INSERT INTO pool_kill VALUES ($1::int)", 1, nullptr,
                                  std::array<const char*, 1>{"5"}.data(), nullptr, nullptr, 0) == 1);
        REQUIRE(PQsendFlushRequest(k.get()) == 1);
        REQUIRE(PQflush(k.get()) == 0);
        // Its result arrives (the INSERT ran, unsynced), then the client vanishes.
        REQUIRE(wait_readable(PQsocket(k.get()), Clock::now() + 5s));
        ::shutdown(PQsocket(k.get()), SHUT_RDWR);
        Conn next = px.connect_app();
        exec_ok(next.get(), "BEGIN");
        CHECK(query_value(next.get(), "SELECT count(*) FROM pool_kill") == "0");
        exec_ok(next.get(), "COMMIT");
    }
    SUBCASE("in COPY FROM STDIN: the connection is dropped")
    {
        Conn k = px.connect_app();
        exec_ok(k.get(), "BEGIN");
        exec_ok(k.get(), "COPY pool_kill FROM STDIN", PGRES_COPY_IN);
        const std::string rows = "1\n2\n3\n";
        REQUIRE(PQputCopyData(k.get(), rows.data(), static_cast<int>(rows.size())) == 1);
        REQUIRE(PQflush(k.get()) == 0);
        ::shutdown(PQsocket(k.get()), SHUT_RDWR);
        Conn next = px.connect_app();
        exec_ok(next.get(), "BEGIN");
        CHECK(query_value(next.get(), "SELECT count(*) FROM pool_kill") == "0");
        exec_ok(next.get(), "COMMIT");
    }
    // Nothing of the pool is left idle in a transaction.
    const auto deadline = Clock::now() + 10s;
    std::string open;
    while (Clock::now() < deadline) {
        open = query_value(direct.get(), "SELECT count(*) FROM pg_stat_activity WHERE usename = '" +
                                             env.get("APP_USER") + "' AND state LIKE 'idle in transaction%'");
        if (open == "0")
            break;
        std::this_thread::sleep_for(20ms);
    }
    CHECK(open == "0");
}

TEST_CASE("pooling: temp tables pin a client to its connection; admin reports the pool")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    Proxy px(pooled(2));
    px.start();
    Conn a = px.connect_app();
    exec_ok(a.get(), "CREATE TEMP TABLE pool_tmp (i int)");
    exec_ok(a.get(), "INSERT INTO pool_tmp VALUES (7)");
    for (int i = 0; i < 3; ++i)
        CHECK(query_value(a.get(), "SELECT i FROM pool_tmp") == "7");
    a.reset();  // its connection is reset (DISCARD ALL) before anyone else gets it
    Conn b = px.connect_app();
    exec_ok(b.get(), "BEGIN");
    Result r(PQexec(b.get(), "SELECT i FROM pool_tmp"));
    CHECK(sqlstate(r.get()) == "42P01");
    exec_ok(b.get(), "ROLLBACK");

    const auto m = http::get(px.admin_port(), "/metrics");
    REQUIRE(m.status == 200);
    CHECK(m.body.find("pgswitch_pool_server_connections{state=\"open\"}") != std::string::npos);
    CHECK(m.body.find("pgswitch_pool_size 2") != std::string::npos);
    const auto backends = http::get(px.admin_port(), "/backends").json();
    std::uint64_t idle = 0;
    REQUIRE(backends.contains("backends"));
    for (const auto& bk : backends["backends"])
        idle += bk["connections"]["idle"].get<std::uint64_t>();
    CHECK(idle >= 1);  // pooled connections nobody holds
}

TEST_CASE("pooling: a cancel reaches the pooled connection running the client's query")
{
    E2E_SKIP_IF_DIRECT("transaction pooling is pgswitch's");
    const auto& env = cluster();
    Proxy px(pooled(2));
    px.start();
    Conn c = px.connect_app();
    Conn other = px.connect_app();
    Conn direct = connect_ok(server_conninfo(env.primary_port()));
    // The pid a client is given is pgswitch's own in this mode.
    const std::string given = std::to_string(PQbackendPID(c.get()));

    exec_ok(c.get(), "BEGIN");  // on the primary, where pg_stat_activity shows it
    REQUIRE(PQsendQuery(c.get(), "SELECT pg_sleep(30)") == 1);
    const auto started_by = Clock::now() + 5s;
    std::string running = "0";
    while (running == "0" && Clock::now() < started_by) {
        running = query_value(direct.get(), "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                                            "query = 'SELECT pg_sleep(30)'");
        if (running == "0")
            std::this_thread::sleep_for(20ms);
    }
    REQUIRE(running == "1");
    PGcancel* cancel = PQgetCancel(c.get());
    REQUIRE(cancel != nullptr);
    char err[256] = {0};
    const auto cancel_at = Clock::now();
    const int ok = PQcancel(cancel, err, sizeof err);
    PQfreeCancel(cancel);
    REQUIRE_MESSAGE(ok == 1, "PQcancel: " << std::string(err));
    REQUIRE_MESSAGE(wait_readable(PQsocket(c.get()), cancel_at + 2s), "query not cancelled within 2 s");
    std::string state;
    for (;;) {
        while (PQisBusy(c.get())) {
            REQUIRE_MESSAGE(wait_readable(PQsocket(c.get()), cancel_at + 2s), "result not complete within 2 s");
            REQUIRE(PQconsumeInput(c.get()) == 1);
        }
        Result r(PQgetResult(c.get()));
        if (!r)
            break;
        if (PQresultStatus(r.get()) == PGRES_FATAL_ERROR)
            state = sqlstate(r.get());
    }
    CHECK(state == "57014");
    exec_ok(c.get(), "ROLLBACK");
    CHECK(query_value(c.get(), "SELECT 'still here'") == "still here");
    CHECK(query_value(other.get(), "SELECT 2") == "2");
    CHECK(given != "0");
}

TEST_CASE("pgbench -M prepared TPC-B: a prepared BEGIN opens its transaction on the primary (both pool modes)")
{
    E2E_SKIP_IF_DIRECT("routing is pgswitch's");
    pgbench_init();
    // Until this was fixed, a Bind of a prepared "BEGIN" went to a replica like
    // any read, and the UPDATEs after it failed there with 25006.
    auto run = [](const Proxy& px) {
        CommandResult r = run_pgbench(px, {"-M", "prepared", "-c", "4", "-j", "4", "-t", "20"});
        INFO("pgbench output:\n" << r.output);
        check_clean_run(r);
    };
    SUBCASE("session mode")
    {
        run(shared_proxy());
    }
    SUBCASE("transaction mode")
    {
        // pgbench 15 prepares synchronously on first use, blocking its thread:
        // one thread per client and a pool as large as the client count keep
        // one client's prepare from waiting on another's open transaction.
        Proxy px(pooled(4));
        px.start();
        run(px);
    }
}
