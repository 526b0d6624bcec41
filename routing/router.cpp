#include "router.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace pgswitch::routing {
namespace {

// FNV-1a then a splitmix64 finalizer: stable across runs and builds (unlike
// std::hash), so ip_hash keeps a client on the same replica after a restart.
std::uint64_t stable_hash(std::string_view a, std::string_view b) noexcept
{
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](std::string_view s) {
        for (char c : s) {
            h ^= static_cast<unsigned char>(c);
            h *= 1099511628211ull;
        }
    };
    mix(a);
    h ^= 0xff;  // separator, so ("ab","c") and ("a","bc") differ
    h *= 1099511628211ull;
    mix(b);
    h += 0x9e3779b97f4a7c15ull;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ull;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

bool is_usable_replica(const BackendView& b) noexcept
{
    return b.role == Role::replica && b.state == BackendState::up && b.weight > 0;
}

}  // namespace

std::size_t pick(std::span<const std::size_t> candidates, const ClusterView& view, const Policy& policy,
                 BalancerState& state, std::string_view client_key, const Load& load)
{
    if (candidates.size() == 1)
        return candidates.front();
    switch (policy.load_balancing) {
    case LoadBalancing::round_robin:
        return state.pick_round_robin(view, candidates);
    case LoadBalancing::least_connections:
        return pick_least_connections(view, candidates, load.in_flight, state);
    case LoadBalancing::ip_hash:
        return pick_rendezvous(view, candidates, client_key);
    case LoadBalancing::adaptive:
        return pick_adaptive(view, candidates, load.in_flight, load.latency, load.now, state.random());
    }
    return candidates.front();
}

std::string_view to_string(Reason r) noexcept
{
    switch (r) {
    case Reason::write:
        return "write";
    case Reason::pinned:
        return "session pinned to primary";
    case Reason::hint_primary:
        return "hint pgswitch:primary";
    case Reason::read_your_writes:
        return "read your writes";
    case Reason::read_your_writes_wait:
        return "read on replica after replay wait";
    case Reason::replica:
        return "read on replica";
    case Reason::primary_read:
        return "read balanced onto primary";
    case Reason::no_replica:
        return "no usable replica";
    case Reason::no_primary:
        return "no primary";
    case Reason::no_backend:
        return "no backend";
    }
    return "unknown";
}

std::int64_t& BalancerState::current_for(const std::string& name)
{
    for (auto& [n, v] : current_)
        if (n == name)
            return v;
    current_.emplace_back(name, 0);
    return current_.back().second;
}

std::size_t BalancerState::pick_round_robin(const ClusterView& view, std::span<const std::size_t> candidates)
{
    // Smooth weighted round robin: every pick adds each weight to its
    // counter, takes the largest, and subtracts the total from the winner.
    std::int64_t total = 0;
    std::size_t best = candidates.front();
    std::int64_t best_value = std::numeric_limits<std::int64_t>::min();
    for (auto i : candidates) {
        const auto w = std::max(view.backends[i].weight, 1);
        total += w;
        auto& c = current_for(view.backends[i].name);
        c += w;
        if (c > best_value) {
            best_value = c;
            best = i;
        }
    }
    current_for(view.backends[best].name) -= total;
    return best;
}

std::size_t pick_rendezvous(const ClusterView& view, std::span<const std::size_t> candidates,
                            std::string_view client_key)
{
    std::size_t best = candidates.front();
    double best_score = -std::numeric_limits<double>::infinity();
    for (auto i : candidates) {
        const auto& b = view.backends[i];
        // Uniform in (0,1): 53 high bits, never exactly 0 or 1.
        const double u = (static_cast<double>(stable_hash(client_key, b.name) >> 11) + 0.5) * 0x1.0p-53;
        const double score = -static_cast<double>(std::max(b.weight, 1)) / std::log(u);
        if (score > best_score) {
            best_score = score;
            best = i;
        }
    }
    return best;
}

std::size_t pick_least_connections(const ClusterView& view, std::span<const std::size_t> candidates,
                                   std::span<const int> in_flight, BalancerState& state)
{
    // Compare in_flight/weight without division: a/wa < b/wb ⇔ a*wb < b*wa.
    Candidates best;
    std::int64_t best_load = 0;
    std::int64_t best_weight = 1;
    for (auto i : candidates) {
        const std::int64_t load = i < in_flight.size() ? in_flight[i] : 0;
        const std::int64_t w = std::max(view.backends[i].weight, 1);
        if (best.empty() || load * best_weight < best_load * w) {
            best.assign(1, i);
            best_load = load;
            best_weight = w;
        } else if (load * best_weight == best_load * w) {
            best.push_back(i);
        }
    }
    if (best.size() == 1)
        return best.front();
    return state.pick_round_robin(view, best);
}

std::vector<std::size_t> login_order(const ClusterView& view)
{
    std::vector<std::size_t> order;
    const auto primary = view.primary_index();
    // A primary failing its checks (frozen, dying) comes last: a login there
    // would wait for the connect timeout.
    const bool suspect = primary && view.backends[*primary].consecutive_failures > 0;
    if (primary && !suspect)
        order.push_back(*primary);
    for (std::size_t i = 0; i < view.backends.size(); ++i)
        if (view.backends[i].role == Role::replica && view.backends[i].state == BackendState::up)
            order.push_back(i);
    if (suspect)
        order.push_back(*primary);
    return order;
}

bool known_fresh(const ClusterView& view, std::size_t index, std::uint64_t lsn,
                 std::span<const std::uint64_t> known_replay) noexcept
{
    const auto& b = view.backends[index];
    if (b.wal_lsn && *b.wal_lsn >= lsn)
        return true;
    return index < known_replay.size() && known_replay[index] >= lsn;
}

Candidates eligible_replicas(const ClusterView& view, const Policy& policy, const SessionConstraints& session)
{
    Candidates out;
    for (std::size_t i = 0; i < view.backends.size(); ++i) {
        const auto& b = view.backends[i];
        if (!is_usable_replica(b) || b.lagging)
            continue;
        if (policy.read_your_writes == ReadYourWrites::lsn &&
            (session.lsn_pending || (session.min_lsn && !known_fresh(view, i, *session.min_lsn, session.known_replay))))
            continue;
        out.push_back(i);
    }
    return out;
}

Decision choose_target(const RouteRequest& request, const SessionConstraints& session, const ClusterView& view,
                       const Policy& policy, BalancerState& state, std::string_view client_key, const Load& load)
{
    const auto primary = view.primary_index();
    if (request.write) {
        if (primary)
            return {primary, Reason::write};
        return {std::nullopt, Reason::no_primary};
    }

    Candidates candidates;
    if (request.prefer_replica) {
        // The hint overrides session rules for this statement: any up replica.
        for (std::size_t i = 0; i < view.backends.size(); ++i)
            if (is_usable_replica(view.backends[i]) && !view.backends[i].lagging)
                candidates.push_back(i);
    } else {
        if (session.pinned_to_primary)
            return primary ? Decision{primary, Reason::pinned} : Decision{std::nullopt, Reason::no_primary};
        if (request.prefer_primary && primary)
            return {primary, Reason::hint_primary};
        if (policy.read_your_writes == ReadYourWrites::session && session.wrote && primary)
            return {primary, Reason::read_your_writes};
        candidates = eligible_replicas(view, policy, session);
        if (candidates.empty() && policy.read_your_writes == ReadYourWrites::lsn &&
            (session.min_lsn || session.lsn_pending)) {
            // Replicas exist but none is known to have the session's last
            // write yet: one may get there within the wait, else the primary.
            const auto usable = eligible_replicas(view, policy, SessionConstraints{});
            Candidates worth_waiting;
            for (auto i : usable)
                if (!session.min_lsn || i >= session.known_behind.size() || session.known_behind[i] == 0 ||
                    session.known_behind[i] > *session.min_lsn)
                    worth_waiting.push_back(i);
            if (!worth_waiting.empty() && request.can_wait && policy.read_your_writes_wait_ms > 0 &&
                !session.lsn_pending) {
                Decision d{pick(worth_waiting, view, policy, state, client_key, load), Reason::read_your_writes_wait,
                           session.min_lsn};
                return d;
            }
            if (!usable.empty() && primary)
                return {primary, Reason::read_your_writes};
        }
        if (policy.primary_reads && primary && view.backends[*primary].weight > 0)
            candidates.push_back(*primary);
    }
    if (candidates.empty()) {
        if (primary)
            return {primary, Reason::no_replica};
        return {std::nullopt, Reason::no_backend};
    }
    const std::size_t chosen = pick(candidates, view, policy, state, client_key, load);
    return {chosen, primary && chosen == *primary ? Reason::primary_read : Reason::replica};
}

}  // namespace pgswitch::routing
