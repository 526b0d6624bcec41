// SessionLinks: which of a session's connections a request may use, across
// new cluster views (a failover with the old primary alive and fenced).
#include <doctest/doctest.h>

#include "proxy/session_links.h"

using namespace pgswitch;
using proxy::ServerLink;
using proxy::SessionLinks;
using routing::BackendState;
using routing::Role;

namespace {

routing::BackendView backend(std::string name, Role role, BackendState state = BackendState::up)
{
    routing::BackendView b;
    b.name = std::move(name);
    b.role = role;
    b.state = state;
    return b;
}

routing::ClusterView view(std::uint64_t generation, std::vector<routing::BackendView> backends)
{
    routing::ClusterView v;
    v.generation = generation;
    v.backends = std::move(backends);
    return v;
}

std::shared_ptr<ServerLink> link_to(const routing::BackendView& b)
{
    auto l = std::make_shared<ServerLink>();
    l->backend = b.name;
    l->role = b.role;
    return l;
}

}  // namespace

TEST_CASE("SessionLinks: after a failover the old primary's link is neither the primary's nor a primary")
{
    const auto before = view(1, {backend("pg1", Role::primary), backend("pg2", Role::replica)});
    SessionLinks links;
    links.add(link_to(before.backends[0]));
    links.add(link_to(before.backends[1]));
    links.reconcile(before);
    REQUIRE(links.to_primary(before));
    CHECK(links.to_primary(before)->backend == "pg1");

    // pg2 promoted; pg1 still up (it says primary) but fenced.
    const auto after = view(2, {backend("pg1", Role::primary, BackendState::fenced), backend("pg2", Role::primary)});
    REQUIRE(after.primary_index() == std::size_t{1});
    links.reconcile(after);
    REQUIRE(links.to_primary(after));
    CHECK(links.to_primary(after)->backend == "pg2");
    CHECK(links.all()[1]->role == Role::primary);
}

TEST_CASE("SessionLinks: reconcile gives every link its backend's role; a backend gone from the view is unknown")
{
    const auto first = view(1, {backend("pg1", Role::primary), backend("pg2", Role::replica)});
    SessionLinks links;
    links.add(link_to(first.backends[0]));
    links.add(link_to(first.backends[1]));
    links.reconcile(first);

    const auto second = view(2, {backend("pg2", Role::primary)});
    links.reconcile(second);
    CHECK(links.all()[0]->role == Role::unknown);
    CHECK(links.all()[1]->role == Role::primary);

    // The same generation again is not re-read (a session reconciles at every request).
    links.all()[1]->role = Role::replica;
    links.reconcile(second);
    CHECK(links.all()[1]->role == Role::replica);
}

TEST_CASE("SessionLinks: find skips dead links and refreshes the role; remove and holder")
{
    const auto v = view(1, {backend("pg1", Role::primary), backend("pg2", Role::replica)});
    SessionLinks links;
    auto dead = link_to(v.backends[1]);
    dead->dead = true;
    links.add(dead);
    CHECK_FALSE(links.find(v.backends[1]));
    auto live = link_to(v.backends[1]);
    live->role = Role::unknown;
    links.add(live);
    REQUIRE(links.find(v.backends[1]) == live);
    CHECK(live->role == Role::replica);

    CHECK(links.holder(*live) == live);
    CHECK(links.remove(*live) == live);
    CHECK_FALSE(links.holder(*live));
    CHECK(links.all().size() == 1);
    CHECK_FALSE(links.remove(*live));
}

TEST_CASE("SessionLinks: owes the client while any link has client replies or an unfinished extended request")
{
    const auto v = view(1, {backend("pg1", Role::primary), backend("pg2", Role::replica)});
    SessionLinks links;
    auto a = link_to(v.backends[0]);
    auto b = link_to(v.backends[1]);
    links.add(a);
    links.add(b);
    CHECK_FALSE(links.any_owes_client());
    b->unsynced = true;
    CHECK(links.any_owes_client());
    b->unsynced = false;
    a->push(ServerLink::Segment::client);
    CHECK(links.any_owes_client());
}
