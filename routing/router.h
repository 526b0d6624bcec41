// choose_target(): which backend runs a request, from what the request is,
// what the session did before, and the current cluster snapshot (SPEC §3).
// Pure: the caller passes the balancer state and the client's address in.
#pragma once

#include <boost/container/small_vector.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "routing/adaptive_balancer.h"
#include "routing/cluster_view.h"

namespace pgswitch::routing {

enum class LoadBalancing { round_robin, least_connections, ip_hash, adaptive };
enum class ReadYourWrites { lsn, session, off };

/// The routing settings the decision needs (a copy of [routing]).
struct Policy {
    LoadBalancing load_balancing = LoadBalancing::round_robin;
    bool primary_reads = false;
    std::uint64_t max_replica_lag_bytes = 16777216;
    ReadYourWrites read_your_writes = ReadYourWrites::lsn;
    /// routing.read_your_writes_wait_ms: how long a read may wait on a replica
    /// for it to replay the session's last write (0: never wait).
    std::uint32_t read_your_writes_wait_ms = 20;
};

/// What is being routed, reduced to what the decision needs.
struct RouteRequest {
    bool write = true;            ///< must run on the primary
    bool prefer_primary = false;  ///< /* pgswitch:primary */ hint on a read
    bool prefer_replica = false;  ///< /* pgswitch:replica */ hint (ignored for writes)
    /// The caller can run a replay wait on a replica ahead of this read and
    /// re-run it on the primary if the wait times out (an autocommit request
    /// it keeps): a read after a write then need not go to the primary.
    bool can_wait = false;
};

/// The session's history that constrains reads.
struct SessionConstraints {
    bool pinned_to_primary = false;  ///< temp tables, session locks, LISTEN, WITH HOLD
    bool wrote = false;              ///< read_your_writes = session: a write happened
    /// read_your_writes = lsn: replicas must have replayed at least this far.
    std::optional<std::uint64_t> min_lsn;
    /// The session's last write is committed but its position is not known
    /// yet (a read pipelined right behind it): no replica can be proven fresh.
    bool lsn_pending = false;
    /// Replay positions learned from replay waits (ReplayKnowledge), by view
    /// index, 0 where unknown; fresher than the health round's.
    std::span<const std::uint64_t> known_replay;
    /// By view index: a position the replica recently failed to reach in
    /// time (0: none). No read needing that much waits there.
    std::span<const std::uint64_t> known_behind;
};

/// Why a target was chosen (for /routing/explain, logs and counters).
enum class Reason {
    write,                  ///< writes go to the primary
    pinned,                 ///< the session is pinned to the primary
    hint_primary,           ///< /* pgswitch:primary */
    read_your_writes,       ///< no replica has the session's last write yet
    read_your_writes_wait,  ///< a replica that must first replay the session's last write
    replica,                ///< a read on a replica
    primary_read,           ///< a read balanced onto the primary (primary_reads = true)
    no_replica,             ///< a read with no usable replica: the primary
    no_primary,             ///< a write with no usable primary: wait or fail (57P03)
    no_backend,             ///< nothing usable at all
};
[[nodiscard]] std::string_view to_string(Reason r) noexcept;

struct Decision {
    std::optional<std::size_t> backend;  ///< index into ClusterView::backends
    Reason reason = Reason::no_backend;
    /// Reason::read_your_writes_wait: the read may run on `backend` once it
    /// has replayed this far (the caller waits there, up to the policy's
    /// read_your_writes_wait_ms, else re-runs the read on the primary).
    std::optional<std::uint64_t> wait_lsn;

    Decision() = default;
    Decision(std::optional<std::size_t> b, Reason r, std::optional<std::uint64_t> wait = std::nullopt)
        : backend(b),
          reason(r),
          wait_lsn(wait)
    {
    }
};

/// Per-backend live figures the balancer reads (indexed like the view; left
/// empty when the policy reads none: a backend past a span's end counts as
/// idle and unmeasured).
struct Load {
    std::span<const int> in_flight;     ///< statements running now (least_connections, adaptive)
    std::span<const PeakEwma> latency;  ///< recent response times (adaptive)
    SteadyTime now{};                   ///< when the pick happens (adaptive)
};
/// The policy's balancer reads the live figures.
[[nodiscard]] constexpr bool reads_load(LoadBalancing lb) noexcept
{
    return lb == LoadBalancing::least_connections || lb == LoadBalancing::adaptive;
}

/// Balancer memory: the smooth weighted round-robin counters (nginx's
/// algorithm), one per backend name. Owned by the caller, one per worker.
class BalancerState {
public:
    /// Picks among `candidates` (indexes into `view`) by weight, spreading
    /// evenly: with weights 5,1,1 the order is a,a,b,a,c,a,a (never 5 in a row).
    [[nodiscard]] std::size_t pick_round_robin(const ClusterView& view, std::span<const std::size_t> candidates);
    /// The generator adaptive picks draw from (seed it differently per worker).
    [[nodiscard]] SplitMix64& random() noexcept { return random_; }
    void seed(std::uint64_t seed) noexcept { random_.state = seed; }

private:
    SplitMix64 random_;
    std::vector<std::pair<std::string, std::int64_t>> current_;
    std::int64_t& current_for(const std::string& name);
};

/// Rendezvous (highest random weight) hashing: each candidate scores
/// -weight / ln(hash(client, name) in (0,1)); the highest wins. Adding a
/// replica moves only the clients it now wins; removing one moves only its own.
[[nodiscard]] std::size_t pick_rendezvous(const ClusterView& view, std::span<const std::size_t> candidates,
                                          std::string_view client_key);

/// Fewest statements in flight per unit of weight; ties go round robin.
[[nodiscard]] std::size_t pick_least_connections(const ClusterView& view, std::span<const std::size_t> candidates,
                                                 std::span<const int> in_flight, BalancerState& state);

/// One of `candidates` (not empty) by the policy's balancer.
[[nodiscard]] std::size_t pick(std::span<const std::size_t> candidates, const ClusterView& view, const Policy& policy,
                               BalancerState& state, std::string_view client_key, const Load& load);

/// The decision itself. Writes (and pinned or read-your-writes reads) go to
/// the primary; other reads to an up, non-lagging replica (fresh enough for
/// min_lsn), chosen by the policy's balancer, with the primary among the
/// candidates when primary_reads is set; no replica → the primary.
[[nodiscard]] Decision choose_target(const RouteRequest& request, const SessionConstraints& session,
                                     const ClusterView& view, const Policy& policy, BalancerState& state,
                                     std::string_view client_key, const Load& load);

/// Replicas that may serve a read under `session` (up, not lagging, fresh).
/// Backend indexes; inline up to a cluster's usual size (no allocation per statement).
using Candidates = boost::container::small_vector<std::size_t, 8>;

[[nodiscard]] Candidates eligible_replicas(const ClusterView& view, const Policy& policy,
                                           const SessionConstraints& session);

/// Where a new session logs in, in order of preference: the usable primary,
/// then every up replica (so that logins and reads go on during a failover);
/// a primary that failed its last check comes after the replicas.
[[nodiscard]] std::vector<std::size_t> login_order(const ClusterView& view);

/// Whether replica `index` is known to have replayed `lsn`: by the health
/// round's position or by one the session learned.
[[nodiscard]] bool known_fresh(const ClusterView& view, std::size_t index, std::uint64_t lsn,
                               std::span<const std::uint64_t> known_replay) noexcept;

}  // namespace pgswitch::routing
