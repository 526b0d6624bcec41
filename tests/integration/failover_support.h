// What the failover and cluster tests share: a PostgreSQL cluster of the
// test's own (primary and two streaming replicas, destroyed afterwards), a
// writer and a reader running through a pgswitch, and the checks a user makes
// after a failover (one primary, nothing acknowledged lost, replicas follow).
#pragma once

#include "harness.h"
#include "http_client.h"

#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace e2e {

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
        const std::string cmd = std::string("bash ") + PGSWITCH_SOURCE_ROOT + "/tests/pg_cluster.sh stop --dir " + dir +
                                " > /dev/null 2>&1";
        (void)std::system(cmd.c_str());
        (void)std::system(("rm -rf " + dir).c_str());
    }
    Conn superuser(int port) const
    {
        return connect_ok("host=127.0.0.1 port=" + std::to_string(port) +
                          " dbname=app user=postgres password=postgres "
                          "connect_timeout=3 sslmode=disable");
    }
    pid_t postmaster_pid(const std::string& data_key) const
    {
        std::ifstream in(env.get(data_key) + "/postmaster.pid");
        pid_t pid = -1;
        in >> pid;
        return pid;
    }
    /// pg_ctl -D <node's data> <args> as the postgres user; returns its exit status.
    int pg_ctl(const std::string& node, const std::string& args) const
    {
        const std::string key = node == "primary" ? "PRIMARY" : "REPLICA" + node.substr(7);
        const std::string cmd = env.get("PG_RUNAS") + " " + env.get("PGBIN") + "/pg_ctl -D " + env.get(key + "_DATA") +
                                " -l " + env.get(key + "_LOG") + " -w -t 60 " + args + " > " + dir + "/pg_ctl.out 2>&1";
        return std::system(cmd.c_str());
    }
    int port_of(const std::string& node) const
    {
        return node == "primary" ? env.primary_port() : env.replica_port(std::stoi(node.substr(7)));
    }
    bool in_recovery(int port) const
    {
        Conn c = superuser(port);
        Result r = exec_ok(c.get(), "SELECT pg_is_in_recovery()", PGRES_TUPLES_OK);
        return std::string(PQgetvalue(r.get(), 0, 0)) == "t";
    }
};

inline const char* const node_names[] = {"primary", "replica1", "replica2"};

/// GET /status as JSON (fails the test unless 200).
inline nlohmann::json status(const Proxy& px)
{
    auto r = http::get(px.admin_port(), "/status");
    REQUIRE_MESSAGE(r.status == 200, r.body);
    return r.json();
}

inline nlohmann::json backend_status(const Proxy& px, const std::string& name)
{
    const auto st = status(px);  // a named local: the loop must not walk a destroyed temporary
    for (const auto& b : st["backends"])
        if (b["name"] == name)
            return b;
    FAIL("no backend " << name << " in /status");
    return {};
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
template <class F>
bool eventually(F&& cond, std::chrono::milliseconds limit)
{
    const auto until = Clock::now() + limit;
    for (;;) {
        if (cond())
            return true;
        if (Clock::now() >= until)
            return false;
        std::this_thread::sleep_for(20ms);
    }
}

/// One write through pgswitch on a fresh connection; the port of the server
/// that ran it, or 0 when it failed.
inline int write_through(const Proxy& px, const std::string& table, int id)
{
    Conn c(PQconnectdb(px.conninfo().c_str()));
    if (PQstatus(c.get()) != CONNECTION_OK)
        return 0;
    Result r(
        PQexec(c.get(),
               ("INSERT INTO " + table + " VALUES (" + std::to_string(id) + ") RETURNING inet_server_port()").c_str()));
    return PQresultStatus(r.get()) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r.get(), 0, 0)) : 0;
}

/// A writer loop committing sequential ids (recording every acknowledged
/// one) and a reader loop, both through pgswitch, each on one connection
/// (reconnecting when it breaks). mark() starts a new "event" (a kill, a
/// stop): write errors and the first successful write are counted from it.
class Load {
public:
    Load(const Proxy& px, std::string table) : px_(px), table_(std::move(table)) {}
    ~Load() { finish(); }

    /// Starts both loops (or only the reader).
    void start(bool with_writer = true)
    {
        if (with_writer)
            writer_ = std::thread([this] { write_loop(); });
        reader_ = std::thread([this] { read_loop(); });
    }
    bool wait_acked(std::size_t n, std::chrono::milliseconds limit)
    {
        return eventually(
            [&] {
                std::lock_guard lk(mu_);
                return acked_.size() >= n;
            },
            limit);
    }
    /// `old_port`: the server the event hits; a write it still acknowledges
    /// (an orphaned backend finishing after kill -9 of its postmaster, or
    /// before a clean stop got to it) does not count as writes resuming.
    Clock::time_point mark(int old_port)
    {
        std::lock_guard lk(mu_);
        const auto now = Clock::now();
        event_at_ = now.time_since_epoch().count();
        old_port_ = old_port;
        first_write_after_.reset();
        write_errors_after_.clear();
        acked_by_old_after_ = 0;
        return now;
    }
    std::size_t acked_by_old_after()
    {
        std::lock_guard lk(mu_);
        return acked_by_old_after_;
    }
    /// Milliseconds from `event` to the first write started after it that
    /// succeeded on another server than the one the event hit (or on any,
    /// with mark(0)); nullopt when none within `limit`.
    std::optional<double> wait_first_write(Clock::time_point event, std::chrono::milliseconds limit)
    {
        std::optional<double> ms;
        eventually(
            [&] {
                std::lock_guard lk(mu_);
                if (first_write_after_)
                    ms = std::chrono::duration<double, std::milli>(*first_write_after_ - event).count();
                return ms.has_value();
            },
            limit);
        return ms;
    }
    void finish()
    {
        stop_ = true;
        if (writer_.joinable())
            writer_.join();
        if (reader_.joinable())
            reader_.join();
    }
    std::set<int> acked()
    {
        std::lock_guard lk(mu_);
        return acked_;
    }
    std::vector<std::string> write_errors_after()
    {
        std::lock_guard lk(mu_);
        return write_errors_after_;
    }
    std::vector<std::string> read_errors()
    {
        std::lock_guard lk(mu_);
        return read_errors_;
    }
    std::size_t reads() const { return reads_; }

private:
    void write_loop()
    {
        Conn c = connect(px_.conninfo());
        for (int id = 1; !stop_; ++id) {
            const auto started = Clock::now().time_since_epoch().count();
            Result r(PQexec(
                c.get(), ("INSERT INTO " + table_ + " VALUES (" + std::to_string(id) + ") RETURNING inet_server_port()")
                             .c_str()));
            std::lock_guard lk(mu_);
            const bool after_event = event_at_ != 0 && started > event_at_;
            if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) {
                acked_.insert(id);
                const bool on_old = std::atoi(PQgetvalue(r.get(), 0, 0)) == old_port_;
                if (after_event && on_old)
                    ++acked_by_old_after_;
                if (after_event && !on_old && !first_write_after_)
                    first_write_after_ = Clock::now();
            } else if (after_event) {
                write_errors_after_.push_back(errmsg(c.get()));
            }
            if (PQstatus(c.get()) != CONNECTION_OK) {
                std::this_thread::sleep_for(20ms);  // pace reconnects; not a condition wait
                c = Conn(PQconnectdb(px_.conninfo().c_str()));
            }
        }
    }
    void read_loop()
    {
        Conn c = connect(px_.conninfo());
        while (!stop_) {
            Result r(PQexec(c.get(), "SELECT count(*) FROM pg_class"));
            if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) {
                ++reads_;
            } else {
                std::lock_guard lk(mu_);
                read_errors_.push_back(errmsg(c.get()));
                if (PQstatus(c.get()) != CONNECTION_OK) {
                    std::this_thread::sleep_for(20ms);  // pace reconnects
                    c = Conn(PQconnectdb(px_.conninfo().c_str()));
                }
            }
        }
    }

    const Proxy& px_;
    std::string table_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> reads_{0};
    std::mutex mu_;
    Clock::time_point::rep event_at_ = 0;
    int old_port_ = 0;
    std::size_t acked_by_old_after_ = 0;
    std::set<int> acked_;
    std::vector<std::string> write_errors_after_, read_errors_;
    std::optional<Clock::time_point> first_write_after_;
    std::thread writer_, reader_;
};

/// What a user checks after a failover, among the `survivors`: exactly one
/// is primary, it has every acknowledged id (`lost` = how many it lacks),
/// and every other survivor streams from it (a row written on it after the
/// failover reaches them). Returns the new primary's name.
inline std::string check_one_primary_and_followers(const OwnCluster& cl, const std::vector<std::string>& survivors,
                                                   const std::string& table, const std::set<int>& acked, int& lost)
{
    std::string primary;
    int primaries = 0;
    for (const auto& n : survivors)
        if (!cl.in_recovery(cl.port_of(n))) {
            ++primaries;
            primary = n;
        }
    REQUIRE_MESSAGE(primaries == 1, primaries << " primaries among the survivors");
    static int marker = -1;
    const int my_marker = --marker;
    {
        Conn c = cl.superuser(cl.port_of(primary));
        Result r = exec_ok(c.get(), "SELECT id FROM " + table, PGRES_TUPLES_OK);
        std::set<int> present;
        for (int i = 0; i < PQntuples(r.get()); ++i)
            present.insert(std::atoi(PQgetvalue(r.get(), i, 0)));
        lost = 0;
        for (int id : acked)
            lost += present.count(id) == 0;
        exec_ok(c.get(), "INSERT INTO " + table + " VALUES (" + std::to_string(my_marker) + ")");
    }
    for (const auto& n : survivors) {
        if (n == primary)
            continue;
        Conn c = cl.superuser(cl.port_of(n));
        const bool seen = eventually(
            [&] {
                Result r(
                    PQexec(c.get(), ("SELECT 1 FROM " + table + " WHERE id = " + std::to_string(my_marker)).c_str()));
                return PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) == 1;
            },
            15s);
        CHECK_MESSAGE(seen, n << " did not receive a row written on the new primary " << primary);
    }
    return primary;
}

inline int env_int(const char* name, int fallback)
{
    const char* v = std::getenv(name);
    return v && *v ? std::atoi(v) : fallback;
}

/// SIGSTOP / SIGCONT of a server's postmaster and every process it started:
/// a hung VM, stuck storage, a partition where the kernel still answers.
inline void signal_server(const OwnCluster& cl, const std::string& data_key, int sig)
{
    const pid_t pm = cl.postmaster_pid(data_key);
    REQUIRE(pm > 0);
    std::vector<pid_t> pids{pm};
    const auto children = run_command({"pgrep", "-P", std::to_string(pm)}, {}, 10s);
    std::istringstream in(children.output);
    for (pid_t p; in >> p;)
        pids.push_back(p);
    for (pid_t p : pids)
        (void)::kill(p, sig);
}

}  // namespace e2e
