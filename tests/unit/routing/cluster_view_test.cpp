// ClusterView: who is the usable primary, and LSN text conversions.
#include <doctest/doctest.h>

#include "routing/cluster_view.h"

using namespace pgswitch::routing;

namespace {
BackendView node(std::string name, Role role, BackendState state)
{
    BackendView b;
    b.name = std::move(name);
    b.role = role;
    b.state = state;
    return b;
}
}  // namespace

TEST_CASE("the primary is the single up backend not in recovery")
{
    ClusterView v;
    v.backends = {node("a", Role::replica, BackendState::up), node("b", Role::primary, BackendState::up),
                  node("c", Role::replica, BackendState::up)};
    REQUIRE(v.primary_index());
    CHECK(*v.primary_index() == 1);
    CHECK(v.find("c") == &v.backends[2]);
    CHECK(v.find("zz") == nullptr);
}

TEST_CASE("a down or fenced primary is not usable")
{
    ClusterView v;
    v.backends = {node("a", Role::primary, BackendState::down), node("b", Role::replica, BackendState::up)};
    CHECK_FALSE(v.primary_index());
    v.backends[0].state = BackendState::fenced;
    CHECK_FALSE(v.primary_index());
    v.backends[0].state = BackendState::up;
    CHECK(v.primary_index() == std::optional<std::size_t>{0});
}

TEST_CASE("two claiming primaries means no primary at all")
{
    ClusterView v;
    v.backends = {node("a", Role::primary, BackendState::up), node("b", Role::primary, BackendState::up)};
    CHECK_FALSE(v.primary_index());
}

TEST_CASE("LSN text round trip")
{
    CHECK(parse_lsn("0/0") == std::optional<std::uint64_t>{0});
    CHECK(parse_lsn("16/B374D848") == std::optional<std::uint64_t>{(0x16ull << 32) | 0xB374D848ull});
    CHECK(format_lsn((0x16ull << 32) | 0xB374D848ull) == "16/B374D848");
    CHECK_FALSE(parse_lsn(""));
    CHECK_FALSE(parse_lsn("/1"));
    CHECK_FALSE(parse_lsn("1/"));
    CHECK_FALSE(parse_lsn("G/1"));
    CHECK_FALSE(parse_lsn("1/1x"));
}
