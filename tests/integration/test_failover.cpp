// Failover end to end (SPEC §4, issue 6): kill -9 of the primary's postmaster
// under a writer and a reader running through pgswitch, on a cluster of the
// test's own (it is destroyed), with synchronous replication so that no
// acknowledged commit may be lost.
#include "failover_support.h"

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <signal.h>

#include <cstdio>
#include <optional>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace e2e;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("failover: kill -9 of the primary; writes resume on a promoted replica, reads never fail, nothing "
          "acknowledged is lost")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    // bench/failover_bench.sh repeats this test with other health intervals
    // (PGSWITCH_FAILOVER_INTERVAL_MS) and collects the FAILOVER_RESULT lines.
    const int interval_ms = env_int("PGSWITCH_FAILOVER_INTERVAL_MS", 200);
    OwnCluster cl(/*sync=*/true);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = interval_ms;
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE fo_ids (id int PRIMARY KEY)");
    }
    Load load(px, "fo_ids");
    load.start();
    // Let some writes land, then kill the primary's postmaster without warning.
    REQUIRE(load.wait_acked(50, 10s));
    const pid_t pm = cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(pm > 0);
    const auto kill_time = load.mark(cl.env.primary_port());
    REQUIRE(::kill(pm, SIGKILL) == 0);

    const auto resume_ms = load.wait_first_write(kill_time, 20s);
    REQUIRE_MESSAGE(resume_ms, "no write succeeded within 20 s of the kill\n" << px.log_text());
    // Keep both loops going a little on the new primary.
    REQUIRE(load.wait_acked(load.acked().size() + 20, 10s));
    load.finish();

    const auto write_errors = load.write_errors_after();
    const auto read_errors = load.read_errors();
    int lost = -1;
    const auto acked = load.acked();
    const auto primary = check_one_primary_and_followers(cl, {"replica1", "replica2"}, "fo_ids", acked, lost);
    MESSAGE("failover: first successful write "
            << *resume_ms << " ms after kill -9; write errors after the kill: " << write_errors.size()
            << "; read errors: " << read_errors.size() << "; acknowledged writes: " << acked.size() << " ("
            << load.acked_by_old_after()
            << " acknowledged by the old primary's orphaned backend after the kill); lost: " << lost);
    std::printf("FAILOVER_RESULT interval_ms=%d resume_ms=%.0f write_errors=%zu read_errors=%zu lost=%d acked=%zu "
                "reads=%zu acked_by_old_after_kill=%zu\n",
                interval_ms, *resume_ms, write_errors.size(), read_errors.size(), lost, acked.size(), load.reads(),
                load.acked_by_old_after());
    std::fflush(stdout);
    CHECK_MESSAGE(read_errors.empty(), "read errors: " << (read_errors.empty() ? "" : read_errors.front()));
    // Only a write in flight at the instant of the kill may fail (connection lost).
    CHECK_MESSAGE(write_errors.size() <= 1, "write errors: " << (write_errors.empty() ? "" : write_errors.front()));
    CHECK_MESSAGE(lost == 0, lost << " acknowledged commits are missing on the new primary");
    const auto st = status(px);
    CHECK(st["primary"] == primary);
    CHECK(st["failover"]["history"].size() == 1);
    CHECK(backend_status(px, "primary")["state"] == "fenced");
    CHECK(px.log_text(0, 1 << 20).find("is the new primary") != std::string::npos);
}

TEST_CASE("failover: clean stop of the primary (pg_ctl stop -m fast); writes resume, reads never fail, nothing "
          "acknowledged is lost")
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
        exec_ok(c.get(), "CREATE TABLE fo_stop (id int PRIMARY KEY)");
    }
    Load load(px, "fo_stop");
    load.start();
    REQUIRE(load.wait_acked(50, 10s));
    const auto stop_time = load.mark(cl.env.primary_port());
    REQUIRE_MESSAGE(cl.pg_ctl("primary", "-m fast stop") == 0, "pg_ctl stop failed");
    const auto stopped_ms = std::chrono::duration<double, std::milli>(Clock::now() - stop_time).count();

    const auto resume_ms = load.wait_first_write(stop_time, 20s);
    REQUIRE_MESSAGE(resume_ms, "no write succeeded within 20 s of the stop\n" << px.log_text());
    REQUIRE(load.wait_acked(load.acked().size() + 20, 10s));
    load.finish();

    const auto write_errors = load.write_errors_after();
    const auto read_errors = load.read_errors();
    int lost = -1;
    const auto acked = load.acked();
    const auto primary = check_one_primary_and_followers(cl, {"replica1", "replica2"}, "fo_stop", acked, lost);
    for (const auto& e : write_errors)
        MESSAGE("write error after the stop: " << e);
    MESSAGE("clean stop: pg_ctl stop took "
            << stopped_ms << " ms; first successful write " << *resume_ms
            << " ms after the stop began (on the new primary; " << load.acked_by_old_after()
            << " writes the old one acknowledged while stopping); write errors: " << write_errors.size()
            << "; read errors: " << read_errors.size() << "; acknowledged: " << acked.size() << "; lost: " << lost);
    CHECK_MESSAGE(read_errors.empty(), "read errors: " << (read_errors.empty() ? "" : read_errors.front()));
    // A fast shutdown ends the writer's server connection (57P01) for the
    // statement in flight at most; nothing else may fail.
    CHECK_MESSAGE(write_errors.size() <= 1, "write errors: " << (write_errors.empty() ? "" : write_errors.front()));
    CHECK_MESSAGE(lost == 0, lost << " acknowledged commits are missing on the new primary");
    const auto st = status(px);
    CHECK(st["primary"] == primary);
    CHECK(st["failover"]["history"].size() == 1);
    CHECK(backend_status(px, "primary")["state"] == "fenced");
}

TEST_CASE("failover: a second failover (kill -9 of the promoted primary) promotes the last replica; writes resume, "
          "nothing acknowledged is lost")
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
        exec_ok(c.get(), "CREATE TABLE fo_twice (id int PRIMARY KEY)");
    }
    Load load(px, "fo_twice");
    load.start();
    REQUIRE(load.wait_acked(50, 10s));

    // First failover.
    const pid_t pm1 = cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(pm1 > 0);
    const auto kill1 = load.mark(cl.env.primary_port());
    REQUIRE(::kill(pm1, SIGKILL) == 0);
    const auto resume1 = load.wait_first_write(kill1, 20s);
    REQUIRE_MESSAGE(resume1, "no write within 20 s of the first kill\n" << px.log_text());
    const auto errors1 = load.write_errors_after().size();
    int lost1 = -1;
    const auto first = check_one_primary_and_followers(cl, {"replica1", "replica2"}, "fo_twice", load.acked(), lost1);
    CHECK(lost1 == 0);
    const std::string last = first == "replica1" ? "replica2" : "replica1";
    REQUIRE(eventually([&] { return status(px)["primary"] == first; }, 5s));

    // The operator makes the remaining replica synchronous again on the new
    // primary, so that the second failover is held to "nothing acknowledged lost" too.
    {
        Conn c = cl.superuser(cl.port_of(first));
        exec_ok(c.get(), "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (" + last + ")'");
        exec_ok(c.get(), "SELECT pg_reload_conf()", PGRES_TUPLES_OK);
        REQUIRE_MESSAGE(eventually(
                            [&] {
                                return query_value(c.get(), "SELECT count(*) FROM pg_stat_replication WHERE "
                                                            "sync_state IN ('sync', 'quorum')") == "1";
                            },
                            15s),
                        last << " never became a synchronous standby of " << first);
    }
    REQUIRE(load.wait_acked(load.acked().size() + 20, 10s));

    // Second failover: kill the promoted primary.
    const pid_t pm2 = cl.postmaster_pid(first == "replica1" ? "REPLICA1_DATA" : "REPLICA2_DATA");
    REQUIRE(pm2 > 0);
    const auto kill2 = load.mark(cl.port_of(first));
    REQUIRE(::kill(pm2, SIGKILL) == 0);
    const auto resume2 = load.wait_first_write(kill2, 20s);
    REQUIRE_MESSAGE(resume2, "no write within 20 s of the second kill\n" << px.log_text(0, 1 << 20));
    REQUIRE(load.wait_acked(load.acked().size() + 20, 10s));
    load.finish();
    const auto errors2 = load.write_errors_after().size();
    const auto read_errors = load.read_errors();
    int lost2 = -1;
    const auto acked = load.acked();
    CHECK(check_one_primary_and_followers(cl, {last}, "fo_twice", acked, lost2) == last);
    MESSAGE("two failovers: first write " << *resume1 << " ms after the first kill (" << errors1 << " write errors), "
                                          << *resume2 << " ms after the second (" << errors2 << " write errors); "
                                          << "read errors: " << read_errors.size() << "; acknowledged: " << acked.size()
                                          << "; lost: " << lost2);
    CHECK_MESSAGE(read_errors.empty(), "read errors: " << (read_errors.empty() ? "" : read_errors.front()));
    CHECK(errors1 <= 1);
    CHECK(errors2 <= 1);
    CHECK_MESSAGE(lost2 == 0, lost2 << " acknowledged commits are missing on the last primary");
    const auto st = status(px);
    CHECK(st["primary"] == last);
    REQUIRE(st["failover"]["history"].size() == 2);
    CHECK(st["failover"]["history"][0]["to"] == first);
    CHECK(st["failover"]["history"][1]["from"] == first);
    CHECK(st["failover"]["history"][1]["to"] == last);
    CHECK(backend_status(px, "primary")["state"] == "fenced");
    CHECK(backend_status(px, first)["state"] == "fenced");
}

TEST_CASE("failover: asynchronous replication promotes the replica that received the most WAL")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 200;
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE fo_async (id int PRIMARY KEY)");
    }
    // replica1 would win a tie (by name): freeze its WAL receiver so that
    // replica2 is the one that has received more.
    pid_t walreceiver = 0;
    {
        Conn c = cl.superuser(cl.env.replica_port(1));
        REQUIRE(
            eventually([&] { return query_value(c.get(), "SELECT count(*) FROM pg_stat_wal_receiver") == "1"; }, 10s));
        walreceiver = std::atoi(query_value(c.get(), "SELECT pid FROM pg_stat_wal_receiver").c_str());
    }
    REQUIRE(walreceiver > 0);
    REQUIRE(::kill(walreceiver, SIGSTOP) == 0);
    struct Resume {
        pid_t pid;
        ~Resume() { ::kill(pid, SIGCONT); }
    } resume{walreceiver};

    std::string primary_lsn;
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "INSERT INTO fo_async SELECT g FROM generate_series(1, 1000) g");
        Conn p = cl.superuser(cl.env.primary_port());
        primary_lsn = query_value(p.get(), "SELECT pg_current_wal_lsn()::text");
    }
    // replica2 has all of it; replica1 does not (as pgswitch's checks will see).
    {
        Conn r2 = cl.superuser(cl.env.replica_port(2));
        REQUIRE(eventually(
            [&] {
                return query_value(r2.get(), "SELECT pg_last_wal_receive_lsn() >= '" + primary_lsn + "'::pg_lsn") ==
                       "t";
            },
            10s));
        Conn r1 = cl.superuser(cl.env.replica_port(1));
        REQUIRE(query_value(r1.get(), "SELECT pg_last_wal_receive_lsn() < '" + primary_lsn + "'::pg_lsn") == "t");
    }
    // pgswitch has seen the positions (its replica lag is its own figure).
    REQUIRE(eventually(
        [&] {
            auto b = backend_status(px, "replica1");
            return b["lag_bytes"].is_number() && b["lag_bytes"].get<std::uint64_t>() > 0;
        },
        5s));

    const pid_t pm = cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(pm > 0);
    REQUIRE(::kill(pm, SIGKILL) == 0);
    REQUIRE_MESSAGE(eventually([&] { return status(px)["failover"]["history"].size() == 1; }, 20s),
                    px.log_text(0, 1 << 20));
    const auto st = status(px);
    CHECK(st["failover"]["history"][0]["to"] == "replica2");
    CHECK(st["failover"]["history"][0]["reason"].get<std::string>().find("bytes of WAL the old primary had") !=
          std::string::npos);
    CHECK_FALSE(cl.in_recovery(cl.env.replica_port(2)));
    CHECK(cl.in_recovery(cl.env.replica_port(1)));
    // Every row is on the promoted replica, and writes go there.
    {
        Conn c = cl.superuser(cl.env.replica_port(2));
        CHECK(query_value(c.get(), "SELECT count(*) FROM fo_async") == "1000");
    }
    CHECK(eventually([&] { return write_through(px, "fo_async", 5000) == cl.env.replica_port(2); }, 10s));
}

TEST_CASE("failover: external mode follows a replica promoted by hand within 2 health intervals, and never promotes")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    const int interval_ms = 500;
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = interval_ms;
    o.extra_toml = "[failover]\nmode = \"external\"\n";
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE fo_ext (id int)");
    }
    REQUIRE(cl.pg_ctl("primary", "-m fast stop") == 0);
    // pgswitch sees the primary down and promotes nothing by itself.
    REQUIRE_MESSAGE(eventually([&] { return backend_status(px, "primary")["state"] == "down"; }, 10s), px.log_text());
    // Two more intervals: an auto-mode checker would have promoted by now.
    REQUIRE(eventually([&] { return backend_status(px, "primary")["consecutive_failures"].get<int>() >= 6; }, 10s));
    auto st = status(px);
    CHECK(st["primary"].is_null());
    CHECK(st["failover"]["history"].empty());
    CHECK(st["failover"]["reason"].get<std::string>().find("external") != std::string::npos);
    CHECK(cl.in_recovery(cl.env.replica_port(1)));
    CHECK(cl.in_recovery(cl.env.replica_port(2)));

    // The operator (or another tool) promotes replica1; a client connecting
    // right after waits (failover.wait_for_primary_ms) until pgswitch follows.
    {
        Conn r1 = cl.superuser(cl.env.replica_port(1));
        REQUIRE(query_value(r1.get(), "SELECT pg_promote(true, 60)") == "t");
    }
    const auto promoted = Clock::now();
    int port = write_through(px, "fo_ext", 1);
    if (port == 0)  // only to tell how late it was; the bound below still applies
        eventually([&] { return (port = write_through(px, "fo_ext", 2)) != 0; }, 10s);
    const auto follow_ms = std::chrono::duration<double, std::milli>(Clock::now() - promoted).count();
    MESSAGE("external mode: first write through pgswitch on the promoted replica " << follow_ms
                                                                                   << " ms after pg_promote() returned "
                                                                                      "(health.interval_ms = "
                                                                                   << interval_ms << ")");
    std::printf("EXTERNAL_FOLLOW_MS %.0f interval_ms=%d\n", follow_ms, interval_ms);
    std::fflush(stdout);
    CHECK(port == cl.env.replica_port(1));
    CHECK(follow_ms <= 2 * interval_ms + 250);
    st = status(px);
    CHECK(st["primary"] == "replica1");
    CHECK(st["failover"]["history"].empty());  // followed, not a failover of pgswitch's
    CHECK(st["failover"]["reason"].is_null());
}

TEST_CASE("failover: a replica promoted while the primary runs is fenced (auto mode), and /status says why")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 200;
    Proxy px(o);
    px.start();
    Conn c = connect_ok(px.conninfo());
    exec_ok(c.get(), "CREATE TABLE fo_two (id int)");
    {
        Result r = exec_ok(c.get(), "INSERT INTO fo_two VALUES (1) RETURNING inet_server_port()", PGRES_TUPLES_OK);
        REQUIRE(std::atoi(PQgetvalue(r.get(), 0, 0)) == cl.env.primary_port());
    }
    {
        Conn r1 = cl.superuser(cl.env.replica_port(1));
        REQUIRE(query_value(r1.get(), "SELECT pg_promote(true, 60)") == "t");
    }
    REQUIRE_MESSAGE(eventually([&] { return backend_status(px, "replica1")["state"] == "fenced"; }, 10s),
                    px.log_text());
    const auto b = backend_status(px, "replica1");
    CHECK(b["role"] == "primary");
    REQUIRE(b["fence_reason"].is_string());
    CHECK(b["fence_reason"].get<std::string>().find("claims to be primary") != std::string::npos);
    const auto st = status(px);
    CHECK(st["primary"] == "primary");
    CHECK(st["failover"]["history"].empty());
    CHECK(backend_status(px, "primary")["state"] == "up");
    // Writes keep going to the primary, on the old session and on new ones; no read goes to the fenced node.
    for (int i = 0; i < 5; ++i) {
        Result r = exec_ok(c.get(), "INSERT INTO fo_two VALUES (2) RETURNING inet_server_port()", PGRES_TUPLES_OK);
        CHECK(std::atoi(PQgetvalue(r.get(), 0, 0)) == cl.env.primary_port());
        CHECK(write_through(px, "fo_two", 3) == cl.env.primary_port());
        Conn rd = connect_ok(px.conninfo());
        CHECK(std::atoi(query_value(rd.get(), "SELECT inet_server_port()").c_str()) != cl.env.replica_port(1));
    }
}

TEST_CASE("failover: external mode with two primaries sends no write anywhere until one remains, and /status says why")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 200;
    o.extra_toml = "[failover]\nmode = \"external\"\nwait_for_primary_ms = 500\n";
    Proxy px(o);
    px.start();
    Conn c = connect_ok(px.conninfo());
    exec_ok(c.get(), "CREATE TABLE fo_ext2 (id int)");
    exec_ok(c.get(), "INSERT INTO fo_ext2 VALUES (1)");
    {
        Conn r1 = cl.superuser(cl.env.replica_port(1));
        REQUIRE(query_value(r1.get(), "SELECT pg_promote(true, 60)") == "t");
    }
    REQUIRE_MESSAGE(eventually(
                        [&] {
                            const auto r = status(px)["failover"]["reason"];
                            return r.is_string() &&
                                   r.get<std::string>().find("more than one node") != std::string::npos;
                        },
                        10s),
                    px.log_text());
    auto st = status(px);
    CHECK(st["primary"].is_null());
    CHECK(st["failover"]["reason"].get<std::string>().find("more than one node") != std::string::npos);
    // No write reaches either node: not on the session that wrote before, not on a new one.
    {
        Result r(PQexec(c.get(), "INSERT INTO fo_ext2 VALUES (2)"));
        CHECK(PQresultStatus(r.get()) != PGRES_COMMAND_OK);
    }
    CHECK(write_through(px, "fo_ext2", 3) == 0);
    for (int port : {cl.env.primary_port(), cl.env.replica_port(1)}) {
        Conn s = cl.superuser(port);
        CHECK_MESSAGE(query_value(s.get(), "SELECT count(*) FROM fo_ext2 WHERE id > 1") == "0", "port " << port);
    }
    // The old primary goes away: the one that remains takes the writes.
    REQUIRE(cl.pg_ctl("primary", "-m fast stop") == 0);
    int port = 0;
    CHECK(eventually([&] { return (port = write_through(px, "fo_ext2", 4)) != 0; }, 10s));
    CHECK(port == cl.env.replica_port(1));
    st = status(px);
    CHECK(st["primary"] == "replica1");
    CHECK(st["failover"]["reason"].is_null());
}

TEST_CASE("failover: a restart of the primary that comes straight back is not a failover")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    // SPEC §4: down after failure_threshold failed checks in a row; failed
    // checks repeat every 100 ms, so with the default threshold (3) a restart
    // of 0.2-0.3 s would look like a dead server. A fast shutdown announces
    // itself (57P01 "administrator command", then 57P03), so pgswitch gives
    // such a server health.restart_grace_ms (default 2 s) to come back.
    // Default settings here, as an operator has them.
    const int threshold = 3;
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 200;
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE fo_restart (id int)");
    }
    Load load(px, "fo_restart");
    load.start();
    REQUIRE(load.wait_acked(20, 10s));
    // Measure how long the primary refuses connections, from outside.
    std::atomic<bool> probing{true};
    std::atomic<Clock::time_point::rep> first_fail{0}, last_fail{0};
    std::thread prober([&] {
        const std::string ci = "host=127.0.0.1 port=" + std::to_string(cl.env.primary_port()) +
                               " dbname=app user=postgres password=postgres connect_timeout=2 sslmode=disable";
        while (probing) {
            Conn p(PQconnectdb(ci.c_str()));
            if (PQstatus(p.get()) != CONNECTION_OK) {
                const auto now = Clock::now().time_since_epoch().count();
                if (first_fail == 0)
                    first_fail = now;
                last_fail = now;
            }
            std::this_thread::sleep_for(5ms);  // probe pacing
        }
    });
    const auto restart_at = load.mark(0);
    const int rc = cl.pg_ctl("primary", "-m fast restart");
    const auto restart_ms = std::chrono::duration<double, std::milli>(Clock::now() - restart_at).count();
    const auto resume = load.wait_first_write(restart_at, 15s);
    REQUIRE(load.wait_acked(load.acked().size() + 20, 10s));
    probing = false;
    prober.join();
    load.finish();
    REQUIRE(rc == 0);
    const double outage_ms =
        first_fail ? std::chrono::duration<double, std::milli>(Clock::duration(last_fail - first_fail)).count() : 0;
    MESSAGE("restart: pg_ctl restart -m fast took " << restart_ms << " ms; connections refused for " << outage_ms
                                                    << " ms; first write " << (resume ? *resume : -1)
                                                    << " ms after; write errors: " << load.write_errors_after().size()
                                                    << "; read errors: " << load.read_errors().size());
    std::printf("RESTART_RESULT failure_threshold=%d restart_ms=%.0f refused_ms=%.0f failovers=%zu\n", threshold,
                restart_ms, outage_ms, status(px)["failover"]["history"].size());
    std::fflush(stdout);
    REQUIRE_MESSAGE(outage_ms < 2000 - 500,
                    "the restart took longer than health.restart_grace_ms allows: this test needs a faster restart");
    const auto restart_log = px.log_text(0, 1 << 20);
    CHECK(restart_log.find("is stopping or restarting") != std::string::npos);
    CHECK(resume.has_value());
    CHECK(load.read_errors().empty());
    const auto st = status(px);
    CHECK(st["primary"] == "primary");
    CHECK(st["failover"]["history"].empty());
    CHECK(backend_status(px, "primary")["state"] == "up");
    CHECK(cl.in_recovery(cl.env.replica_port(1)));
    CHECK(cl.in_recovery(cl.env.replica_port(2)));
    CHECK(write_through(px, "fo_restart", -1) == cl.env.primary_port());
    const auto log = px.log_text(0, 1 << 20);
    CHECK(log.find("is down") == std::string::npos);
    CHECK(log.find("promoting") == std::string::npos);
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
    // The victim's server connection is gone: pgswitch forwards the server's
    // own explanation (57P01) and closes that connection. libpq may show the
    // asynchronous error on the next query, or (when it arrived before the
    // query was sent) discard it as a stale result; either way the victim
    // never gets any other error, and pgswitch must have seen the link end.
    const auto until = Clock::now() + 5s;
    bool link_closed = false;
    bool victim_error = false;
    while (!link_closed && !victim_error && Clock::now() < until) {
        Result r(PQexec(victim.get(), "/* pgswitch:primary */ SELECT 1"));
        if (PQstatus(victim.get()) != CONNECTION_OK || PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
            const std::string err = PQerrorMessage(victim.get());
            INFO("victim error: " << err);
            CHECK((err.find("terminating connection due to administrator command") != std::string::npos ||
                   err.find("server closed the connection") != std::string::npos));
            victim_error = true;
        }
        link_closed = px.log_text(0, 1 << 20).find("connection to primary closed") != std::string::npos;
    }
    CHECK((link_closed || victim_error));
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

namespace {

/// A driver script of tests/drivers in its failover mode: reads (or writes)
/// in a loop through pgswitch until `stop_file` exists, then prints metrics.
struct DriverLoop {
    std::string label;
    CommandResult result;
    std::thread thread;
    std::map<std::string, std::string> metrics;
    std::string stop_file;

    DriverLoop() = default;
    DriverLoop(const DriverLoop&) = delete;
    DriverLoop& operator=(const DriverLoop&) = delete;
    /// A test that stops half way (a failed REQUIRE) still ends the script and its thread.
    ~DriverLoop()
    {
        if (!thread.joinable())
            return;
        std::ofstream touch(stop_file);  // the scripts stop when it exists
        thread.join();
    }

    void start(const std::string& driver, const std::string& role, const Proxy& px, const OwnCluster& cl,
               const std::string& stop_file_path, const std::string& table)
    {
        label = driver + " " + role;
        stop_file = stop_file_path;
        const std::string dir = std::string(PGSWITCH_SOURCE_ROOT) + "/tests/drivers";
        std::vector<std::string> argv;
        if (driver == "psycopg")
            argv = {"/usr/bin/python3", dir + "/psycopg_driver.py", "--failover", role, stop_file, table};
        else
            argv = {"node", dir + "/node_driver.js", "--failover", role, stop_file, table};
        const char* modules = std::getenv("PGSWITCH_NODE_MODULES");
        std::vector<std::string> env = {
            "PGSW_HOST=127.0.0.1",
            "PGSW_PORT=" + std::to_string(px.port()),
            "PGSW_USER=app",
            "PGSW_PASSWORD=app",
            "PGSW_DB=app",
            "PRIMARY_PORT=" + std::to_string(cl.env.primary_port()),
            "NODE_MODULES_DIR=" + (modules ? std::string(modules)
                                           : std::string(PGSWITCH_SOURCE_ROOT) + "/build/drivers/node/node_modules"),
            "PYTHONPATH=" + dir};
        thread = std::thread([this, argv, env] { result = run_command(argv, env, 120s); });
    }
    void join()
    {
        if (thread.joinable())
            thread.join();
        std::istringstream lines(result.output);
        std::string line;
        while (std::getline(lines, line)) {
            std::istringstream words(line);
            std::string kind, name, value;
            words >> kind >> name;
            std::getline(words, value);
            if (kind == "metric")
                metrics[name] = value.empty() ? value : value.substr(1);
        }
    }
    long count(const std::string& key) const
    {
        auto it = metrics.find(key);
        return it == metrics.end() ? -1 : std::atol(it->second.c_str());
    }
};

long rows_in(const OwnCluster& cl, int port, const std::string& table)
{
    Conn c(PQconnectdb(("host=127.0.0.1 port=" + std::to_string(port) +
                        " dbname=app user=postgres password=postgres connect_timeout=2 sslmode=disable")
                           .c_str()));
    if (PQstatus(c.get()) != CONNECTION_OK)
        return -1;
    Result r(PQexec(c.get(), ("SELECT count(*) FROM " + table).c_str()));
    (void)cl;
    return PQresultStatus(r.get()) == PGRES_TUPLES_OK ? std::atol(PQgetvalue(r.get(), 0, 0)) : -1;
}

}  // namespace

TEST_CASE(
    "failover: psycopg and node-postgres sessions through kill -9 of the primary: readers see no error, writers resume")
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
        exec_ok(c.get(), "CREATE TABLE fo_drv_psycopg (id int PRIMARY KEY, v text); "
                         "CREATE TABLE fo_drv_node (id int PRIMARY KEY, v text)");
    }
    const std::string stop_file = cl.dir + "/stop";
    std::vector<std::unique_ptr<DriverLoop>> loops;
    for (const std::string driver : {"psycopg", "node"})
        for (const std::string role : {"reader", "writer"}) {
            loops.push_back(std::make_unique<DriverLoop>());
            loops.back()->start(driver, role, px, cl, stop_file,
                                "fo_drv_" + std::string(driver == "node" ? "node" : "psycopg"));
        }
    // Both writers are committing: kill the primary's postmaster.
    REQUIRE(eventually(
        [&] {
            return rows_in(cl, cl.env.primary_port(), "fo_drv_psycopg") >= 20 &&
                   rows_in(cl, cl.env.primary_port(), "fo_drv_node") >= 20;
        },
        30s));
    const pid_t pm = cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(::kill(pm, SIGKILL) == 0);
    // Writes resume on a promoted replica: both tables grow there.
    int new_primary = 0;
    REQUIRE_MESSAGE(eventually(
                        [&] {
                            for (int n : {1, 2})
                                if (!cl.in_recovery(cl.env.replica_port(n)))
                                    new_primary = cl.env.replica_port(n);
                            return new_primary != 0;
                        },
                        30s),
                    "no replica was promoted\n"
                        << px.log_text());
    const long psy0 = rows_in(cl, new_primary, "fo_drv_psycopg");
    const long node0 = rows_in(cl, new_primary, "fo_drv_node");
    CHECK_MESSAGE(eventually(
                      [&] {
                          return rows_in(cl, new_primary, "fo_drv_psycopg") >= psy0 + 20 &&
                                 rows_in(cl, new_primary, "fo_drv_node") >= node0 + 20;
                      },
                      30s),
                  "the writers did not resume on the new primary\n"
                      << px.log_text());
    {
        std::ofstream(stop_file) << "stop\n";
    }
    for (auto& l : loops)
        l->join();
    for (auto& l : loops) {
        INFO(l->label << " output:\n" << l->result.output);
        REQUIRE(l->result.exit_code == 0);
        CHECK(l->count("ok") > 0);
        if (l->label.ends_with("reader")) {
            // A session that only reads never notices the failover (SPEC §4).
            CHECK_MESSAGE(l->count("errors") == 0, l->label << ": " << l->metrics["last_error"]);
        } else {
            // The write in flight on the dead primary may fail; then writes run again.
            CHECK_MESSAGE(l->count("errors") <= 3, l->label << ": " << l->metrics["last_error"]);
            // No acknowledged commit is lost (synchronous replication).
            std::set<long> present;
            Conn c = cl.superuser(new_primary);
            Result r = exec_ok(c.get(),
                               "SELECT id FROM " +
                                   std::string(l->label.starts_with("node") ? "fo_drv_node" : "fo_drv_psycopg"),
                               PGRES_TUPLES_OK);
            for (int i = 0; i < PQntuples(r.get()); ++i)
                present.insert(std::atol(PQgetvalue(r.get(), i, 0)));
            std::istringstream acked(l->metrics["acknowledged"]);
            std::string id;
            int lost = 0;
            while (std::getline(acked, id, ','))
                lost += !id.empty() && present.count(std::atol(id.c_str())) == 0;
            CHECK_MESSAGE(lost == 0, l->label << ": " << lost << " acknowledged inserts missing on the new primary");
        }
        MESSAGE(l->label << ": ok " << l->count("ok") << ", errors " << l->count("errors"));
    }
}

TEST_CASE("failover: with no primary, new clients log in and read at once; writes wait, then fail with 57P03")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 100;
    o.extra_toml = "[failover]\nmode = \"manual\"\nwait_for_primary_ms = 1500\n";
    Proxy px(o);
    px.start();
    REQUIRE(cl.pg_ctl("primary", "stop -m immediate") == 0);
    REQUIRE_MESSAGE(eventually([&] { return http::get(px.admin_port(), "/ready").status == 503; }, 10s),
                    "pgswitch still reports a usable primary");
    const auto t0 = Clock::now();
    Conn c = connect_ok(px.conninfo());
    const double login_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    CHECK_MESSAGE(login_ms < 1000, "login took " << login_ms << " ms with no primary");
    for (int i = 0; i < 5; ++i) {
        Result r(PQexec(c.get(), "SELECT inet_server_port()"));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, errmsg(c.get()));
        const int port = std::atoi(PQgetvalue(r.get(), 0, 0));
        CHECK((port == cl.env.replica_port(1) || port == cl.env.replica_port(2)));
    }
    const auto w0 = Clock::now();
    Result w(PQexec(c.get(), "CREATE TABLE no_primary (id int)"));
    const double waited_ms = std::chrono::duration<double, std::milli>(Clock::now() - w0).count();
    CHECK(PQresultStatus(w.get()) == PGRES_FATAL_ERROR);
    CHECK(std::string(PQresultErrorField(w.get(), PG_DIAG_SQLSTATE) ? PQresultErrorField(w.get(), PG_DIAG_SQLSTATE)
                                                                    : "") == "57P03");
    CHECK(waited_ms >= 1400);
    // The session is still usable for reads.
    Result r(PQexec(c.get(), "SELECT 1"));
    CHECK(PQresultStatus(r.get()) == PGRES_TUPLES_OK);
}

TEST_CASE("failover: a frozen primary (SIGSTOP) is replaced within threshold x timeout; its in-flight write fails, and "
          "it says nothing after it thaws")
{
    E2E_SKIP_IF_DIRECT("failover needs pgswitch");
    OwnCluster cl(/*sync=*/false);
    ProxyOptions o;
    o.cluster_env = &cl.env;
    o.health_interval_ms = 200;
    o.health_extra = "timeout_ms = 500\n";
    Proxy px(o);
    px.start();
    {
        Conn c = connect_ok(px.conninfo());
        exec_ok(c.get(), "CREATE TABLE fo_frozen (id int PRIMARY KEY)");
        exec_ok(c.get(), "INSERT INTO fo_frozen VALUES (0)");
    }
    Conn victim = connect_ok(px.conninfo());
    exec_ok(victim.get(), "SELECT 1", PGRES_TUPLES_OK);  // logged in, connection to the primary open
    signal_server(cl, "PRIMARY_DATA", SIGSTOP);
    struct Thaw {
        const OwnCluster& cl;
        ~Thaw() { signal_server(cl, "PRIMARY_DATA", SIGCONT); }
    } thaw{cl};
    const auto frozen_at = Clock::now();
    auto since_freeze = [&] { return std::chrono::duration<double, std::milli>(Clock::now() - frozen_at).count(); };
    // An INSERT sent to the frozen primary: it hangs there until pgswitch fences the node.
    REQUIRE(PQsendQuery(victim.get(), "INSERT INTO fo_frozen VALUES (1)") == 1);
    std::optional<double> failed_ms;
    std::string victim_state;
    std::thread victim_wait([&] {
        if (!wait_readable(PQsocket(victim.get()), Clock::now() + 20s))
            return;
        Result r(PQgetResult(victim.get()));
        failed_ms = since_freeze();
        const char* st = r ? PQresultErrorField(r.get(), PG_DIAG_SQLSTATE) : nullptr;
        victim_state = r && PQresultStatus(r.get()) == PGRES_FATAL_ERROR ? (st ? st : "") : "no error";
    });
    // New sessions try a write every 100 ms, each on its own connection (a
    // login begun before pgswitch suspects the primary waits there for the
    // connect timeout): when does the first one succeed on another server?
    std::mutex mu;
    std::optional<double> resumed_ms;
    std::vector<std::thread> writers;
    for (int id = 100; id < 300; ++id) {
        {
            std::lock_guard lk(mu);
            if (resumed_ms || Clock::now() - frozen_at > 20s)
                break;
        }
        writers.emplace_back([&, id] {
            const int port = write_through(px, "fo_frozen", id);
            std::lock_guard lk(mu);
            if (port != 0 && port != cl.env.primary_port() && !resumed_ms)
                resumed_ms = since_freeze();
        });
        std::this_thread::sleep_for(100ms);  // the pace of new attempts, not a condition wait
    }
    for (auto& t : writers)
        t.join();
    victim_wait.join();
    REQUIRE_MESSAGE(resumed_ms, "no write succeeded on another server within 20 s\n" << px.log_text());
    // The in-flight INSERT on the frozen node failed with 08006 once it was fenced (never a success).
    REQUIRE_MESSAGE(failed_ms, "the INSERT sent to the frozen primary never ended");
    CHECK(victim_state == "08006");
    MESSAGE("frozen primary: writes resumed after " << *resumed_ms << " ms; the in-flight INSERT failed after "
                                                    << *failed_ms << " ms");
    CHECK(*failed_ms < 3 * 500 + 1500);
    // threshold (3) x timeout (500 ms), plus the checks' spacing and the promotion.
    CHECK(*resumed_ms < 3 * 500 + 2500);
    // Thaw the old primary: it stays fenced, and nothing it says reaches a client.
    signal_server(cl, "PRIMARY_DATA", SIGCONT);
    const auto b = backend_status(px, "primary");
    CHECK(b["state"] == "fenced");
    Conn after = connect_ok(px.conninfo());
    for (int i = 0; i < 5; ++i) {
        Result w = exec_ok(
            after.get(), "INSERT INTO fo_frozen VALUES (" + std::to_string(1000 + i) + ") RETURNING inet_server_port()",
            PGRES_TUPLES_OK);
        CHECK(std::atoi(PQgetvalue(w.get(), 0, 0)) != cl.env.primary_port());
    }
}
