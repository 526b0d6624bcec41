// load_balancing = "adaptive" (SPEC §3): send less to a slow or overloaded
// server. The peak-EWMA balancer of Finagle and Linkerd, with the "power of
// two choices":
//
//  - Each backend keeps a PeakEwma of its response times. A response slower
//    than the estimate replaces it at once (the peak: a server that turns
//    slow loses traffic after one statement); a faster one pulls it down with
//    the time-based weight w = exp(-elapsed / decay_time), so the estimate
//    follows the last decay_time of responses whatever their rate. Between
//    responses the estimate also decays toward zero with the same time
//    constant: a backend avoided because it was slow looks cheaper as time
//    passes, gets a statement again and so is measured again (no starvation,
//    and a recovered server regains its share).
//  - An unmeasured backend costs `initial` at `start` and decays from there;
//    its first response replaces that guess. A guess above a typical response
//    time enters a new backend gently (it is tried once its cost has decayed
//    to its peers', then measured) instead of flooding it with every
//    statement until its first answer comes back.
//  - A pick draws two distinct candidates at random and takes the one with
//    the lower score = cost × (in_flight + 1) / weight; equal scores go to a
//    coin flip. Two random choices rather than the global minimum: several
//    workers with slightly stale figures then do not all pile onto the same
//    "best" server, and no server is ever certain to be skipped. The price:
//    a server is in the pair 2/n of the time (n candidates), so it gets at
//    most 2/n of the statements (67 % with 3 replicas) however fast it is.
//
// Defaults: decay_time 1 s — at the millisecond response times of
// PostgreSQL reads that averages over hundreds to thousands of statements,
// yet one very long statement (a peak) is forgotten within a few seconds
// (e^-5 of it after 5 s), and a server avoided as slow is probed again after
// about decay_time × ln(slowdown) (2.3 s for 10×). Finagle and Linkerd use
// 10 s for RPCs; a database's mix of short and long statements wants a
// shorter memory. initial 10 ms — a slowish PostgreSQL read: a new backend
// is tried within decay_time × ln(10 ms / its peers' cost) (about 4 s at an
// idle 0.15 ms LAN, well under 1 s under load) and gets no burst (in the
// unit test's simulation: 2 statements in flight before its first answer).
//
// Pure: times are passed in, no clock is read, no lock is taken and nothing
// is allocated per pick. The caller owns the PeakEwma of each backend (by
// name, across views), the in-flight counts and the generator.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>

#include "routing/cluster_view.h"

namespace pgswitch::routing {

using SteadyTime = std::chrono::steady_clock::time_point;

/// A backend's recent response time, peak-sensitive (see above).
class PeakEwma {
public:
    static constexpr std::chrono::nanoseconds default_initial = std::chrono::milliseconds(10);
    static constexpr std::chrono::nanoseconds default_decay_time = std::chrono::seconds(1);

    /// An unmeasured backend, costing `initial` at `start` (decay_time > 0).
    explicit PeakEwma(SteadyTime start, std::chrono::nanoseconds initial = default_initial,
                      std::chrono::nanoseconds decay_time = default_decay_time) noexcept;

    /// A statement sent to the backend answered after `rtt`, at `now`.
    void observe(std::chrono::nanoseconds rtt, SteadyTime now) noexcept;

    /// The estimate at `now`, in nanoseconds: the last one decayed toward
    /// zero for the time since (a `now` before the last update counts as it).
    [[nodiscard]] double cost(SteadyTime now) const noexcept;

    [[nodiscard]] bool measured() const noexcept { return measured_; }

private:
    double estimate_ns_;
    double decay_ns_;
    SteadyTime updated_;
    bool measured_ = false;
};

/// The caller's deterministic generator (splitmix64): seeded, copyable, no
/// locks, so picks are repeatable in tests and cheap on the statement path.
struct SplitMix64 {
    std::uint64_t state = 0x9e3779b97f4a7c15ull;

    [[nodiscard]] std::uint64_t next() noexcept
    {
        std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    /// Uniform in [0, n) (n > 0; the modulo bias is n / 2^64).
    [[nodiscard]] std::size_t below(std::size_t n) noexcept { return static_cast<std::size_t>(next() % n); }
};

/// One of `candidates` (indexes into `view`, not empty): the better of two
/// distinct random ones, the lower score = cost × (in_flight + 1) / weight
/// winning (a coin flip on equal scores); a single candidate directly.
/// Candidates of weight 0 are left out while any other remains (all of weight
/// 0: all are drawn from, as weight 1). `in_flight` and `latency` are indexed
/// like view.backends; a backend past their end counts as 0 in flight and as
/// a just-created PeakEwma (cost default_initial).
[[nodiscard]] std::size_t pick_adaptive(const ClusterView& view, std::span<const std::size_t> candidates,
                                        std::span<const int> in_flight, std::span<const PeakEwma> latency,
                                        SteadyTime now, SplitMix64& rng) noexcept;

}  // namespace pgswitch::routing
