// Unit tests for routing/topology: what the instances of a cluster share
// through etcd, and the change a promotion makes to it.
#include "routing/topology.h"

#include <doctest/doctest.h>

using namespace pgswitch::routing;

TEST_CASE("after_promotion: a new epoch, the candidate primary, the old primary fenced, the failover in the history")
{
    Topology t;
    t.epoch = 1;
    t.primary = "pg1";
    const auto n = after_promotion(t, "pg2", "pg1", "primary down", "2026-12-03T10:00:00Z");
    CHECK(n.epoch == 2);
    CHECK(n.primary == "pg2");
    REQUIRE(n.fenced.count("pg1") == 1);
    CHECK(n.fenced.at("pg1").find("POST /backends/pg1/enable") != std::string::npos);
    REQUIRE(n.history.size() == 1);
    CHECK(n.history[0] == FailoverEntry{2, "2026-12-03T10:00:00Z", "pg1", "pg2", "primary down"});
    CHECK(t.epoch == 1);  // the input is not changed

    SUBCASE("a fenced candidate is unfenced by its promotion")
    {
        auto back = after_promotion(n, "pg1", "pg2", "again", "t");
        CHECK(back.epoch == 3);
        CHECK(back.fenced.count("pg1") == 0);
        CHECK(back.fenced.count("pg2") == 1);
    }
    SUBCASE("no old primary: nothing fenced")
    {
        const auto first = after_promotion(Topology{}, "pg2", "", "no primary", "t");
        CHECK(first.epoch == 1);
        CHECK(first.fenced.empty());
    }
    SUBCASE("the history keeps its last entries")
    {
        Topology h = n;
        for (int i = 0; i < 10; ++i)
            h = after_promotion(h, i % 2 ? "pg2" : "pg1", h.primary, "r" + std::to_string(i), "t", 4);
        CHECK(h.epoch == 12);
        REQUIRE(h.history.size() == 4);
        CHECK(h.history.front().epoch == 9);
        CHECK(h.history.back().epoch == 12);
    }
}

TEST_CASE("topology, shared backends and instances round-trip through their JSON")
{
    Topology t = after_promotion(Topology{3, "a", {{"c", "why"}}, {}}, "b", "a", "down", "2026-01-01T00:00:00Z");
    CHECK(decode_topology(encode(t)) == t);
    const std::vector<SharedBackend> backends{{"a", "10.0.0.1", 5432, 1, false}, {"b", "h", 6543, 0, true}};
    CHECK(decode_backends(encode(backends)) == backends);
    const InstanceInfo i{"px-1", "10.0.0.9:6432", "127.0.0.1:8080", 7};
    CHECK(decode_instance(encode(i)) == i);
}

TEST_CASE("records that do not decode are nullopt, never an exception")
{
    CHECK_FALSE(decode_topology("not json"));
    CHECK_FALSE(decode_topology(R"({"epoch": "three"})"));
    CHECK_FALSE(decode_backends(R"([{"name": "a"}])"));  // no host or port
    CHECK_FALSE(decode_backends(R"([{"name": "a", "host": "h", "port": 70000}])"));
    CHECK_FALSE(decode_instance(R"({"listen": "h:1"})"));  // no name
    CHECK(decode_topology("{}") == Topology{});            // absent fields take their defaults
}

TEST_CASE("secret keys carry the instance id in bits 24..30 and stay positive")
{
    for (int id : {0, 1, 42, 127}) {
        const auto s = secret_with_instance(static_cast<std::int32_t>(0x7fabcdef), id);
        CHECK(instance_of_secret(s) == id);
        CHECK(s >= 0);
        CHECK((s & 0xffffff) == 0xabcdef);
    }
    CHECK(instance_of_secret(secret_with_instance(-1, 5)) == 5);
}
