#include "failover_policy.h"

#include <algorithm>
#include <tuple>

namespace pgswitch::routing {

std::optional<std::string> best_promotion_candidate(const FailoverInput& in)
{
    const FailoverInput::Node* best = nullptr;
    auto key = [](const FailoverInput::Node& n) {
        return std::make_tuple(n.receive_lsn.value_or(0), n.replay_lsn.value_or(0));
    };
    for (const auto& n : in.nodes) {
        if (n.role != Role::replica || !n.healthy || n.fenced || n.drained)
            continue;
        if (!best || key(n) > key(*best) || (key(n) == key(*best) && n.name < best->name))
            best = &n;
    }
    if (!best)
        return std::nullopt;
    return best->name;
}

std::optional<std::string> sole_primary(const FailoverInput& in)
{
    std::optional<std::string> found;
    for (const auto& n : in.nodes) {
        if (n.role != Role::primary || !n.healthy || n.fenced)
            continue;
        if (found)
            return std::nullopt;
        found = n.name;
    }
    return found;
}

FailoverDecision next_failover_action(const FailoverInput& in)
{
    FailoverDecision d;
    std::vector<const FailoverInput::Node*> primaries;
    for (const auto& n : in.nodes)
        if (n.role == Role::primary && n.healthy && !n.fenced)
            primaries.push_back(&n);

    if (primaries.size() > 1) {
        if (in.mode == FailoverMode::external) {
            d.reason = "more than one node reports it is not in recovery: no writes until one remains";
            return d;
        }
        // Keep the one writes went to; fence any other claimant.
        for (const auto* p : primaries) {
            if (in.last_primary && p->name == *in.last_primary)
                continue;
            d.kind = FailoverDecision::Kind::fence;
            d.candidate = p->name;
            d.old_primary = in.last_primary.value_or("");
            d.reason = "\"" + p->name + "\" claims to be primary while another is: fenced";
            return d;
        }
        d.reason = "several primaries and none was the last known one: no writes until one remains";
        return d;
    }
    if (primaries.size() == 1) {
        d.reason = "primary \"" + primaries.front()->name + "\" is healthy";
        return d;
    }
    if (in.mode != FailoverMode::automatic) {
        d.reason = in.mode == FailoverMode::manual ? "no primary; failover.mode = manual: waiting for POST /failover"
                                                   : "no primary; failover.mode = external: waiting for one to appear";
        return d;
    }
    if (!in.last_primary) {
        d.reason = "no primary has been seen yet: nothing to fail over from";
        return d;
    }
    const auto candidate = best_promotion_candidate(in);
    if (!candidate) {
        d.reason = "primary \"" + *in.last_primary + "\" is down and no healthy replica can be promoted";
        return d;
    }
    d.kind = FailoverDecision::Kind::promote;
    d.candidate = *candidate;
    d.old_primary = *in.last_primary;
    d.reason = "primary \"" + *in.last_primary + "\" is down";
    return d;
}

bool announces_restart(std::string_view sqlstate, std::string_view message) noexcept
{
    return sqlstate == "57P03" ||
           (sqlstate == "57P01" && message.find("administrator command") != std::string_view::npos);
}

bool is_down(int failures, int threshold, std::optional<std::chrono::milliseconds> since_announced,
             std::chrono::milliseconds grace) noexcept
{
    if (failures < threshold)
        return false;
    return !since_announced || *since_announced >= grace;
}

}  // namespace pgswitch::routing
