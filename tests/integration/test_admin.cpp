// The admin HTTP API (SPEC §5, issue 4 item 5) driven over HTTP against pgswitch on the real
// cluster: health/ready/status fields, drain/enable moving reads, adding a replica started by
// the test and removing it under a concurrent read loop, /metrics format and counters, the
// bearer token, error statuses, and /routing/explain.
//
// Each case starts its own pgswitch (100 ms health interval) so one case's drains or added
// backends never leak into another. Which server ran a read is `SELECT inet_server_port()`.
#include "harness.h"
#include "http_client.h"

#include <doctest/doctest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <csignal>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace e2e;
using nlohmann::json;

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

/// A pgswitch for one admin test: fast health checks, round_robin.
std::unique_ptr<Proxy> admin_proxy(ProxyOptions o = {})
{
    o.health_interval_ms = 100;
    auto px = std::make_unique<Proxy>(std::move(o));
    px->start();
    return px;
}

/// GET path until pred(response) holds; returns the last response (fails on the deadline).
http::Response poll_get(int port, const std::string& path, const std::function<bool(const http::Response&)>& pred,
                        const std::string& what, std::chrono::milliseconds timeout = 15s, const std::string& token = "")
{
    const auto deadline = Clock::now() + timeout;
    http::Response r;
    for (;;) {
        r = http::get(port, path, token);
        if (pred(r))
            return r;
        REQUIRE_MESSAGE(Clock::now() < deadline,
                        "timed out waiting for " << what << "; last GET " << path << " -> " << r.str());
        std::this_thread::sleep_for(20ms);
    }
}

/// Waits until every named backend is up (and, for replicas, has role replica).
void wait_backends_up(int admin_port, const std::map<std::string, std::string>& roles,
                      std::chrono::milliseconds timeout = 15s, const std::string& token = "")
{
    poll_get(
        admin_port, "/backends",
        [&](const http::Response& r) {
            if (r.status != 200)
                return false;
            const json j = r.json();
            if (!j.is_object() || !j.contains("backends"))
                return false;
            size_t ok = 0;
            for (const auto& b : j["backends"]) {
                auto it = roles.find(b.value("name", ""));
                if (it != roles.end() && b.value("state", "") == "up" && b.value("role", "") == it->second)
                    ++ok;
            }
            return ok == roles.size();
        },
        "backends up with their roles", timeout, token);
}

const std::map<std::string, std::string> k_cluster_roles = {
    {"primary", "primary"}, {"replica1", "replica"}, {"replica2", "replica"}};

int read_port(PGconn* c)
{
    return std::stoi(query_value(c, "SELECT inet_server_port()"));
}

/// Runs n autocommit reads on c and checks where they went: never on a port in `never`, and
/// on `want` — except that a read may fall back to the primary while `want` is briefly not
/// usable (a lag spike when a concurrent pg_basebackup switches WAL segments); at most 10% of
/// them, and reported.
void reads_only_on(PGconn* c, int n, int want, const std::set<int>& never, const std::string& what)
{
    std::map<int, int> tally;
    for (int i = 0; i < n; ++i)
        ++tally[read_port(c)];
    std::ostringstream shown;
    for (const auto& [p, k] : tally)
        shown << p << ":" << k << " ";
    INFO(what << ": reads by port " << shown.str() << "(want " << want << ", primary " << primary_port() << ")");
    for (const auto& [p, k] : tally) {
        CHECK_MESSAGE(!never.count(p), "reads reached a drained/removed server");
        CHECK_MESSAGE((p == want || p == primary_port()), "reads reached an unexpected server");
    }
    CHECK(tally[want] * 10 >= n * 9);
    if (tally[primary_port()] > 0)
        MESSAGE(what << ": " << tally[primary_port()] << " read(s) fell back to the primary");
}

/// Every error answer is JSON with a non-empty "error" string.
void check_error_body(const http::Response& r, int status, const std::string& what)
{
    INFO(what << " -> " << r.str());
    CHECK(r.status == status);
    const json j = r.json();
    REQUIRE(j.is_object());
    REQUIRE(j.contains("error"));
    CHECK(j["error"].is_string());
    CHECK(!j["error"].get<std::string>().empty());
    CHECK(r.header("content-type").find("application/json") != std::string::npos);
}

/// Checks the SPEC §5 fields of one backend object.
void check_backend_fields(const json& b)
{
    INFO("backend: " << b.dump());
    REQUIRE(b.is_object());
    for (const char* k :
         {"name", "host", "port", "role", "state", "lag_bytes", "replay_lsn", "weight", "connections", "queries"})
        CHECK_MESSAGE(b.contains(k), "missing field " << k);
    CHECK(b["name"].is_string());
    CHECK(b["host"].is_string());
    CHECK(b["port"].is_number_integer());
    CHECK(std::set<std::string>{"primary", "replica", "unknown"}.count(b.value("role", "")) == 1);
    CHECK(std::set<std::string>{"up", "down", "fenced", "drained"}.count(b.value("state", "")) == 1);
    CHECK((b["lag_bytes"].is_null() || b["lag_bytes"].is_number_integer()));
    CHECK((b["replay_lsn"].is_null() || b["replay_lsn"].is_string()));
    CHECK(b["weight"].is_number_integer());
    REQUIRE(b["connections"].is_object());
    CHECK(b["connections"]["active"].is_number_integer());
    CHECK(b["connections"]["idle"].is_number_integer());
    REQUIRE(b["queries"].is_object());
    CHECK(b["queries"]["reads"].is_number_integer());
    CHECK(b["queries"]["writes"].is_number_integer());
}

// ---------------------------------------------------------------- a third replica

/// "runuser -u postgres --" (from cluster.env, or when root), split into words.
std::vector<std::string> as_pg()
{
    std::string runas;
    if (auto it = cluster().vars.find("PG_RUNAS"); it != cluster().vars.end())
        runas = it->second;
    if (runas.empty() && ::geteuid() == 0)
        runas = "runuser -u postgres --";
    std::istringstream in(runas);
    std::vector<std::string> words;
    for (std::string w; in >> w;)
        words.push_back(w);
    return words;
}

CommandResult run_as_pg(std::vector<std::string> argv, std::chrono::milliseconds timeout = 60s)
{
    auto cmd = as_pg();
    cmd.insert(cmd.end(), argv.begin(), argv.end());
    return run_command(cmd, {}, timeout);
}

/// A streaming replica made by pg_basebackup from the primary into a temp dir, started with
/// pg_ctl on a free port; stopped and removed by the destructor.
class ExtraReplica {
public:
    explicit ExtraReplica(const std::string& name) : name_(name)
    {
        char tmpl[] = "/tmp/pgswitch-e2e-replica.XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        ::chmod(dir_.c_str(), 0755);
        if (::geteuid() == 0) {
            const passwd* pw = ::getpwnam("postgres");
            REQUIRE_MESSAGE(pw != nullptr, "running as root but there is no postgres user");
            REQUIRE(::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) == 0);
        }
        data_ = dir_ + "/data";
        port_ = free_port();
        const std::string bin = cluster().pgbin();
        auto bb = run_as_pg({bin + "/pg_basebackup", "-D", data_, "-R", "-X", "stream", "-c", "fast", "--no-sync", "-d",
                             "host=127.0.0.1 port=" + std::to_string(primary_port()) +
                                 " user=" + cluster().get("SUPERUSER") + " application_name=" + name_});
        REQUIRE_MESSAGE(bb.exit_code == 0, "pg_basebackup failed: " << bb.output);
        {
            // appending keeps the file's owner (postgres)
            std::ofstream conf(data_ + "/postgresql.conf", std::ios::app);
            conf << "\n# ---- test_admin.cpp: " << name_ << " ----\nport = " << port_ << "\nunix_socket_directories = '"
                 << dir_ << "'\n";
            REQUIRE(conf.good());
        }
        auto st = run_as_pg({bin + "/pg_ctl", "-D", data_, "-l", dir_ + "/server.log", "-w", "-t", "30", "start"});
        started_ = st.exit_code == 0;
        REQUIRE_MESSAGE(started_, "pg_ctl start failed: " << st.output << "\nlog:\n" << log());
    }
    ~ExtraReplica()
    {
        if (started_) {
            auto st = run_as_pg(
                {cluster().pgbin() + "/pg_ctl", "-D", data_, "-m", "immediate", "-w", "-t", "30", "stop"});
            if (st.exit_code != 0) {
                // pg_ctl failed: signal the postmaster recorded in postmaster.pid
                std::ifstream pidf(data_ + "/postmaster.pid");
                long pid = 0;
                if (pidf >> pid && pid > 0)
                    ::kill(pid_t(pid), SIGQUIT);
                std::cerr << "pg_ctl stop of " << name_ << " failed: " << st.output << "\n";
            }
        }
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    int port() const { return port_; }
    std::string log() const
    {
        std::ifstream in(dir_ + "/server.log");
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

private:
    std::string name_, dir_, data_;
    int port_ = 0;
    bool started_ = false;
};

// ---------------------------------------------------------------- /metrics

/// Sum of every sample of one family (all label sets).
double metric_sum(const std::string& text, const std::string& family)
{
    double sum = 0;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#')
            continue;
        const auto sp = line.rfind(' ');
        const std::string name = line.substr(0, line.find_first_of("{ "));
        if (name == family)
            sum += std::strtod(line.c_str() + sp + 1, nullptr);
    }
    return sum;
}

}  // namespace

TEST_CASE("admin: health, ready and status report the cluster with the SPEC fields")
{
    E2E_SKIP_IF_DIRECT("admin API");
    ProxyOptions o;
    o.admin_token = "s3cret";
    auto px = admin_proxy(o);
    const int ap = px->admin_port();
    const std::string token = "s3cret";

    // /health needs no token, even when one is set.
    auto h = http::get(ap, "/health");
    INFO("/health -> " << h.str());
    REQUIRE(h.status == 200);
    CHECK(h.json() == json{{"status", "ok"}});
    CHECK(h.header("content-type").find("application/json") != std::string::npos);

    wait_backends_up(ap, k_cluster_roles, 15s, token);

    auto ready = http::get(ap, "/ready", token);
    INFO("/ready -> " << ready.str());
    CHECK(ready.status == 200);
    CHECK(ready.json().value("ready", false) == true);
    CHECK(ready.json().value("primary", "") == "primary");

    // Some traffic so the counters are not all zero.
    {
        Conn c = px->connect_app();
        for (int i = 0; i < 5; ++i)
            read_port(c.get());
    }

    auto st = http::get(ap, "/status", token);
    INFO("/status -> " << st.str());
    REQUIRE(st.status == 200);
    const json s = st.json();
    REQUIRE(s.is_object());
    CHECK(s["version"].is_string());
    CHECK(!s.value("version", "").empty());
    CHECK(s["uptime_s"].is_number());
    CHECK(s["uptime_s"].get<double>() >= 0);
    CHECK(s.value("primary", "") == "primary");
    REQUIRE(s["backends"].is_array());
    CHECK(s["backends"].size() == 3);
    std::map<std::string, json> by_name;
    for (const auto& b : s["backends"]) {
        check_backend_fields(b);
        by_name[b.value("name", "")] = b;
    }
    REQUIRE(by_name.count("primary") == 1);
    REQUIRE(by_name.count("replica1") == 1);
    REQUIRE(by_name.count("replica2") == 1);
    CHECK(by_name["primary"]["port"] == primary_port());
    CHECK(by_name["replica1"]["port"] == replica1_port());
    CHECK(by_name["replica2"]["port"] == replica2_port());
    CHECK(by_name["primary"]["role"] == "primary");
    CHECK(by_name["replica1"]["role"] == "replica");
    CHECK(by_name["replica2"]["role"] == "replica");
    for (const auto& [n, b] : by_name)
        CHECK_MESSAGE(b["state"] == "up", n);
    // The 5 reads went to the replicas (a fresh session has not written).
    const auto reads = by_name["replica1"]["queries"]["reads"].get<long long>() +
                       by_name["replica2"]["queries"]["reads"].get<long long>();
    CHECK(reads >= 5);

    // GET /clients lists an open session with what it logged in as.
    {
        Conn c = px->connect_app("application_name=admin_e2e");
        read_port(c.get());
        auto cl = http::get(ap, "/clients", token);
        INFO("/clients -> " << cl.str());
        REQUIRE(cl.status == 200);
        REQUIRE(cl.json()["clients"].is_array());
        int found = 0;
        const json clients = cl.json()["clients"];
        for (const auto& x : clients) {
            if (x.value("application_name", "") != "admin_e2e")
                continue;
            ++found;
            CHECK(x.value("user", "") == "app");
            CHECK(x.value("database", "") == "app");
            CHECK(x.value("address", "").rfind("127.0.0.1", 0) == 0);
            CHECK(x["state"].is_string());
        }
        CHECK(found == 1);
    }

    // POST /reload re-reads the (unchanged) config file.
    auto rl = http::post(ap, "/reload", "", token);
    INFO("/reload -> " << rl.str());
    CHECK(rl.status == 200);
    CHECK(rl.json().value("reloaded", false) == true);

    // GET /backends and /backends/{name} agree with /status.
    auto list = http::get(ap, "/backends", token);
    REQUIRE(list.status == 200);
    REQUIRE(list.json()["backends"].is_array());
    CHECK(list.json()["backends"].size() == 3);
    const json listed = list.json()["backends"];
    for (const auto& b : listed)
        check_backend_fields(b);
    auto one = http::get(ap, "/backends/replica1", token);
    INFO("/backends/replica1 -> " << one.str());
    REQUIRE(one.status == 200);
    check_backend_fields(one.json());
    CHECK(one.json()["name"] == "replica1");
    CHECK(one.json()["port"] == replica1_port());
}

TEST_CASE("admin: drain moves reads off a replica and enable brings them back")
{
    E2E_SKIP_IF_DIRECT("admin API");
    auto px = admin_proxy();
    const int ap = px->admin_port();
    wait_backends_up(ap, k_cluster_roles);

    // A session opened before the drain: drained means no new statements, even on it.
    Conn c = px->connect_app();
    {
        std::set<int> seen;
        const auto deadline = Clock::now() + 10s;
        while (seen.size() < 2) {
            REQUIRE_MESSAGE(Clock::now() < deadline, "reads did not reach both replicas");
            seen.insert(read_port(c.get()));
        }
        CHECK(seen == std::set<int>{replica1_port(), replica2_port()});
    }

    auto d = http::post(ap, "/backends/replica1/drain");
    INFO("drain -> " << d.str());
    REQUIRE(d.status == 200);
    CHECK(d.json().value("state", "") == "drained");
    auto g = http::get(ap, "/backends/replica1");
    CHECK(g.json().value("state", "") == "drained");

    reads_only_on(c.get(), 40, replica2_port(), {replica1_port()}, "replica1 drained, old session");
    {
        Conn fresh = px->connect_app();
        reads_only_on(fresh.get(), 20, replica2_port(), {replica1_port()}, "replica1 drained, new session");
    }

    auto e = http::post(ap, "/backends/replica1/enable");
    INFO("enable -> " << e.str());
    REQUIRE(e.status == 200);
    poll_get(
        ap, "/backends/replica1", [](const http::Response& r) { return r.json().value("state", "") == "up"; },
        "replica1 up after enable");
    const auto deadline = Clock::now() + 10s;
    bool back = false;
    while (!back) {
        REQUIRE_MESSAGE(Clock::now() < deadline, "reads did not return to replica1 after enable");
        back = read_port(c.get()) == replica1_port();
    }
}

TEST_CASE("admin: POST /backends adds a replica that gets reads; DELETE removes it under a read loop")
{
    E2E_SKIP_IF_DIRECT("admin API");
    ExtraReplica r3("replica3");
    ProxyOptions o;
    o.shutdown_timeout_ms = 5000;
    auto px = admin_proxy(o);
    const int ap = px->admin_port();
    wait_backends_up(ap, k_cluster_roles);

    const json add = {{"name", "replica3"}, {"host", "127.0.0.1"}, {"port", r3.port()}, {"weight", 1}};
    auto a = http::post(ap, "/backends", add.dump());
    INFO("POST /backends -> " << a.str());
    REQUIRE(a.status == 201);
    CHECK(a.header("location") == "/backends/replica3");
    CHECK(a.json().value("name", "") == "replica3");
    wait_backends_up(ap, {{"replica3", "replica"}});

    Conn c = px->connect_app();
    // It gets reads in the rotation...
    {
        const auto deadline = Clock::now() + 10s;
        while (read_port(c.get()) != r3.port())
            REQUIRE_MESSAGE(Clock::now() < deadline, "replica3 got no reads; its log:\n" << r3.log());
    }
    // ...and all of them when the other two are drained.
    REQUIRE(http::post(ap, "/backends/replica1/drain").status == 200);
    REQUIRE(http::post(ap, "/backends/replica2/drain").status == 200);
    reads_only_on(c.get(), 20, r3.port(), {replica1_port(), replica2_port()}, "replica1 and replica2 drained");

    // A statement still running on replica3 when DELETE comes: the removal waits for it.
    Conn slow = px->connect_app();
    REQUIRE(PQsendQuery(slow.get(), "SELECT inet_server_port(), pg_sleep(1)") == 1);
    {
        const ClusterEnv& env = cluster();
        Conn d = connect_ok("host=127.0.0.1 port=" + std::to_string(r3.port()) + " dbname=" + cq(env.get("APP_DB")) +
                            " user=" + cq(env.get("SUPERUSER")) + " password=" + cq(env.get("SUPERPASS")) +
                            " connect_timeout=5 sslmode=disable");
        const auto deadline = Clock::now() + 5s;
        while (query_value(d.get(), "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(1)' "
                                    "AND state = 'active' AND pid <> pg_backend_pid()") == "0")
            REQUIRE_MESSAGE(Clock::now() < deadline, "the slow statement did not start on replica3");
    }

    REQUIRE(http::post(ap, "/backends/replica1/enable").status == 200);
    REQUIRE(http::post(ap, "/backends/replica2/enable").status == 200);
    wait_backends_up(ap, k_cluster_roles);
    auto g = http::get(ap, "/backends/replica3");
    REQUIRE(g.status == 200);
    CHECK(g.json()["queries"]["reads"].get<long long>() >= 18);

    // A concurrent read loop, then DELETE.
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0}, on_r3{0}, on_r3_after_delete{0};
    std::atomic<bool> deleted{false};
    std::mutex err_mu;
    std::string first_error;
    Conn loop_conn = px->connect_app();
    std::thread loop([&] {
        PGconn* lc = loop_conn.get();
        while (!stop) {
            const bool sent_after_delete = deleted;
            Result r(PQexec(lc, "SELECT inet_server_port()"));
            if (PQresultStatus(r.get()) == PGRES_TUPLES_OK && PQntuples(r.get()) == 1) {
                ++ok;
                const int p = std::atoi(PQgetvalue(r.get(), 0, 0));
                if (p == r3.port()) {
                    ++on_r3;
                    if (sent_after_delete)
                        ++on_r3_after_delete;
                }
            } else {
                ++failed;
                std::lock_guard lk(err_mu);
                if (first_error.empty())
                    first_error = errmsg(lc);
                if (PQstatus(lc) != CONNECTION_OK)
                    break;
            }
        }
    });
    // Let the loop spread over all three replicas before removing one.
    {
        const auto deadline = Clock::now() + 10s;
        while (on_r3 < 3 && Clock::now() < deadline && failed == 0)
            std::this_thread::sleep_for(10ms);
    }
    CHECK_MESSAGE(on_r3 >= 3, "the read loop never reached replica3");

    auto del = http::del(ap, "/backends/replica3");
    deleted = true;
    INFO("DELETE -> " << del.str());
    // The slow statement is still running there: accepted, drained, removed later.
    CHECK(del.status == 202);
    auto during = http::get(ap, "/backends/replica3");
    INFO("GET /backends/replica3 during the removal -> " << during.str());
    CHECK((during.status == 404 || during.json().value("state", "") == "drained"));

    // The running statement finishes normally, on replica3.
    {
        const auto deadline = Clock::now() + 10s;
        while (PQisBusy(slow.get())) {
            REQUIRE(wait_readable(PQsocket(slow.get()), deadline));
            REQUIRE(PQconsumeInput(slow.get()) == 1);
        }
        Result r(PQgetResult(slow.get()));
        REQUIRE_MESSAGE(PQresultStatus(r.get()) == PGRES_TUPLES_OK, "slow statement: " << errmsg(slow.get()));
        CHECK(std::atoi(PQgetvalue(r.get(), 0, 0)) == r3.port());
        while (Result more{PQgetResult(slow.get())}) {
        }
    }
    poll_get(
        ap, "/backends/replica3", [](const http::Response& r) { return r.status == 404; }, "replica3 removed", 10s);
    // Keep reading a little after the removal: nothing may fail, nothing may reach replica3.
    const int after = ok;
    {
        const auto deadline = Clock::now() + 5s;
        while (ok < after + 50 && Clock::now() < deadline && failed == 0)
            std::this_thread::sleep_for(10ms);
    }
    stop = true;
    loop.join();
    INFO("read loop: ok=" << ok.load() << " failed=" << failed.load() << " on replica3=" << on_r3.load()
                          << " first error: " << first_error);
    CHECK(failed == 0);
    CHECK(ok >= after + 50);
    CHECK(on_r3_after_delete == 0);
    // The slow session still works (its replica3 link is gone).
    CHECK(query_value(slow.get(), "SELECT 42") == "42");

    // Gone from the lists too; the cluster's own backends untouched.
    auto nf = http::get(ap, "/backends/replica3");
    check_error_body(nf, 404, "GET /backends/replica3 after DELETE");
    auto list = http::get(ap, "/backends");
    REQUIRE(list.status == 200);
    CHECK(list.json()["backends"].size() == 3);
    // A fresh session reads from the remaining replicas.
    Conn fresh = px->connect_app();
    for (int i = 0; i < 10; ++i) {
        const int p = read_port(fresh.get());
        CHECK(p != r3.port());
    }
}

TEST_CASE("admin: /metrics is Prometheus text and its counters grow with traffic")
{
    E2E_SKIP_IF_DIRECT("admin API");
    auto px = admin_proxy();
    const int ap = px->admin_port();
    wait_backends_up(ap, k_cluster_roles);

    auto m1 = http::get(ap, "/metrics");
    REQUIRE_MESSAGE(m1.status == 200, m1.str());
    CHECK(m1.header("content-type").find("text/plain") != std::string::npos);

    const std::regex comment(R"(^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
    const std::string label = R"([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")";
    const std::regex sample("^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(" + label + "(," + label +
                            ")*,?)?\\})? (-?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?|[+-]Inf|NaN)( -?[0-9]+)?$");
    std::set<std::string> typed;  // families with a # TYPE line
    std::set<std::string> families_seen;
    int samples = 0;
    {
        std::istringstream in(m1.body);
        int lineno = 0;
        for (std::string line; std::getline(in, line);) {
            ++lineno;
            if (line.empty())
                continue;
            std::smatch mm;
            if (std::regex_match(line, mm, comment)) {
                if (mm[1] == "TYPE") {
                    std::istringstream w(line.substr(7));
                    std::string fam;
                    w >> fam;
                    typed.insert(fam);
                }
                continue;
            }
            const bool ok = std::regex_match(line, mm, sample);
            CHECK_MESSAGE(ok, "line " << lineno << " is neither a comment nor a sample: `" << line << "`");
            if (!ok)
                continue;
            ++samples;
            std::string fam = mm[1];
            if (!typed.count(fam)) {
                for (const char* suffix : {"_bucket", "_sum", "_count"}) {
                    const std::string s = suffix;
                    if (fam.size() > s.size() && fam.compare(fam.size() - s.size(), s.size(), s) == 0 &&
                        typed.count(fam.substr(0, fam.size() - s.size()))) {
                        fam = fam.substr(0, fam.size() - s.size());
                        break;
                    }
                }
            }
            CHECK_MESSAGE(typed.count(fam), "sample `" << line << "` has no # TYPE line before it");
            families_seen.insert(fam);
        }
    }
    CHECK(samples > 0);
    CHECK(families_seen.count("pgswitch_queries_total"));

    const double before = metric_sum(m1.body, "pgswitch_queries_total");
    {
        Conn c = px->connect_app();
        for (int i = 0; i < 50; ++i)
            read_port(c.get());
    }
    double after = before;
    poll_get(
        ap, "/metrics",
        [&](const http::Response& r) {
            after = metric_sum(r.body, "pgswitch_queries_total");
            return r.status == 200 && after >= before + 50;
        },
        "pgswitch_queries_total to grow by 50", 5s);
    CHECK(after >= before + 50);
}

TEST_CASE("admin: the bearer token is enforced")
{
    E2E_SKIP_IF_DIRECT("admin API");
    ProxyOptions o;
    o.admin_token = "s3cret";
    auto px = admin_proxy(o);
    const int ap = px->admin_port();

    check_error_body(http::get(ap, "/status"), 401, "GET /status without a token");
    check_error_body(http::get(ap, "/status", "wrong"), 401, "GET /status with a wrong token");
    check_error_body(http::get(ap, "/status", "s3cret-and-more"), 401, "GET /status with a longer token");
    {
        http::Request r;
        r.path = "/status";
        r.headers.emplace_back("Authorization", "Basic czNjcmV0");
        check_error_body(http::send(ap, r), 401, "GET /status with Basic auth");
    }
    check_error_body(http::post(ap, "/backends/replica1/drain"), 401, "POST drain without a token");
    check_error_body(http::get(ap, "/metrics"), 401, "GET /metrics without a token");

    auto ok = http::get(ap, "/status", "s3cret");
    INFO("GET /status with the token -> " << ok.str());
    CHECK(ok.status == 200);
    CHECK(ok.json().contains("version"));
    // The unauthenticated drain above changed nothing.
    auto b = http::get(ap, "/backends/replica1", "s3cret");
    CHECK(b.status == 200);
    CHECK(b.json().value("state", "") != "drained");
    // /health stays open.
    CHECK(http::get(ap, "/health").status == 200);
}

TEST_CASE("admin: bad requests get the right status and a JSON error")
{
    E2E_SKIP_IF_DIRECT("admin API");
    auto px = admin_proxy();
    const int ap = px->admin_port();
    wait_backends_up(ap, k_cluster_roles);

    check_error_body(http::get(ap, "/nope"), 404, "GET /nope");
    check_error_body(http::get(ap, "/backends/replica1/extra/segments"), 404, "GET a too-deep path");
    auto put = http::send(ap, http::Request{"PUT", "/health", "", {}});
    check_error_body(put, 405, "PUT /health");
    CHECK(put.header("allow") == "GET");
    check_error_body(http::post(ap, "/status"), 405, "POST /status");
    check_error_body(http::del(ap, "/backends"), 405, "DELETE /backends");
    check_error_body(http::get(ap, "/backends/replica1/drain"), 405, "GET drain");

    check_error_body(http::post(ap, "/backends", "{\"name\": \"x\", "), 400, "POST /backends bad JSON");
    check_error_body(http::post(ap, "/backends", "[1,2]"), 400, "POST /backends non-object");
    check_error_body(http::post(ap, "/backends", ""), 400, "POST /backends empty body");
    check_error_body(http::post(ap, "/backends", R"({"name":"x"})"), 400, "POST /backends missing host/port");
    check_error_body(http::post(ap, "/backends", R"({"host":"127.0.0.1","port":5432})"), 400,
                     "POST /backends missing name");
    check_error_body(http::post(ap, "/backends", R"({"name":"x","host":"127.0.0.1","port":"5432"})"), 400,
                     "POST /backends port as a string");
    check_error_body(http::post(ap, "/backends", R"({"name":"x","host":"127.0.0.1","port":70000})"), 400,
                     "POST /backends port out of range");
    check_error_body(http::post(ap, "/backends", R"({"name":"a b","host":"127.0.0.1","port":5432})"), 400,
                     "POST /backends bad name");
    check_error_body(http::post(ap, "/backends", R"({"name":"x","host":"127.0.0.1","port":5432,"wieght":1})"), 400,
                     "POST /backends unknown field");
    check_error_body(http::post(ap, "/backends", R"({"name":"replica1","host":"127.0.0.1","port":1})"), 409,
                     "POST /backends duplicate name");
    check_error_body(
        http::post(ap, "/backends", json{{"name", "other"}, {"host", "127.0.0.1"}, {"port", replica1_port()}}.dump()),
        409, "POST /backends duplicate address");

    check_error_body(http::post(ap, "/backends/nosuch/drain"), 404, "drain an unknown backend");
    check_error_body(http::post(ap, "/backends/nosuch/enable"), 404, "enable an unknown backend");
    check_error_body(http::get(ap, "/backends/nosuch"), 404, "GET an unknown backend");
    check_error_body(http::del(ap, "/backends/nosuch"), 404, "DELETE an unknown backend");
    check_error_body(http::del(ap, "/backends/primary"), 409, "DELETE the primary");

    // A failover to a server that is not a healthy replica is refused (and nothing moves).
    check_error_body(http::post(ap, "/failover", R"({"target":"nosuch"})"), 409, "POST /failover to an unknown target");
    check_error_body(http::post(ap, "/failover", R"({"target":"primary"})"), 409, "POST /failover to the primary");

    check_error_body(http::post(ap, "/routing/explain", "not json"), 400, "explain bad JSON");
    check_error_body(http::post(ap, "/routing/explain", R"({"query":"SELECT 1"})"), 400, "explain without sql");

    // None of this changed the backends.
    auto list = http::get(ap, "/backends");
    REQUIRE(list.status == 200);
    CHECK(list.json()["backends"].size() == 3);
    const json listed = list.json()["backends"];
    for (const auto& b : listed)
        CHECK(b.value("state", "") == "up");
}

TEST_CASE("admin: POST /routing/explain says where a statement goes")
{
    E2E_SKIP_IF_DIRECT("admin API");
    auto px = admin_proxy();
    const int ap = px->admin_port();
    wait_backends_up(ap, k_cluster_roles);

    auto r = http::post(ap, "/routing/explain", R"({"sql":"SELECT 1"})");
    INFO("explain SELECT -> " << r.str());
    REQUIRE(r.status == 200);
    json j = r.json();
    CHECK(j.value("kind", "") == "read");
    CHECK((j["target"] == "replica1" || j["target"] == "replica2"));
    CHECK(j["reason"].is_string());
    CHECK(j["statements"].is_array());

    auto w = http::post(ap, "/routing/explain", R"j({"sql":"INSERT INTO t VALUES (1)"})j");
    INFO("explain INSERT -> " << w.str());
    REQUIRE(w.status == 200);
    j = w.json();
    CHECK(j.value("kind", "") == "write");
    CHECK(j["target"] == "primary");
    CHECK(j["reason"].is_string());

    // The same rules as sessions: what pins, what a standby refuses, what is
    // about the session's own connection goes to the primary.
    for (const char* sql : {"DECLARE c CURSOR WITH HOLD FOR SELECT 1", "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY",
                            "SELECT pg_backend_pid()", "SHOW transaction_read_only"}) {
        auto e = http::post(ap, "/routing/explain", json{{"sql", sql}}.dump());
        INFO("explain " << sql << " -> " << e.str());
        REQUIRE(e.status == 200);
        CHECK(e.json()["target"] == "primary");
    }
    auto ro = http::post(ap, "/routing/explain", R"({"sql":"BEGIN READ ONLY"})");
    REQUIRE(ro.status == 200);
    CHECK((ro.json()["target"] == "replica1" || ro.json()["target"] == "replica2"));

    // Explaining runs nothing: no table t exists, and no query was counted.
    auto s = http::get(ap, "/status");
    REQUIRE(s.status == 200);
    CHECK(s.json()["routing"]["writes"].get<long long>() == 0);
}
