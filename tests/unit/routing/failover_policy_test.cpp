// next_failover_action(): the failover rules of SPEC §4, without sleeps or servers.
#include <doctest/doctest.h>

#include "routing/failover_policy.h"

using namespace pgswitch::routing;
using Kind = FailoverDecision::Kind;

namespace {
FailoverInput::Node node(std::string name, Role role, bool healthy, std::uint64_t receive = 0)
{
    FailoverInput::Node n;
    n.name = std::move(name);
    n.role = role;
    n.healthy = healthy;
    n.receive_lsn = receive;
    n.replay_lsn = receive;
    return n;
}

FailoverInput cluster(bool primary_healthy)
{
    FailoverInput in;
    in.nodes = {node("pg1", Role::primary, primary_healthy), node("pg2", Role::replica, true, 100),
                node("pg3", Role::replica, true, 300)};
    in.last_primary = "pg1";
    return in;
}
}  // namespace

TEST_CASE("a healthy primary: nothing to do")
{
    CHECK(next_failover_action(cluster(true)).kind == Kind::none);
}

TEST_CASE("auto: a dead primary is replaced by the replica with the most WAL received")
{
    auto d = next_failover_action(cluster(false));
    CHECK(d.kind == Kind::promote);
    CHECK(d.candidate == "pg3");
    CHECK(d.old_primary == "pg1");
}

TEST_CASE("candidates must be healthy, unfenced and not drained")
{
    auto in = cluster(false);
    in.nodes[2].healthy = false;
    CHECK(next_failover_action(in).candidate == "pg2");
    in.nodes[1].drained = true;
    CHECK(next_failover_action(in).kind == Kind::none);
    in.nodes[1].drained = false;
    in.nodes[1].fenced = true;
    CHECK(next_failover_action(in).kind == Kind::none);
}

TEST_CASE("equal WAL: replay position, then name decide")
{
    auto in = cluster(false);
    in.nodes[1].receive_lsn = in.nodes[2].receive_lsn = 300;
    in.nodes[1].replay_lsn = 250;
    in.nodes[2].replay_lsn = 200;
    CHECK(next_failover_action(in).candidate == "pg2");
    in.nodes[2].replay_lsn = 250;
    CHECK(next_failover_action(in).candidate == "pg2");
}

TEST_CASE("manual and external never promote by themselves")
{
    auto in = cluster(false);
    in.mode = FailoverMode::manual;
    CHECK(next_failover_action(in).kind == Kind::none);
    in.mode = FailoverMode::external;
    CHECK(next_failover_action(in).kind == Kind::none);
    CHECK(best_promotion_candidate(in) == std::optional<std::string>{"pg3"});
}

TEST_CASE("no primary ever seen: no promotion at start-up")
{
    auto in = cluster(false);
    in.last_primary.reset();
    CHECK(next_failover_action(in).kind == Kind::none);
}

TEST_CASE("never two primaries: the newcomer is fenced, except in external mode")
{
    auto in = cluster(true);
    in.nodes[2].role = Role::primary;
    auto d = next_failover_action(in);
    CHECK(d.kind == Kind::fence);
    CHECK(d.candidate == "pg3");
    in.mode = FailoverMode::external;
    CHECK(next_failover_action(in).kind == Kind::none);
    // A fenced old primary coming back is not a second primary.
    auto back = cluster(true);
    back.nodes[0].fenced = true;
    back.nodes[2].role = Role::primary;
    back.last_primary = "pg3";
    CHECK(next_failover_action(back).kind == Kind::none);
}

TEST_CASE("a replica promoted behind pgswitch's back does not become the primary writes go to")
{
    // Configuration order puts the newcomer last: a "last one seen wins" rule
    // would make it the primary and fence the real one.
    auto in = cluster(true);
    CHECK(sole_primary(in) == std::optional<std::string>("pg1"));
    in.nodes[2].role = Role::primary;
    CHECK_FALSE(sole_primary(in).has_value());
    auto d = next_failover_action(in);  // last_primary stays pg1
    CHECK(d.kind == Kind::fence);
    CHECK(d.candidate == "pg3");
    CHECK(d.reason.find("claims to be primary") != std::string::npos);
    // Once fenced, pg1 is again the sole primary.
    in.nodes[2].fenced = true;
    CHECK(sole_primary(in) == std::optional<std::string>("pg1"));
    // No primary at all: none.
    auto dead = cluster(false);
    CHECK_FALSE(sole_primary(dead).has_value());
}

TEST_CASE("a server that announced a restart gets the grace period before it is down; a killed one does not")
{
    using std::chrono::milliseconds;
    CHECK(announces_restart("57P03", "the database system is shutting down"));
    CHECK(announces_restart("57P03", "the database system is starting up"));
    CHECK(announces_restart("57P01", "terminating connection due to administrator command"));
    CHECK_FALSE(announces_restart("57P01", "terminating connection due to unexpected postmaster exit"));
    CHECK_FALSE(announces_restart("", "could not connect to 127.0.0.1:5432: Connection refused"));
    CHECK_FALSE(announces_restart("", "server closed the connection during login"));
    CHECK_FALSE(announces_restart("", "administrator command (SQLSTATE 57P01)"));  // text is not a SQLSTATE

    // No announcement: down at the threshold.
    CHECK_FALSE(is_down(2, 3, std::nullopt, milliseconds(5000)));
    CHECK(is_down(3, 3, std::nullopt, milliseconds(5000)));
    // Announced 1 s ago with a 5 s grace: not down yet, however many checks failed.
    CHECK_FALSE(is_down(30, 3, milliseconds(1000), milliseconds(5000)));
    // The grace ran out: down.
    CHECK(is_down(30, 3, milliseconds(5000), milliseconds(5000)));
    // Grace 0 turns the rule off.
    CHECK(is_down(3, 3, milliseconds(0), milliseconds(0)));
}
