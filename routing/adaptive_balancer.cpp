#include "adaptive_balancer.h"

#include <algorithm>
#include <cmath>

namespace pgswitch::routing {
namespace {

double elapsed_ns(SteadyTime from, SteadyTime to) noexcept
{
    return to > from ? static_cast<double>(std::chrono::nanoseconds(to - from).count()) : 0.0;
}

double score_of(std::size_t i, const ClusterView& view, std::span<const int> in_flight,
                std::span<const PeakEwma> latency, SteadyTime now) noexcept
{
    const double cost = i < latency.size() ? latency[i].cost(now)
                                           : static_cast<double>(PeakEwma::default_initial.count());
    const int running = i < in_flight.size() ? std::max(in_flight[i], 0) : 0;
    const int weight = std::max(view.backends[i].weight, 1);
    return cost * static_cast<double>(running + 1) / static_cast<double>(weight);
}

/// The `n`-th of `candidates` that may be drawn (weight > 0, or any when
/// `any_weight`).
std::size_t nth_drawable(std::span<const std::size_t> candidates, const ClusterView& view, bool any_weight,
                         std::size_t n) noexcept
{
    for (auto i : candidates) {
        if (!any_weight && view.backends[i].weight <= 0)
            continue;
        if (n == 0)
            return i;
        --n;
    }
    return candidates.front();  // unreachable: n < the number drawable
}

}  // namespace

PeakEwma::PeakEwma(SteadyTime start, std::chrono::nanoseconds initial, std::chrono::nanoseconds decay_time) noexcept
    : estimate_ns_(static_cast<double>(std::max(initial.count(), std::int64_t{0}))),
      decay_ns_(static_cast<double>(std::max(decay_time.count(), std::int64_t{1}))),
      updated_(start)
{
}

void PeakEwma::observe(std::chrono::nanoseconds rtt, SteadyTime now) noexcept
{
    const double sample = static_cast<double>(std::max(rtt.count(), std::int64_t{0}));
    if (!measured_ || sample > estimate_ns_) {
        estimate_ns_ = sample;  // the first answer replaces the guess; a slower one is the new peak
    } else {
        const double w = std::exp(-elapsed_ns(updated_, now) / decay_ns_);
        estimate_ns_ = estimate_ns_ * w + sample * (1.0 - w);
    }
    measured_ = true;
    updated_ = std::max(updated_, now);
}

double PeakEwma::cost(SteadyTime now) const noexcept
{
    return estimate_ns_ * std::exp(-elapsed_ns(updated_, now) / decay_ns_);
}

std::size_t pick_adaptive(const ClusterView& view, std::span<const std::size_t> candidates,
                          std::span<const int> in_flight, std::span<const PeakEwma> latency, SteadyTime now,
                          SplitMix64& rng) noexcept
{
    const auto weighted = static_cast<std::size_t>(std::count_if(
        candidates.begin(), candidates.end(), [&](std::size_t i) { return view.backends[i].weight > 0; }));
    const bool any_weight = weighted == 0;
    const std::size_t drawable = any_weight ? candidates.size() : weighted;
    if (drawable == 1)
        return nth_drawable(candidates, view, any_weight, 0);
    // Two distinct draws: the second skips over the first.
    const std::size_t first = rng.below(drawable);
    std::size_t second = rng.below(drawable - 1);
    if (second >= first)
        ++second;
    const std::size_t a = nth_drawable(candidates, view, any_weight, first);
    const std::size_t b = nth_drawable(candidates, view, any_weight, second);
    const double score_a = score_of(a, view, in_flight, latency, now);
    const double score_b = score_of(b, view, in_flight, latency, now);
    if (score_a != score_b)
        return score_a < score_b ? a : b;
    return (rng.next() & 1) != 0 ? a : b;
}

}  // namespace pgswitch::routing
