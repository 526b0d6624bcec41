// ReplayKnowledge: what replay waits taught about replica positions.
#include <doctest/doctest.h>

#include "routing/replay_knowledge.h"
#include "routing/router.h"

using namespace pgswitch::routing;
using namespace std::chrono_literals;

namespace {

ClusterView view3()
{
    ClusterView v;
    for (const char* n : {"primary", "r1", "r2"}) {
        BackendView b;
        b.name = n;
        b.role = std::string_view(n) == "primary" ? Role::primary : Role::replica;
        b.state = BackendState::up;
        b.wal_lsn = 100;
        v.backends.push_back(b);
    }
    return v;
}

}  // namespace

TEST_CASE("replay knowledge: positions reached, and recent misses that later progress clears")
{
    ReplayKnowledge k;
    const auto v = view3();
    const auto t0 = ReplayKnowledge::Clock::time_point{} + 1h;
    k.reached("r1", 500);
    k.reached("r1", 400);  // never lowered
    CHECK(k.reached_positions(v) == std::vector<std::uint64_t>{0, 500, 0});
    k.missed("r2", 700, t0);
    k.missed("r2", 650, t0 + 1ms);  // the lowest miss counts
    CHECK(k.behind_positions(v, t0 + 10ms, 200ms) == std::vector<std::uint64_t>{0, 0, 650});
    CHECK(k.behind_positions(v, t0 + 500ms, 200ms) == std::vector<std::uint64_t>{0, 0, 0});  // forgotten
    k.reached("r2", 660);                                                                    // it got there after all
    CHECK(k.behind_positions(v, t0 + 10ms, 200ms) == std::vector<std::uint64_t>{0, 0, 0});
    k.missed("r2", 900, t0);
    auto moved = v;
    moved.backends[2].wal_lsn = 950;  // the health round saw it past the miss
    CHECK(k.behind_positions(moved, t0 + 10ms, 200ms) == std::vector<std::uint64_t>{0, 0, 0});
}

TEST_CASE("read your writes: no replay wait on a replica that just missed that position")
{
    auto v = view3();
    SessionConstraints s;
    s.min_lsn = 800;
    RouteRequest r;
    r.write = false;
    r.can_wait = true;
    BalancerState st;
    const std::vector<std::uint64_t> behind_r1{0, 700, 0};
    s.known_behind = behind_r1;  // r1 missed 700 recently: it cannot have 800
    for (int i = 0; i < 4; ++i) {
        const auto d = choose_target(r, s, v, Policy{}, st, "", {});
        CHECK(d.backend == std::optional<std::size_t>{2});
        CHECK(d.reason == Reason::read_your_writes_wait);
    }
    const std::vector<std::uint64_t> behind_both{0, 700, 790};
    s.known_behind = behind_both;
    CHECK(choose_target(r, s, v, Policy{}, st, "", {}).reason == Reason::read_your_writes);
    const std::vector<std::uint64_t> behind_later{0, 900, 900};  // missed more than needed: may have 800
    s.known_behind = behind_later;
    CHECK(choose_target(r, s, v, Policy{}, st, "", {}).reason == Reason::read_your_writes_wait);
}
