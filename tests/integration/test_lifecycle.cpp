// Process lifecycle: SIGTERM drains open transactions, then exits 0.
#include "harness.h"

#include <doctest/doctest.h>

#include <signal.h>

#include <string>
#include <thread>

using namespace e2e;

namespace {
Conn direct_primary()
{
    const ClusterEnv& env = cluster();
    return connect_ok("host=127.0.0.1 port=" + std::to_string(env.primary_port()) + " dbname=" + cq(env.get("APP_DB")) +
                      " user=" + cq(env.get("APP_USER")) + " password=" + cq(env.get("APP_PASSWORD")) +
                      " sslmode=disable connect_timeout=5");
}

// After SIGTERM, polls until a new login fails (the listener stops accepting).
void expect_new_connections_refused(Proxy& px)
{
    const auto deadline = Clock::now() + 3s;
    for (;;) {
        Conn c = connect(px.conninfo("", "", "connect_timeout=2"));
        if (PQstatus(c.get()) != CONNECTION_OK)
            return;
        REQUIRE_MESSAGE(Clock::now() < deadline, "pgswitch still accepts logins 3 s after SIGTERM");
        std::this_thread::sleep_for(20ms);
    }
}
}  // namespace

TEST_CASE("SIGTERM: open transaction can still commit, new logins refused, exit 0")
{
    E2E_SKIP_IF_DIRECT("needs a pgswitch process to signal");
    Conn setup = direct_primary();
    exec_ok(setup.get(), "DROP TABLE IF EXISTS e2e_shutdown");
    exec_ok(setup.get(), "CREATE TABLE e2e_shutdown (id int)");

    ProxyOptions opts;
    opts.shutdown_timeout_ms = 10000;
    Proxy px(opts);
    px.start();

    Conn tx = px.connect_app();
    Conn idle = px.connect_app();
    exec_ok(tx.get(), "BEGIN");
    exec_ok(tx.get(), "INSERT INTO e2e_shutdown VALUES (1)");

    px.signal(SIGTERM);
    const auto sigterm_at = Clock::now();
    expect_new_connections_refused(px);
    CHECK(px.alive());  // still draining the open transaction

    exec_ok(tx.get(), "INSERT INTO e2e_shutdown VALUES (2)");
    exec_ok(tx.get(), "COMMIT");
    CHECK(Clock::now() - sigterm_at < 10s);

    // With no transaction left open it exits promptly, well before the timeout.
    const auto code = px.wait_exit(8s);
    REQUIRE_MESSAGE(code.has_value(), "pgswitch still running 8 s after the last transaction ended");
    CHECK(*code == 0);

    CHECK(query_value(setup.get(), "SELECT string_agg(id::text, ',' ORDER BY id) FROM e2e_shutdown") == "1,2");
    // The sessions are gone with the process.
    Result after(PQexec(idle.get(), "SELECT 1"));
    CHECK(PQresultStatus(after.get()) == PGRES_FATAL_ERROR);
    exec_ok(setup.get(), "DROP TABLE e2e_shutdown");
}

TEST_CASE("SIGTERM: a transaction left open past shutdown_timeout_ms is rolled back, exit 0")
{
    E2E_SKIP_IF_DIRECT("needs a pgswitch process to signal");
    Conn setup = direct_primary();
    exec_ok(setup.get(), "DROP TABLE IF EXISTS e2e_shutdown2");
    exec_ok(setup.get(), "CREATE TABLE e2e_shutdown2 (id int)");

    ProxyOptions opts;
    opts.shutdown_timeout_ms = 1500;
    Proxy px(opts);
    px.start();

    Conn tx = px.connect_app();
    exec_ok(tx.get(), "BEGIN");
    exec_ok(tx.get(), "INSERT INTO e2e_shutdown2 VALUES (1)");
    px.signal(SIGTERM);
    const auto sigterm_at = Clock::now();

    const auto code = px.wait_exit(10s);
    REQUIRE_MESSAGE(code.has_value(), "pgswitch ignored shutdown_timeout_ms = 1500");
    CHECK(*code == 0);
    CHECK(Clock::now() - sigterm_at >= 1s);  // it did wait for the transaction a while

    // The uncommitted row never became visible; the server ended that backend.
    const auto deadline = Clock::now() + 5s;
    for (;;) {
        const std::string n = query_value(setup.get(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE "
                                                       "'INSERT INTO e2e_shutdown2%' AND pid <> pg_backend_pid()");
        if (n == "0")
            break;
        REQUIRE_MESSAGE(Clock::now() < deadline, "the abandoned server session is still there");
        std::this_thread::sleep_for(50ms);
    }
    CHECK(query_value(setup.get(), "SELECT count(*) FROM e2e_shutdown2") == "0");
    exec_ok(setup.get(), "DROP TABLE e2e_shutdown2");
}
