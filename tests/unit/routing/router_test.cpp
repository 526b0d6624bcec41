// choose_target() and the balancers: distributions, hashing stability,
// read-your-writes and lag rules (SPEC §3).
#include <doctest/doctest.h>

#include <map>
#include <string>

#include "routing/router.h"

using namespace pgswitch::routing;

namespace {

BackendView node(std::string name, Role role, int weight = 1, std::uint64_t lsn = 100)
{
    BackendView b;
    b.name = std::move(name);
    b.role = role;
    b.state = BackendState::up;
    b.weight = weight;
    b.wal_lsn = lsn;
    return b;
}

ClusterView cluster3()
{
    ClusterView v;
    v.backends = {node("primary", Role::primary), node("r1", Role::replica), node("r2", Role::replica)};
    return v;
}

const RouteRequest read_req{false, false, false};
const RouteRequest write_req{true, false, false};

std::map<std::string, int> spread(const ClusterView& v, const Policy& p, int n, const SessionConstraints& s = {})
{
    BalancerState st;
    std::map<std::string, int> count;
    for (int i = 0; i < n; ++i) {
        auto d = choose_target(read_req, s, v, p, st, "10.0.0." + std::to_string(i), {});
        REQUIRE(d.backend);
        ++count[v.backends[*d.backend].name];
    }
    return count;
}

}  // namespace

TEST_CASE("writes go to the primary, reads to replicas")
{
    auto v = cluster3();
    BalancerState st;
    Policy p;
    auto w = choose_target(write_req, {}, v, p, st, "c", {});
    CHECK(w.backend == std::optional<std::size_t>{0});
    CHECK(w.reason == Reason::write);
    auto r = choose_target(read_req, {}, v, p, st, "c", {});
    REQUIRE(r.backend);
    CHECK(*r.backend != 0);
    CHECK(r.reason == Reason::replica);
}

TEST_CASE("round robin alternates replicas evenly; primary_reads adds the primary")
{
    auto v = cluster3();
    Policy p;
    auto c = spread(v, p, 1000);
    CHECK(c["r1"] == 500);
    CHECK(c["r2"] == 500);
    CHECK(c.count("primary") == 0);
    p.primary_reads = true;
    c = spread(v, p, 999);
    CHECK(c["r1"] == 333);
    CHECK(c["r2"] == 333);
    CHECK(c["primary"] == 333);
}

TEST_CASE("weights shape round robin smoothly")
{
    ClusterView v;
    v.backends = {node("primary", Role::primary), node("a", Role::replica, 5), node("b", Role::replica, 1),
                  node("c", Role::replica, 1)};
    Policy p;
    BalancerState st;
    std::string order;
    for (int i = 0; i < 7; ++i)
        order += v.backends[*choose_target(read_req, {}, v, p, st, "", {}).backend].name;
    CHECK(order == "aabacaa");
    auto c = spread(v, p, 7000);
    CHECK(c["a"] == 5000);
    CHECK(c["b"] == 1000);
    CHECK(c["c"] == 1000);
}

TEST_CASE("weight 0 takes a replica out of reads")
{
    auto v = cluster3();
    v.backends[1].weight = 0;
    auto c = spread(v, Policy{}, 100);
    CHECK(c["r2"] == 100);
}

TEST_CASE("least_connections picks the emptiest replica per unit of weight")
{
    auto v = cluster3();
    Policy p;
    p.load_balancing = LoadBalancing::least_connections;
    BalancerState st;
    std::vector<int> in_flight{0, 5, 2};
    auto d = choose_target(read_req, {}, v, p, st, "", Load{in_flight});
    CHECK(d.backend == std::optional<std::size_t>{2});
    v.backends[1].weight = 4;  // 5/4 < 2/1
    d = choose_target(read_req, {}, v, p, st, "", Load{in_flight});
    CHECK(d.backend == std::optional<std::size_t>{1});
    // Ties alternate.
    std::vector<int> even{0, 1, 1};
    v.backends[1].weight = 1;
    auto a = *choose_target(read_req, {}, v, p, st, "", Load{even}).backend;
    auto b = *choose_target(read_req, {}, v, p, st, "", Load{even}).backend;
    CHECK(a != b);
}

TEST_CASE("adaptive: a replica answering ten times slower gets few reads; without figures both get some")
{
    auto v = cluster3();  // primary, r1, r2
    Policy p;
    p.load_balancing = LoadBalancing::adaptive;
    BalancerState st;
    st.seed(42);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<PeakEwma> latency(3, PeakEwma(t0));
    latency[1].observe(std::chrono::milliseconds(10), t0);  // r1 slow
    latency[2].observe(std::chrono::milliseconds(1), t0);   // r2 fast
    const std::vector<int> idle{0, 0, 0};
    std::map<std::size_t, int> picks;
    for (int i = 0; i < 200; ++i)
        ++picks[*choose_target(read_req, {}, v, p, st, "", Load{idle, latency, t0}).backend];
    CHECK(picks[0] == 0);  // reads stay off the primary
    CHECK(picks[2] == 200);

    // Unmeasured (no figures: the admin API's explain): both replicas are drawn.
    picks.clear();
    for (int i = 0; i < 200; ++i)
        ++picks[*choose_target(read_req, {}, v, p, st, "", Load{}).backend];
    CHECK(picks[1] > 50);
    CHECK(picks[2] > 50);
}

TEST_CASE("ip_hash: stable per client, spread across clients, minimal movement")
{
    ClusterView v;
    v.backends = {node("primary", Role::primary), node("r1", Role::replica), node("r2", Role::replica),
                  node("r3", Role::replica)};
    Policy p;
    p.load_balancing = LoadBalancing::ip_hash;
    BalancerState st;
    const int clients = 3000;
    std::vector<std::string> before(clients);
    std::map<std::string, int> share;
    for (int i = 0; i < clients; ++i) {
        const auto key = "192.168." + std::to_string(i / 250) + "." + std::to_string(i % 250);
        before[static_cast<std::size_t>(i)] = v.backends[*choose_target(read_req, {}, v, p, st, key, {}).backend].name;
        // Same client, same answer.
        CHECK(v.backends[*choose_target(read_req, {}, v, p, st, key, {}).backend].name ==
              before[static_cast<std::size_t>(i)]);
        ++share[before[static_cast<std::size_t>(i)]];
    }
    for (auto& [name, n] : share)
        CHECK(n > clients / 3 * 3 / 4 / 1);  // each of 3 gets a fair share (> 750 of 3000)

    SUBCASE("adding a replica moves only the clients it takes")
    {
        v.backends.push_back(node("r4", Role::replica));
        int moved = 0;
        for (int i = 0; i < clients; ++i) {
            const auto key = "192.168." + std::to_string(i / 250) + "." + std::to_string(i % 250);
            const auto now = v.backends[*choose_target(read_req, {}, v, p, st, key, {}).backend].name;
            if (now != before[static_cast<std::size_t>(i)]) {
                CHECK(now == "r4");
                ++moved;
            }
        }
        CHECK(moved > clients / 4 * 3 / 4);  // about a quarter move...
        CHECK(moved < clients / 4 * 5 / 4);  // ...and no more
    }
    SUBCASE("removing a replica moves only its clients")
    {
        v.backends[2].state = BackendState::down;  // r2
        for (int i = 0; i < clients; ++i) {
            const auto key = "192.168." + std::to_string(i / 250) + "." + std::to_string(i % 250);
            const auto now = v.backends[*choose_target(read_req, {}, v, p, st, key, {}).backend].name;
            if (before[static_cast<std::size_t>(i)] != "r2")
                CHECK(now == before[static_cast<std::size_t>(i)]);
            else
                CHECK(now != "r2");
        }
    }
}

TEST_CASE("unusable replicas get no reads; none left means the primary")
{
    auto v = cluster3();
    v.backends[1].state = BackendState::down;
    v.backends[2].lagging = true;
    BalancerState st;
    auto d = choose_target(read_req, {}, v, Policy{}, st, "", {});
    CHECK(d.backend == std::optional<std::size_t>{0});
    CHECK(d.reason == Reason::no_replica);
    v.backends[2].state = BackendState::drained;
    v.backends[2].lagging = false;
    d = choose_target(read_req, {}, v, Policy{}, st, "", {});
    CHECK(d.reason == Reason::no_replica);
}

TEST_CASE("no primary: reads still go to replicas, writes have nowhere to go")
{
    auto v = cluster3();
    v.backends[0].state = BackendState::down;
    BalancerState st;
    auto w = choose_target(write_req, {}, v, Policy{}, st, "", {});
    CHECK_FALSE(w.backend);
    CHECK(w.reason == Reason::no_primary);
    auto r = choose_target(read_req, {}, v, Policy{}, st, "", {});
    REQUIRE(r.backend);
    CHECK(r.reason == Reason::replica);
}

TEST_CASE("read your writes, lsn mode: only replicas past the session's LSN")
{
    auto v = cluster3();
    v.backends[1].wal_lsn = 500;
    v.backends[2].wal_lsn = 300;
    BalancerState st;
    SessionConstraints s;
    s.min_lsn = 400;
    for (int i = 0; i < 4; ++i)
        CHECK(choose_target(read_req, s, v, Policy{}, st, "", {}).backend == std::optional<std::size_t>{1});
    s.min_lsn = 600;
    auto d = choose_target(read_req, s, v, Policy{}, st, "", {});
    CHECK(d.backend == std::optional<std::size_t>{0});
    CHECK(d.reason == Reason::read_your_writes);
    s.min_lsn.reset();
    s.lsn_pending = true;  // a read pipelined right behind the write
    CHECK(choose_target(read_req, s, v, Policy{}, st, "", {}).reason == Reason::read_your_writes);
    Policy off;
    off.read_your_writes = ReadYourWrites::off;
    CHECK(choose_target(read_req, s, v, off, st, "", {}).reason == Reason::replica);
}

TEST_CASE("read your writes, session mode: after a write, the primary")
{
    auto v = cluster3();
    Policy p;
    p.read_your_writes = ReadYourWrites::session;
    BalancerState st;
    SessionConstraints s;
    CHECK(choose_target(read_req, s, v, p, st, "", {}).reason == Reason::replica);
    s.wrote = true;
    CHECK(choose_target(read_req, s, v, p, st, "", {}).reason == Reason::read_your_writes);
}

TEST_CASE("pins and hints")
{
    auto v = cluster3();
    BalancerState st;
    SessionConstraints pinned;
    pinned.pinned_to_primary = true;
    CHECK(choose_target(read_req, pinned, v, Policy{}, st, "", {}).reason == Reason::pinned);
    RouteRequest to_primary{false, true, false};
    CHECK(choose_target(to_primary, {}, v, Policy{}, st, "", {}).reason == Reason::hint_primary);
    RouteRequest to_replica{false, false, true};
    CHECK(choose_target(to_replica, pinned, v, Policy{}, st, "", {}).reason == Reason::replica);
    RouteRequest write_to_replica{true, false, true};
    CHECK(choose_target(write_to_replica, {}, v, Policy{}, st, "", {}).reason == Reason::write);
}

TEST_CASE("lag hysteresis")
{
    const std::uint64_t max = 1000;
    CHECK_FALSE(update_lagging(false, 1000, max));
    CHECK(update_lagging(false, 1001, max));
    CHECK(update_lagging(true, 900, max));  // still above 3/4 of the limit
    CHECK_FALSE(update_lagging(true, 750, max));
    CHECK(update_lagging(true, std::nullopt, max));
    CHECK_FALSE(update_lagging(false, std::nullopt, max));
}

TEST_CASE("read your writes: a read that can wait goes to a replica with the position to wait for")
{
    auto v = cluster3();
    v.backends[1].wal_lsn = 500;
    v.backends[2].wal_lsn = 300;
    BalancerState st;
    SessionConstraints s;
    s.min_lsn = 600;  // no replica known to be there yet
    RouteRequest waitable = read_req;
    waitable.can_wait = true;
    std::map<std::size_t, int> seen;
    for (int i = 0; i < 4; ++i) {
        const auto d = choose_target(waitable, s, v, Policy{}, st, "", {});
        REQUIRE(d.backend);
        CHECK(d.reason == Reason::read_your_writes_wait);
        REQUIRE(d.wait_lsn);
        CHECK(*d.wait_lsn == 600);
        ++seen[*d.backend];
    }
    CHECK(seen[1] == 2);  // balanced as usual
    CHECK(seen[2] == 2);
    // A replica the session saw reach the position needs no wait.
    const std::vector<std::uint64_t> known{0, 0, 650};
    s.known_replay = known;
    const auto fresh = choose_target(waitable, s, v, Policy{}, st, "", {});
    CHECK(fresh.backend == std::optional<std::size_t>{2});
    CHECK(fresh.reason == Reason::replica);
    CHECK_FALSE(fresh.wait_lsn);
    s.known_replay = {};
    // Waiting turned off, or a request the caller cannot re-run: the primary.
    Policy no_wait;
    no_wait.read_your_writes_wait_ms = 0;
    CHECK(choose_target(waitable, s, v, no_wait, st, "", {}).reason == Reason::read_your_writes);
    CHECK(choose_target(read_req, s, v, Policy{}, st, "", {}).reason == Reason::read_your_writes);
    // The position is not known yet (pipelined read): nothing to wait for, the primary.
    s.lsn_pending = true;
    CHECK(choose_target(waitable, s, v, Policy{}, st, "", {}).reason == Reason::read_your_writes);
}

TEST_CASE("known_fresh: the health round's position or the session's own")
{
    auto v = cluster3();
    v.backends[1].wal_lsn = 500;
    CHECK(known_fresh(v, 1, 500, {}));
    CHECK_FALSE(known_fresh(v, 1, 501, {}));
    const std::vector<std::uint64_t> known{0, 700, 0};
    CHECK(known_fresh(v, 1, 650, known));
    v.backends[2].wal_lsn.reset();
    CHECK_FALSE(known_fresh(v, 2, 1, known));
}

TEST_CASE("login order: the primary first, then the replicas that are up")
{
    auto v = cluster3();
    CHECK(login_order(v) == std::vector<std::size_t>{0, 1, 2});
    v.backends[0].consecutive_failures = 1;  // not answering: the replicas first
    CHECK(login_order(v) == std::vector<std::size_t>{1, 2, 0});
    v.backends[0].consecutive_failures = 0;
    v.backends[0].state = BackendState::down;
    CHECK(login_order(v) == std::vector<std::size_t>{1, 2});
    v.backends[1].state = BackendState::drained;
    CHECK(login_order(v) == std::vector<std::size_t>{2});
}
