// Failover end to end (SPEC §4, issue 6): kill -9 of the primary's postmaster
// under a writer and a reader running through pgswitch, on a cluster of the
// test's own (it is destroyed), with synchronous replication so that no
// acknowledged commit may be lost.
#include "harness.h"
#include "http_client.h"

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace e2e;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct OwnCluster {
    std::string dir;
    ClusterEnv env;
    explicit OwnCluster(bool sync)
    {
        char tmpl[] = "/tmp/pgswitch-failover-XXXXXX";
        dir = ::mkdtemp(tmpl);
        const std::string cmd = std::string("bash ") + PGSWITCH_SOURCE_ROOT + "/tests/pg_cluster.sh start --dir " +
                                dir + (sync ? " --sync" : "") + " > " + dir + "/start.log 2>&1";
        REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "pg_cluster.sh start failed, see " << dir << "/start.log");
        env = load_cluster_env(dir + "/cluster.env");
    }
    ~OwnCluster()
    {
        const std::string cmd = std::string("bash ") + PGSWITCH_SOURCE_ROOT + "/tests/pg_cluster.sh stop --dir " +
                                dir + " > /dev/null 2>&1";
        (void)std::system(cmd.c_str());
        (void)std::system(("rm -rf " + dir).c_str());
    }
    Conn superuser(int port) const
    {
        return connect_ok("host=127.0.0.1 port=" + std::to_string(port) + " dbname=app user=postgres password=postgres "
                          "connect_timeout=3 sslmode=disable");
    }
    pid_t postmaster_pid(const std::string& data_key) const
    {
        std::ifstream in(env.get(data_key) + "/postmaster.pid");
        pid_t pid = -1;
        in >> pid;
        return pid;
    }
};

}  // namespace

TEST_CASE("failover: kill -9 of the primary; writes resume on a promoted replica, reads never fail, nothing acknowledged is lost")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/true);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 200;
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE fo_ids (id int PRIMARY KEY)");
    }

    std::atomic<bool> stop{false};
    std::atomic<Clock::time_point::rep> killed_at{0};
    std::mutex mu;
    std::set<int> acked;
    std::vector<std::string> write_errors_after_kill, read_errors;
    std::optional<Clock::time_point> first_write_after_kill;

    std::thread writer([&] {
        Conn c = connect_ok(px.conninfo());
        for (int id = 1; !stop; ++id) {
            const auto started = Clock::now();
            Result r(PQexec(c.get(), ("INSERT INTO fo_ids VALUES (" + std::to_string(id) + ")").c_str()));
            std::lock_guard lk(mu);
            const auto k = killed_at.load();
            const bool after_kill = k != 0 && started.time_since_epoch().count() > k;
            if (PQresultStatus(r.get()) == PGRES_COMMAND_OK) {
                acked.insert(id);
                if (after_kill && !first_write_after_kill)
                    first_write_after_kill = Clock::now();
            } else if (after_kill) {
                write_errors_after_kill.push_back(errmsg(c.get()));
            }
            if (PQstatus(c.get()) != CONNECTION_OK) {
                std::this_thread::sleep_for(20ms);  // pace reconnects; not a condition wait
                c = Conn(PQconnectdb(px.conninfo().c_str()));
            }
        }
    });
    std::thread reader([&] {
        Conn c = connect_ok(px.conninfo());
        while (!stop) {
            Result r(PQexec(c.get(), "SELECT count(*) FROM pg_class"));
            if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
                std::lock_guard lk(mu);
                read_errors.push_back(errmsg(c.get()));
                if (PQstatus(c.get()) != CONNECTION_OK)
                    c = Conn(PQconnectdb(px.conninfo().c_str()));
            }
        }
    });

    // Let some writes land, then kill the primary's postmaster without warning.
    const auto deadline0 = Clock::now() + 10s;
    while (Clock::now() < deadline0) {
        std::lock_guard lk(mu);
        if (acked.size() >= 50)
            break;
    }
    const pid_t pm = cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(pm > 0);
    const auto kill_time = Clock::now();
    killed_at = kill_time.time_since_epoch().count();
    REQUIRE(::kill(pm, SIGKILL) == 0);

    const auto deadline = Clock::now() + 20s;
    for (;;) {
        {
            std::lock_guard lk(mu);
            if (first_write_after_kill)
                break;
        }
        REQUIRE_MESSAGE(Clock::now() < deadline, "no write succeeded within 20 s of the kill\n" << px.log_text());
        std::this_thread::sleep_for(10ms);
    }
    // Keep both loops going a little on the new primary.
    const auto settle = Clock::now() + 1s;
    while (Clock::now() < settle)
        std::this_thread::sleep_for(10ms);
    stop = true;
    writer.join();
    reader.join();

    const auto resume_ms = std::chrono::duration<double, std::milli>(*first_write_after_kill - kill_time).count();
    MESSAGE("failover: first successful write " << resume_ms << " ms after kill -9; write errors after the kill: "
                                                << write_errors_after_kill.size() << "; read errors: " << read_errors.size()
                                                << "; acknowledged writes: " << acked.size());
    CHECK_MESSAGE(read_errors.empty(), "read errors: " << (read_errors.empty() ? "" : read_errors.front()));
    // Only a write in flight at the instant of the kill may fail (connection lost).
    CHECK_MESSAGE(write_errors_after_kill.size() <= 1,
                  "write errors: " << (write_errors_after_kill.empty() ? "" : write_errors_after_kill.front()));

    // Exactly one primary among the survivors, and it has every acknowledged id.
    int primaries = 0;
    int new_primary_port = 0, other_port = 0;
    for (int port : {cl.env.replica_port(1), cl.env.replica_port(2)}) {
        Conn c = cl.superuser(port);
        Result r = exec_ok(c.get(), "SELECT pg_is_in_recovery()", PGRES_TUPLES_OK);
        if (std::string(PQgetvalue(r.get(), 0, 0)) == "f") {
            ++primaries;
            new_primary_port = port;
        } else {
            other_port = port;
        }
    }
    REQUIRE(primaries == 1);
    {
        Conn c = cl.superuser(new_primary_port);
        Result r = exec_ok(c.get(), "SELECT id FROM fo_ids", PGRES_TUPLES_OK);
        std::set<int> present;
        for (int i = 0; i < PQntuples(r.get()); ++i)
            present.insert(std::atoi(PQgetvalue(r.get(), i, 0)));
        int missing = 0;
        for (int id : acked)
            missing += present.count(id) == 0;
        CHECK_MESSAGE(missing == 0, missing << " acknowledged commits are missing on the new primary");
        exec_ok(c.get(), "INSERT INTO fo_ids VALUES (-1)");
    }
    // The remaining replica streams from the new primary: a row written after the failover reaches it.
    {
        Conn c = cl.superuser(other_port);
        const auto until = Clock::now() + 15s;
        bool seen = false;
        while (!seen && Clock::now() < until) {
            Result r(PQexec(c.get(), "SELECT 1 FROM fo_ids WHERE id = -1"));
            seen = PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) == 1;
            if (!seen)
                std::this_thread::sleep_for(50ms);
        }
        CHECK_MESSAGE(seen, "the remaining replica did not receive a row written on the new primary");
    }
    // The old primary is fenced in pgswitch's view; the history says what happened.
    CHECK(px.log_text(0, 1 << 20).find("is the new primary") != std::string::npos);
}

TEST_CASE("failover: one terminated server connection (57P01) ends only its session, never a failover")
{
    E2E_SKIP_IF_DIRECT("needs pgswitch");
    ProxyOptions o;
    o.health_interval_ms = 100;
    Proxy px(o);
    px.start();
    Conn victim = connect_ok(px.conninfo());
    Conn bystander = connect_ok(px.conninfo());
    // The victim's primary connection pid is the one pgswitch gave it (session mode).
    const int pid = PQbackendPID(victim.get());
    {
        Conn su = connect_ok("host=127.0.0.1 port=" + std::to_string(cluster().primary_port()) +
                             " dbname=app user=postgres password=postgres sslmode=disable");
        Result r = exec_ok(su.get(), "SELECT pg_terminate_backend(" + std::to_string(pid) + ")", PGRES_TUPLES_OK);
        CHECK(std::string(PQgetvalue(r.get(), 0, 0)) == "t");
    }
    // The victim's session ends with the server's own explanation...
    const auto until = Clock::now() + 5s;
    bool ended = false;
    while (!ended && Clock::now() < until) {
        Result r(PQexec(victim.get(), "/* pgswitch:primary */ SELECT 1"));
        ended = PQstatus(victim.get()) != CONNECTION_OK || PQresultStatus(r.get()) != PGRES_TUPLES_OK;
    }
    CHECK(ended);
    // ...while everyone else carries on, writes included, on the same primary.
    for (int i = 0; i < 20; ++i) {
        Result r = exec_ok(bystander.get(), "/* pgswitch:primary */ SELECT inet_server_port()", PGRES_TUPLES_OK);
        CHECK(std::atoi(PQgetvalue(r.get(), 0, 0)) == cluster().primary_port());
    }
    Conn fresh = connect_ok(px.conninfo());
    exec_ok(fresh.get(), "CREATE TEMP TABLE t57 (x int); INSERT INTO t57 VALUES (1)");
    const auto log = px.log_text(0, 1 << 20);
    CHECK(log.find("promoting") == std::string::npos);
    CHECK(log.find("is down") == std::string::npos);
}

TEST_CASE("failover: manual mode promotes nothing by itself, and POST /failover does")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 100;
    o.extra_toml = "[failover]\nmode = \"manual\"\nwait_for_primary_ms = 500\n";
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE man_fo (id int)");
    }
    const pid_t pm = cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(pm > 0);
    REQUIRE(::kill(pm, SIGKILL) == 0);

    auto in_recovery = [&](int port) {
        Conn c = cl.superuser(port);
        Result r = exec_ok(c.get(), "SELECT pg_is_in_recovery()", PGRES_TUPLES_OK);
        return std::string(PQgetvalue(r.get(), 0, 0)) == "t";
    };
    // Give pgswitch well over failure_threshold checks to notice: it must not promote.
    const auto noticed = Clock::now() + 10s;
    while (px.log_text(0, 1 << 20).find("is down") == std::string::npos && Clock::now() < noticed)
        std::this_thread::sleep_for(20ms);
    REQUIRE_MESSAGE(px.log_text(0, 1 << 20).find("is down") != std::string::npos, px.log_text());
    const auto grace = Clock::now() + 1s;
    while (Clock::now() < grace)
        std::this_thread::sleep_for(50ms);
    CHECK(in_recovery(cl.env.replica_port(1)));
    CHECK(in_recovery(cl.env.replica_port(2)));
    {
        // Writes wait failover.wait_for_primary_ms, then fail with 57P03.
        Conn c = connect(px.conninfo());
        if (PQstatus(c.get()) == CONNECTION_OK) {
            Result r(PQexec(c.get(), "INSERT INTO man_fo VALUES (1)"));
            CHECK(PQresultStatus(r.get()) != PGRES_COMMAND_OK);
        }
    }

    auto resp = http::post(px.admin_port(), "/failover", R"({"target":"replica2"})");
    CHECK_MESSAGE(resp.status == 202, resp.body);
    const auto until = Clock::now() + 30s;
    while (in_recovery(cl.env.replica_port(2)) && Clock::now() < until)
        std::this_thread::sleep_for(50ms);
    REQUIRE_FALSE(in_recovery(cl.env.replica_port(2)));
    // Writes reach the promoted replica through pgswitch once it is published.
    const auto writable = Clock::now() + 10s;
    bool wrote = false;
    while (!wrote && Clock::now() < writable) {
        Conn c(PQconnectdb(px.conninfo().c_str()));
        if (PQstatus(c.get()) == CONNECTION_OK) {
            Result r(PQexec(c.get(), "INSERT INTO man_fo VALUES (2) RETURNING inet_server_port()"));
            wrote = PQresultStatus(r.get()) == PGRES_TUPLES_OK &&
                    std::atoi(PQgetvalue(r.get(), 0, 0)) == cl.env.replica_port(2);
        }
        if (!wrote)
            std::this_thread::sleep_for(50ms);
    }
    CHECK(wrote);
    auto status = http::get(px.admin_port(), "/status");
    REQUIRE(status.status == 200);
    const auto j = status.json();
    CHECK(j["primary"] == "replica2");
    CHECK(j["failover"]["history"].size() == 1);
}
