// Several pgswitch instances as one (SPEC §9, issue 11), on real parts: a
// 3-member etcd cluster on loopback ports, three pgswitch instances "a", "b"
// and "c" sharing it, and a PostgreSQL primary with two replicas, all of the
// test's own. Each member of etcd listens for clients on 127.0.0.1 and on
// 127.0.0.3; an instance given the 127.0.0.3 addresses can be cut off from
// etcd by a packet filter rule without touching the others.
#include "failover_support.h"
#include "rawpg.h"

#include <arpa/inet.h>
#include <sys/wait.h>

#include <memory>

using namespace e2e;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

namespace {

constexpr int k_ttl_ms = 2000;  // cluster.lease_ttl_ms of every instance
const std::string k_names[] = {"a", "b", "c"};

double ms_since(Clock::time_point t)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

/// etcd members on loopback, started by the test and killed after it.
class EtcdCluster {
public:
    explicit EtcdCluster(int members = 3)
    {
        char tmpl[] = "/tmp/pgswitch-etcd-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        for (int i = 0; i < members; ++i) {
            client_ports_.push_back(free_port());
            peer_ports_.push_back(free_port());
        }
        std::string initial;
        for (int i = 0; i < members; ++i)
            initial += (i ? "," : "") + member(i) + "=http://127.0.0.1:" + std::to_string(peer_ports_[i]);
        for (int i = 0; i < members; ++i) {
            const std::string c = std::to_string(client_ports_[i]), p = std::to_string(peer_ports_[i]);
            pids_.push_back(spawn_background({"etcd",
                                              "--name",
                                              member(i),
                                              "--data-dir",
                                              dir_ + "/" + member(i),
                                              "--listen-client-urls",
                                              "http://127.0.0.1:" + c + ",http://127.0.0.3:" + c,
                                              "--advertise-client-urls",
                                              "http://127.0.0.1:" + c,
                                              "--listen-peer-urls",
                                              "http://127.0.0.1:" + p,
                                              "--initial-advertise-peer-urls",
                                              "http://127.0.0.1:" + p,
                                              "--initial-cluster",
                                              initial,
                                              "--initial-cluster-state",
                                              "new",
                                              "--initial-cluster-token",
                                              dir_,
                                              "--logger",
                                              "zap",
                                              "--log-level",
                                              "warn"},
                                             dir_ + "/" + member(i) + ".log"));
        }
        for (int i = 0; i < members; ++i)
            REQUIRE_MESSAGE(eventually([&] { return healthy(i); }, 30s),
                            "etcd member " << member(i) << " not healthy; see " << dir_);
    }
    ~EtcdCluster()
    {
        for (std::size_t i = 0; i < pids_.size(); ++i)
            kill_member(static_cast<int>(i));
        (void)std::system(("rm -rf " + dir_).c_str());
    }
    EtcdCluster(const EtcdCluster&) = delete;
    EtcdCluster& operator=(const EtcdCluster&) = delete;

    bool healthy(int i) const
    {
        const auto r = http::send(client_ports_[i], {"GET", "/health", "", {}}, 2s);
        return r.status == 200 && r.body.find("\"true\"") != std::string::npos;
    }
    void kill_member(int i)
    {
        if (pids_[i] <= 0)
            return;
        (void)::kill(pids_[i], SIGKILL);
        (void)::waitpid(pids_[i], nullptr, 0);
        pids_[i] = -1;
    }
    /// The client URLs as a TOML array, on `host` (127.0.0.1 or 127.0.0.3).
    std::string toml_urls(const std::string& host) const
    {
        std::string s = "[";
        for (std::size_t i = 0; i < client_ports_.size(); ++i)
            s += (i ? ", \"" : "\"") + std::string("http://") + host + ":" + std::to_string(client_ports_[i]) + "\"";
        return s + "]";
    }
    const std::vector<int>& client_ports() const { return client_ports_; }

private:
    static std::string member(int i) { return "e" + std::to_string(i + 1); }
    std::string dir_;
    std::vector<int> client_ports_, peer_ports_;
    std::vector<pid_t> pids_;
};

/// An nftables table of the test's own that drops what goes to 127.0.0.3 on
/// the etcd client ports: an instance configured with those addresses loses
/// etcd (connections hang, as in a partition); the others keep it.
class EtcdCut {
public:
    explicit EtcdCut(const EtcdCluster& etcd) : table_("pgswitch_e2e_" + std::to_string(::getpid()))
    {
        std::string ports;
        for (int p : etcd.client_ports())
            ports += (ports.empty() ? "" : ", ") + std::to_string(p);
        // One nft run: the table, its chain and the rule land together or not at all.
        nft("add table inet " + table_ + "; add chain inet " + table_ +
            " out { type filter hook output priority 0 ; }; add rule inet " + table_ +
            " out ip daddr 127.0.0.3 tcp dport { " + ports + " } drop");
        active_ = true;
    }
    ~EtcdCut() { heal(); }
    EtcdCut(const EtcdCut&) = delete;
    EtcdCut& operator=(const EtcdCut&) = delete;
    void heal()
    {
        if (active_)
            nft("delete table inet " + table_);
        active_ = false;
    }

private:
    static void nft(const std::string& commands)
    {
        const auto r = run_command({"nft", commands}, {}, 10s);
        REQUIRE_MESSAGE(r.exit_code == 0, "nft " << commands << ": " << r.output);
    }
    std::string table_;
    bool active_ = false;
};

json cluster_status(const Proxy& px)
{
    return status(px)["cluster"];
}

std::uint64_t epoch_of(const Proxy& px)
{
    const auto c = cluster_status(px);
    return c["epoch"].is_number() ? c["epoch"].get<std::uint64_t>() : 0;
}

std::string leader_of(const Proxy& px)
{
    const auto c = cluster_status(px);
    return c["leader"].is_string() ? c["leader"].get<std::string>() : "";
}

std::size_t count_in_log(const Proxy& px, const std::string& what)
{
    const auto log = px.log_text(0, 1 << 22);
    std::size_t n = 0;
    for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1))
        ++n;
    return n;
}

int read_port(const Proxy& px)
{
    Conn c(PQconnectdb(px.conninfo().c_str()));
    if (PQstatus(c.get()) != CONNECTION_OK)
        return 0;
    Result r(PQexec(c.get(), "SELECT inet_server_port()"));
    return PQresultStatus(r.get()) == PGRES_TUPLES_OK ? std::atoi(PQgetvalue(r.get(), 0, 0)) : 0;
}

struct TrioOptions {
    bool sync = true;                       ///< synchronous replication (ANY 1)
    std::vector<std::string> leader_env;    ///< environment of "a", which is made the leader
    std::string c_etcd_host = "127.0.0.1";  ///< 127.0.0.3: "c" can be cut off (EtcdCut)
    int wait_for_primary_ms = 5000;
    std::string failover_mode = "auto";
};

/// A PostgreSQL cluster, etcd, and three pgswitch instances: "a" is started
/// first and is the leader; "b" and "c" follow once it leads.
struct Trio {
    OwnCluster cl;
    EtcdCluster etcd;
    std::string prefix = "/pgswitch-e2e-" + std::to_string(::getpid()) + "-" + std::to_string(free_port());
    std::vector<std::unique_ptr<Proxy>> px;

    explicit Trio(TrioOptions o = {}) : cl(o.sync)
    {
        for (int i = 0; i < 3; ++i) {
            ProxyOptions p;
            p.cluster_env = &cl.env;
            p.health_interval_ms = 200;
            p.health_extra = "timeout_ms = 500\n";
            p.extra_toml = "[failover]\nmode = \"" + o.failover_mode +
                           "\"\nwait_for_primary_ms = " + std::to_string(o.wait_for_primary_ms) +
                           "\n\n[cluster]\netcd = " + etcd.toml_urls(i == 2 ? o.c_etcd_host : "127.0.0.1") +
                           "\nprefix = \"" + prefix + "\"\nname = \"" + k_names[i] +
                           "\"\nlease_ttl_ms = " + std::to_string(k_ttl_ms) + "\n";
            if (i == 0)
                p.env = o.leader_env;
            px.push_back(std::make_unique<Proxy>(p));
            px.back()->start();
            if (i == 0)
                REQUIRE_MESSAGE(eventually([&] { return leader_of(*px[0]) == "a"; }, 10s),
                                "instance a never became the leader\n"
                                    << px[0]->log_text());
        }
        // Everyone sees everyone, the same leader and a topology naming the primary.
        for (auto& p : px)
            REQUIRE_MESSAGE(eventually(
                                [&] {
                                    const auto s = status(*p);
                                    return s["cluster"]["instances"].size() == 3 && leader_of(*p) == "a" &&
                                           epoch_of(*p) >= 1 && s["primary"] == "primary";
                                },
                                10s),
                            "instance " << status(*p)["cluster"]["name"] << ": " << status(*p).dump());
    }
    Proxy& operator[](int i) { return *px[i]; }
};

/// Writes one row through `px` on a fresh connection: "" on success, else
/// the SQLSTATE (or "connect").
std::string try_write(const Proxy& px, const std::string& table, int id)
{
    Conn c(PQconnectdb(px.conninfo().c_str()));
    if (PQstatus(c.get()) != CONNECTION_OK)
        return "connect";
    Result r(PQexec(c.get(), ("INSERT INTO " + table + " VALUES (" + std::to_string(id) + ")").c_str()));
    if (PQresultStatus(r.get()) == PGRES_COMMAND_OK)
        return "";
    const auto st = sqlstate(r.get());
    return st.empty() ? "?" : st;
}

}  // namespace

TEST_CASE("cluster: three instances follow one leader and one topology; a backend removed or added on a is removed "
          "or added on c; one etcd member down changes nothing")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    Trio t;
    const auto epoch = epoch_of(t[0]);
    for (int i = 0; i < 3; ++i) {
        const auto c = cluster_status(t[i]);
        INFO(c.dump());
        CHECK(c["name"] == k_names[i]);
        CHECK(c["leader"] == "a");
        CHECK(c["epoch"] == epoch);
        CHECK(c["writes_blocked"].is_null());
        CHECK(c["etcd_seen_ms_ago"].get<double>() < k_ttl_ms);
        std::set<std::string> names;
        for (const auto& inst : c["instances"])
            names.insert(inst["name"].get<std::string>());
        CHECK(names == std::set<std::string>{"a", "b", "c"});
    }

    // DELETE /backends/replica2 on a: c stops reading from it.
    const int r2 = t.cl.env.replica_port(2);
    const auto removed = http::del(t[0].admin_port(), "/backends/replica2");
    REQUIRE_MESSAGE(removed.status / 100 == 2, removed.str());
    const auto gone_on_c = [&] {
        const auto s = status(t[2]);  // a named local: the loop must not walk a destroyed temporary
        for (const auto& b : s["backends"])
            if (b["name"] == "replica2")
                return false;
        return true;
    };
    REQUIRE_MESSAGE(eventually(gone_on_c, 5s), "replica2 still on c: " << status(t[2]).dump());
    for (int i = 0; i < 20; ++i) {
        const int port = read_port(t[2]);
        CHECK(port != 0);
        CHECK(port != r2);
    }

    // POST /backends on a: c reads from it again.
    const json add = {{"name", "replica2"}, {"host", "127.0.0.1"}, {"port", r2}};
    const auto added = http::post(t[0].admin_port(), "/backends", add.dump());
    REQUIRE_MESSAGE(added.status == 201, added.str());
    const auto started = Clock::now();
    REQUIRE_MESSAGE(eventually([&] { return read_port(t[2]) == r2; }, 10s),
                    "c never read from replica2 added on a: " << status(t[2]).dump());
    MESSAGE("a backend added on a got its first read through c after " << ms_since(started) << " ms");

    // One etcd member killed: for three lease TTLs every instance keeps
    // writing and reading, the leader stays, etcd stays in reach.
    {
        Conn c = connect_ok(t[0].conninfo());
        exec_ok(c.get(), "CREATE TABLE cl_etcd_down (id int PRIMARY KEY)");
    }
    t.etcd.kill_member(0);
    const auto killed = Clock::now();
    int id = 0;
    std::vector<std::string> failures;
    while (Clock::now() - killed < 3 * std::chrono::milliseconds(k_ttl_ms))
        for (int i = 0; i < 3; ++i) {
            const auto st = try_write(t[i], "cl_etcd_down", ++id);
            if (!st.empty())
                failures.push_back(k_names[i] + ": " + st);
            if (read_port(t[i]) == 0)
                failures.push_back(k_names[i] + ": read failed");
        }
    CHECK_MESSAGE(failures.empty(), failures.size() << " failures, first: " << (failures.empty() ? "" : failures[0]));
    MESSAGE(id << " writes in " << 3 * k_ttl_ms << " ms with one etcd member down, " << failures.size() << " failed");
    for (int i = 0; i < 3; ++i) {
        const auto c = cluster_status(t[i]);
        INFO(c.dump());
        CHECK(c["leader"] == "a");
        CHECK(c["epoch"] == epoch);
        CHECK(c["writes_blocked"].is_null());
        CHECK(c["etcd_seen_ms_ago"].get<double>() < k_ttl_ms);
    }
}

TEST_CASE("cluster: kill -9 of the primary under three instances: exactly one promotion, all three write to the new "
          "primary, nothing acknowledged is lost, no read fails")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    Trio t;
    const auto epoch = epoch_of(t[0]);
    std::vector<std::unique_ptr<Load>> loads;
    {
        Conn c = connect_ok(t[0].conninfo());
        for (const auto& n : k_names)
            exec_ok(c.get(), std::string("CREATE TABLE cl_fo_") + n + " (id int PRIMARY KEY)");
    }
    for (int i = 0; i < 3; ++i) {
        loads.push_back(std::make_unique<Load>(t[i], std::string("cl_fo_") + k_names[i]));
        loads.back()->start();
    }
    for (auto& l : loads)
        REQUIRE(l->wait_acked(30, 10s));
    const pid_t pm = t.cl.postmaster_pid("PRIMARY_DATA");
    REQUIRE(pm > 0);
    std::vector<Clock::time_point> marks;
    for (auto& l : loads)
        marks.push_back(l->mark(t.cl.env.primary_port()));
    REQUIRE(::kill(pm, SIGKILL) == 0);

    std::vector<double> resume_ms(3);
    for (int i = 0; i < 3; ++i) {
        const auto ms = loads[i]->wait_first_write(marks[i], 20s);
        REQUIRE_MESSAGE(ms, "no write through " << k_names[i] << " within 20 s of the kill\n" << t[i].log_text());
        resume_ms[i] = *ms;
    }
    for (auto& l : loads)
        REQUIRE(l->wait_acked(l->acked().size() + 10, 10s));
    for (auto& l : loads)
        l->finish();

    std::string primary;
    for (int i = 0; i < 3; ++i) {
        int lost = -1;
        const auto table = std::string("cl_fo_") + k_names[i];
        // Exactly one of the two replicas is now a primary, and it has every acknowledged row.
        primary = check_one_primary_and_followers(t.cl, {"replica1", "replica2"}, table, loads[i]->acked(), lost);
        const auto write_errors = loads[i]->write_errors_after();
        const auto read_errors = loads[i]->read_errors();
        MESSAGE("instance " << k_names[i] << ": first write " << resume_ms[i] << " ms after kill -9 of the primary; "
                            << write_errors.size() << " write errors"
                            << (write_errors.empty() ? "" : " (" + write_errors.front() + ")") << "; "
                            << read_errors.size() << " read errors; " << loads[i]->acked().size() << " acknowledged, "
                            << lost << " lost");
        std::printf("CLUSTER_FAILOVER_RESULT instance=%s resume_ms=%.0f write_errors=%zu read_errors=%zu lost=%d\n",
                    k_names[i].c_str(), resume_ms[i], write_errors.size(), read_errors.size(), lost);
        CHECK_MESSAGE(read_errors.empty(), "read errors: " << (read_errors.empty() ? "" : read_errors.front()));
        CHECK_MESSAGE(write_errors.size() <= 1, "write errors: " << (write_errors.empty() ? "" : write_errors.front()));
        CHECK(lost == 0);
    }
    std::fflush(stdout);
    std::size_t promotions = 0;
    for (int i = 0; i < 3; ++i) {
        const auto s = status(t[i]);
        INFO(k_names[i] << ": " << s.dump());
        CHECK(s["primary"] == primary);
        CHECK(s["cluster"]["epoch"] == epoch + 1);
        CHECK(backend_status(t[i], "primary")["state"] == "fenced");
        promotions += count_in_log(t[i], "is the new primary");
    }
    CHECK(promotions == 1);
}

TEST_CASE("cluster: kill -9 of the leading instance in the middle of a failover: another instance completes it")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    // "a" records the promotion in etcd, then pauses before carrying it out
    // (a failpoint), and is killed during the pause.
    TrioOptions o;
    o.leader_env = {"PGSWITCH_FAILPOINT_AFTER_RECORDING_PROMOTION_MS=60000"};
    Trio t(o);
    const auto epoch = epoch_of(t[1]);
    {
        Conn c = connect_ok(t[1].conninfo());
        exec_ok(c.get(), "CREATE TABLE cl_mid_b (id int PRIMARY KEY)");
        exec_ok(c.get(), "CREATE TABLE cl_mid_c (id int PRIMARY KEY)");
    }
    Load lb(t[1], "cl_mid_b"), lc(t[2], "cl_mid_c");
    lb.start();
    lc.start();
    REQUIRE(lb.wait_acked(20, 10s));
    REQUIRE(lc.wait_acked(20, 10s));
    const pid_t pm = t.cl.postmaster_pid("PRIMARY_DATA");
    const auto mark_b = lb.mark(t.cl.env.primary_port());
    const auto mark_c = lc.mark(t.cl.env.primary_port());
    REQUIRE(::kill(pm, SIGKILL) == 0);

    // The promotion is recorded (b sees the new epoch) and "a" is pausing.
    REQUIRE_MESSAGE(eventually([&] { return epoch_of(t[1]) == epoch + 1; }, 15s), t[0].log_text());
    REQUIRE(eventually([&] { return count_in_log(t[0], "failpoint: pausing") == 1; }, 5s));
    CHECK(t.cl.in_recovery(t.cl.env.replica_port(1)));
    CHECK(t.cl.in_recovery(t.cl.env.replica_port(2)));
    t[0].signal(SIGKILL);
    const auto killed = Clock::now();
    (void)t[0].wait_exit(5s);

    const auto b_ms = lb.wait_first_write(mark_b, 30s);
    const auto c_ms = lc.wait_first_write(mark_c, 30s);
    REQUIRE_MESSAGE(b_ms, "no write through b\n" << t[1].log_text());
    REQUIRE_MESSAGE(c_ms, "no write through c\n" << t[2].log_text());
    REQUIRE(lb.wait_acked(lb.acked().size() + 10, 10s));
    REQUIRE(lc.wait_acked(lc.acked().size() + 10, 10s));
    lb.finish();
    lc.finish();
    const auto leader = leader_of(t[1]);
    CHECK((leader == "b" || leader == "c"));
    CHECK(leader_of(t[2]) == leader);
    const auto& completer = t[leader == "b" ? 1 : 2];
    CHECK(count_in_log(completer, "completing the failover of epoch") >= 1);
    int lost_b = -1, lost_c = -1;
    const auto primary = check_one_primary_and_followers(t.cl, {"replica1", "replica2"}, "cl_mid_b", lb.acked(),
                                                         lost_b);
    (void)check_one_primary_and_followers(t.cl, {"replica1", "replica2"}, "cl_mid_c", lc.acked(), lost_c);
    CHECK(lost_b == 0);
    CHECK(lost_c == 0);
    CHECK(status(t[1])["primary"] == primary);
    CHECK(status(t[2])["primary"] == primary);
    CHECK(epoch_of(t[1]) == epoch + 1);  // completing a recorded promotion is not a new one
    MESSAGE("leader killed half way: " << leader << " completed the promotion of " << primary
                                       << "; first write through b " << *b_ms << " ms and through c " << *c_ms
                                       << " ms after kill -9 of the primary (the leader was killed "
                                       << std::chrono::duration<double, std::milli>(killed - mark_b).count()
                                       << " ms after it); write errors b " << lb.write_errors_after().size() << ", c "
                                       << lc.write_errors_after().size() << "; read errors b "
                                       << lb.read_errors().size() << ", c " << lc.read_errors().size());
    CHECK(lb.read_errors().empty());
    CHECK(lc.read_errors().empty());
}

TEST_CASE("cluster: an instance cut off from etcd stops writing within the lease TTL, keeps reading, and writes again "
          "once it reaches etcd")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    TrioOptions o;
    o.c_etcd_host = "127.0.0.3";
    o.wait_for_primary_ms = 500;
    Trio t(o);
    {
        Conn c = connect_ok(t[0].conninfo());
        exec_ok(c.get(), "CREATE TABLE cl_cut (id int PRIMARY KEY)");
    }
    Load reads_c(t[2], "");
    reads_c.start(/*with_writer=*/false);
    // One write through c every 50 ms, each on a fresh connection: when it started, how it ended.
    struct Attempt {
        double at_ms;
        std::string state;
    };
    std::mutex mu;
    std::vector<Attempt> attempts;
    std::optional<EtcdCut> cut;
    Clock::time_point cut_at{};
    std::atomic<bool> is_cut{false};
    std::jthread writer([&](std::stop_token stop) {
        for (int id = 1; !stop.stop_requested(); ++id) {
            const auto started = Clock::now();
            const auto st = try_write(t[2], "cl_cut", id);
            std::lock_guard lk(mu);
            if (is_cut)
                attempts.push_back({std::chrono::duration<double, std::milli>(started - cut_at).count(), st});
            std::this_thread::sleep_for(50ms);  // the pace of attempts, not a condition wait
        }
    });
    REQUIRE(eventually([&] { return try_write(t[2], "cl_cut", -1) == ""; }, 5s));
    {
        std::lock_guard lk(mu);
        cut.emplace(t.etcd);
        cut_at = Clock::now();
        is_cut = true;
    }
    const bool blocked = eventually([&] { return !cluster_status(t[2])["writes_blocked"].is_null(); }, 10s);
    const double blocked_ms = ms_since(cut_at);
    CHECK_MESSAGE(blocked, "c never blocked writes: " << status(t[2]).dump());
    // Stay cut off for two more TTLs: no failover elsewhere, a and b write.
    std::this_thread::sleep_until(cut_at + 3 * std::chrono::milliseconds(k_ttl_ms));  // the length of the partition
    CHECK(try_write(t[0], "cl_cut", -2) == "");
    CHECK(try_write(t[1], "cl_cut", -3) == "");
    {
        std::lock_guard lk(mu);
        cut->heal();
        is_cut = false;
    }
    const auto healed_at = Clock::now();
    const bool writes_again = eventually([&] { return try_write(t[2], "cl_cut", -4) == ""; }, 10s);
    const double healed_ms = ms_since(healed_at);
    writer.request_stop();
    writer.join();
    reads_c.finish();

    // No write through c that began after the TTL (plus one etcd poll) succeeded; some were refused with 57P03.
    std::size_t ok_late = 0, refused = 0, ok_before = 0;
    for (const auto& a : attempts) {
        if (a.at_ms > k_ttl_ms + 300 && a.state.empty())
            ++ok_late;
        if (a.state == "57P03")
            ++refused;
        if (a.at_ms <= k_ttl_ms && a.state.empty())
            ++ok_before;
    }
    MESSAGE("cut off from etcd: c blocked writes after "
            << blocked_ms << " ms (lease_ttl_ms " << k_ttl_ms << "); " << attempts.size()
            << " writes tried while cut off, " << ok_before << " succeeded within the TTL, " << refused
            << " refused with 57P03, " << ok_late << " succeeded after it; writes again " << healed_ms
            << " ms after the cut healed; reads through c: " << reads_c.reads() << ", " << reads_c.read_errors().size()
            << " failed");
    CHECK(blocked_ms < k_ttl_ms + 1000);
    CHECK(ok_late == 0);
    CHECK(refused >= 3);
    CHECK(writes_again);
    CHECK(reads_c.reads() > 0);
    CHECK_MESSAGE(reads_c.read_errors().empty(), reads_c.read_errors().front());
    for (int i = 0; i < 3; ++i)
        CHECK(status(t[i])["primary"] == "primary");  // nobody failed over
}

TEST_CASE("cluster: a CancelRequest sent to another instance cancels the statement; SHOW pgswitch.lsn on one "
          "instance and SET pgswitch.min_lsn on another read your writes")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    TrioOptions o;
    o.sync = false;
    Trio t(o);
    std::map<std::string, int> ids;
    const auto cs = cluster_status(t[0]);
    for (const auto& inst : cs["instances"])
        ids[inst["name"].get<std::string>()] = inst["id"].get<int>();

    // A statement running through one instance, cancelled through another.
    const std::pair<int, int> routes[] = {{0, 1}, {2, 0}};
    for (const auto& [runs, cancels] : routes) {
        INFO("statement through " << k_names[runs] << ", CancelRequest to " << k_names[cancels]);
        RawConn c;
        REQUIRE(c.connect(t[runs].port()));
        REQUIRE(c.login(t.cl.env.get("APP_USER"), t.cl.env.get("APP_PASSWORD"), t.cl.env.get("APP_DB")) == "");
        CHECK(((c.backend_secret >> 24) & 0x7f) == static_cast<std::uint32_t>(ids[k_names[runs]]));
        REQUIRE(c.send_message('Q', std::string("SELECT pg_sleep(30) AS cl_cancel_me") + '\0'));
        // Wait until it runs on a server (a cancel before that cancels nothing).
        const auto running = [&] {
            for (int port : {t.cl.env.primary_port(), t.cl.env.replica_port(1), t.cl.env.replica_port(2)}) {
                Conn s = t.cl.superuser(port);
                if (query_value(s.get(), "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query "
                                         "LIKE '%AS cl_cancel_me'") != "0")
                    return true;
            }
            return false;
        };
        REQUIRE(eventually(running, 10s));
        RawConn k;
        REQUIRE(k.connect(t[cancels].port()));
        REQUIRE(k.send_bytes(be32(16) + be32(80877102) + be32(c.backend_pid) + be32(c.backend_secret)));
        const auto sent = Clock::now();
        std::string state;
        for (;;) {
            auto m = c.read_message(Clock::now() + 10s);
            REQUIRE_MESSAGE(m, "no reply within 10 s of the CancelRequest");
            if (m->type == 'E')
                state = error_fields(m->body)['C'];
            if (m->type == 'Z')
                break;
        }
        CHECK(state == "57014");
        MESSAGE("cancelled " << ms_since(sent) << " ms after the CancelRequest reached " << k_names[cancels]);
    }

    // Write through a, carry the token to b, read there: never older than the write.
    Conn a = connect_ok(t[0].conninfo());
    Conn b = connect_ok(t[1].conninfo());
    exec_ok(a.get(), "CREATE TABLE cl_token (id int PRIMARY KEY, filler text)");
    int stale = 0, on_replicas = 0;
    constexpr int rounds = 50;
    for (int i = 0; i < rounds; ++i) {
        exec_ok(a.get(), "INSERT INTO cl_token SELECT " + std::to_string(i) + ", repeat('x', 20000)");
        const auto token = query_value(a.get(), "SHOW pgswitch.lsn");
        exec_ok(b.get(), "SET pgswitch.min_lsn = '" + token + "'");
        Result r = exec_ok(b.get(), "SELECT count(*), inet_server_port() FROM cl_token WHERE id = " + std::to_string(i),
                           PGRES_TUPLES_OK);
        stale += std::string(PQgetvalue(r.get(), 0, 0)) != "1";
        on_replicas += std::atoi(PQgetvalue(r.get(), 0, 1)) != t.cl.env.primary_port();
    }
    // The same without the token, on c, to show what the token prevents (not asserted: it depends on timing).
    Conn c = connect_ok(t[2].conninfo());
    int stale_without = 0;
    for (int i = rounds; i < 2 * rounds; ++i) {
        exec_ok(a.get(), "INSERT INTO cl_token SELECT " + std::to_string(i) + ", repeat('x', 20000)");
        stale_without += query_value(c.get(), "SELECT count(*) FROM cl_token WHERE id = " + std::to_string(i)) != "1";
    }
    MESSAGE("token carried from a to b: " << rounds << " reads, " << stale << " stale, " << on_replicas
                                          << " on replicas; without a token (through c): " << stale_without << " of "
                                          << rounds << " stale");
    CHECK(stale == 0);
    CHECK(on_replicas > 0);
}

TEST_CASE("cluster: a frozen primary (SIGSTOP) under three instances: each instance's in-flight write fails with "
          "08006 and writes resume through all three within threshold x timeout")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    TrioOptions o;
    o.sync = false;
    Trio t(o);
    {
        Conn c = connect_ok(t[0].conninfo());
        exec_ok(c.get(), "CREATE TABLE cl_frozen (id int PRIMARY KEY)");
    }
    std::vector<Conn> victims;
    for (int i = 0; i < 3; ++i) {
        victims.push_back(connect_ok(t[i].conninfo()));
        exec_ok(victims.back().get(), "SELECT 1", PGRES_TUPLES_OK);
    }
    signal_server(t.cl, "PRIMARY_DATA", SIGSTOP);
    struct Thaw {
        const OwnCluster& cl;
        ~Thaw() { signal_server(cl, "PRIMARY_DATA", SIGCONT); }
    } thaw{t.cl};
    const auto frozen_at = Clock::now();
    std::mutex mu;
    std::vector<std::optional<double>> failed_ms(3), resumed_ms(3);
    std::vector<std::string> victim_state(3);
    std::vector<std::thread> waits;
    for (int i = 0; i < 3; ++i) {
        REQUIRE(PQsendQuery(victims[i].get(),
                            ("INSERT INTO cl_frozen VALUES (" + std::to_string(i + 1) + ")").c_str()) == 1);
        waits.emplace_back([&, i] {
            if (!wait_readable(PQsocket(victims[i].get()), Clock::now() + 20s))
                return;
            Result r(PQgetResult(victims[i].get()));
            std::lock_guard lk(mu);
            failed_ms[i] = ms_since(frozen_at);
            victim_state[i] = r && PQresultStatus(r.get()) == PGRES_FATAL_ERROR ? sqlstate(r.get()) : "no error";
        });
    }
    // New sessions try a write every 100 ms through each instance.
    std::vector<std::thread> writers;
    for (int id = 100; Clock::now() - frozen_at < 20s; id += 3) {
        {
            std::lock_guard lk(mu);
            if (resumed_ms[0] && resumed_ms[1] && resumed_ms[2])
                break;
        }
        for (int i = 0; i < 3; ++i)
            writers.emplace_back([&, id, i] {
                const int port = write_through(t[i], "cl_frozen", id + i);
                std::lock_guard lk(mu);
                if (port != 0 && port != t.cl.env.primary_port() && !resumed_ms[i])
                    resumed_ms[i] = ms_since(frozen_at);
            });
        std::this_thread::sleep_for(100ms);  // the pace of new attempts, not a condition wait
    }
    for (auto& w : writers)
        w.join();
    for (auto& w : waits)
        w.join();
    for (int i = 0; i < 3; ++i) {
        INFO("instance " << k_names[i]);
        REQUIRE_MESSAGE(resumed_ms[i], "no write succeeded on another server within 20 s\n" << t[i].log_text());
        REQUIRE_MESSAGE(failed_ms[i], "the INSERT sent to the frozen primary never ended");
        MESSAGE("frozen primary, instance " << k_names[i] << ": in-flight INSERT ended with " << victim_state[i]
                                            << " after " << *failed_ms[i] << " ms; writes resumed after "
                                            << *resumed_ms[i] << " ms");
        CHECK(victim_state[i] == "08006");
        CHECK(*failed_ms[i] < 3 * 500 + 2000);
        CHECK(*resumed_ms[i] < 3 * 500 + 3000);
    }
    signal_server(t.cl, "PRIMARY_DATA", SIGCONT);
    for (int i = 0; i < 3; ++i) {
        CHECK(backend_status(t[i], "primary")["state"] == "fenced");
        Conn after = connect_ok(t[i].conninfo());
        Result w = exec_ok(
            after.get(), "INSERT INTO cl_frozen VALUES (" + std::to_string(1000 + i) + ") RETURNING inet_server_port()",
            PGRES_TUPLES_OK);
        CHECK(std::atoi(PQgetvalue(w.get(), 0, 0)) != t.cl.env.primary_port());
    }
}

TEST_CASE("cluster: failover.mode = external: no instance promotes; a replica promoted by hand becomes the primary "
          "of all three")
{
    E2E_SKIP_IF_DIRECT("cluster mode needs pgswitch");
    TrioOptions o;
    o.failover_mode = "external";
    Trio t(o);
    const auto epoch = epoch_of(t[0]);
    {
        Conn c = connect_ok(t[0].conninfo());
        exec_ok(c.get(), "CREATE TABLE cl_ext (id int PRIMARY KEY)");
    }
    REQUIRE(::kill(t.cl.postmaster_pid("PRIMARY_DATA"), SIGKILL) == 0);
    // Nobody promotes by itself: both replicas stay replicas for a while.
    const auto killed = Clock::now();
    CHECK_FALSE(eventually(
        [&] { return !t.cl.in_recovery(t.cl.env.replica_port(1)) || !t.cl.in_recovery(t.cl.env.replica_port(2)); },
        3s));
    // The operator (or another tool) promotes replica2.
    {
        Conn s = t.cl.superuser(t.cl.env.replica_port(2));
        CHECK(query_value(s.get(), "SELECT pg_promote()") == "t");
    }
    const auto promoted = Clock::now();
    int id = 0;
    for (int i = 0; i < 3; ++i) {
        INFO("instance " << k_names[i]);
        CHECK_MESSAGE(eventually([&] { return write_through(t[i], "cl_ext", ++id) == t.cl.env.replica_port(2); }, 10s),
                      t[i].log_text());
        CHECK(status(t[i])["primary"] == "replica2");
        CHECK(epoch_of(t[i]) == epoch + 1);
    }
    MESSAGE("external mode: writes through all three on the hand-promoted replica2 "
            << ms_since(promoted) << " ms after pg_promote() (" << ms_since(killed) << " ms after the kill)");
    CHECK(t.cl.in_recovery(t.cl.env.replica_port(1)));  // still nobody else promoted
}
