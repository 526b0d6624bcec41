// choose_target(): which backend runs a request, from what the request is,
// what the session did before, and the current cluster snapshot (SPEC §3).
// Pure: the caller passes the balancer state and the client's address in.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "routing/cluster_view.h"

namespace pgswitch::routing {

enum class LoadBalancing { round_robin, least_connections, ip_hash };
enum class ReadYourWrites { lsn, session, off };

/// The routing settings the decision needs (a copy of [routing]).
struct Policy {
    LoadBalancing load_balancing = LoadBalancing::round_robin;
    bool primary_reads = false;
    std::uint64_t max_replica_lag_bytes = 16777216;
    ReadYourWrites read_your_writes = ReadYourWrites::lsn;
};

/// What is being routed, reduced to what the decision needs.
struct RouteRequest {
    bool write = true;         ///< must run on the primary
    bool prefer_primary = false;  ///< /* pgswitch:primary */ hint on a read
    bool prefer_replica = false;  ///< /* pgswitch:replica */ hint (ignored for writes)
};

/// The session's history that constrains reads.
struct SessionConstraints {
    bool pinned_to_primary = false;  ///< temp tables, session locks, LISTEN, WITH HOLD
    bool wrote = false;              ///< read_your_writes = session: a write happened
    /// read_your_writes = lsn: replicas must have replayed at least this far.
    std::optional<std::uint64_t> min_lsn;
    /// The session's write is committed but its WAL position is not known
    /// yet: no replica can be proven fresh.
    bool lsn_pending = false;
};

/// Why a target was chosen (for /routing/explain, logs and counters).
enum class Reason {
    write,               ///< writes go to the primary
    pinned,              ///< the session is pinned to the primary
    hint_primary,        ///< /* pgswitch:primary */
    read_your_writes,    ///< no replica has the session's last write yet
    replica,             ///< a read on a replica
    primary_read,        ///< a read balanced onto the primary (primary_reads = true)
    no_replica,          ///< a read with no usable replica: the primary
    no_primary,          ///< a write with no usable primary: wait or fail (57P03)
    no_backend,          ///< nothing usable at all
};
[[nodiscard]] std::string_view to_string(Reason r) noexcept;

struct Decision {
    std::optional<std::size_t> backend;  ///< index into ClusterView::backends
    Reason reason = Reason::no_backend;
};

/// Per-backend live figures the balancer reads (indexed like the view).
struct Load {
    std::span<const int> in_flight;  ///< statements running now, for least_connections
};

/// Balancer memory: the smooth weighted round-robin counters (nginx's
/// algorithm), one per backend name. Owned by the caller, one per worker.
class BalancerState {
public:
    /// Picks among `candidates` (indexes into `view`) by weight, spreading
    /// evenly: with weights 5,1,1 the order is a,a,b,a,c,a,a (never 5 in a row).
    [[nodiscard]] std::size_t pick_round_robin(const ClusterView& view, std::span<const std::size_t> candidates);

private:
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

/// The decision itself. Writes (and pinned or read-your-writes reads) go to
/// the primary; other reads to an up, non-lagging replica (fresh enough for
/// min_lsn), chosen by the policy's balancer, with the primary among the
/// candidates when primary_reads is set; no replica → the primary.
[[nodiscard]] Decision choose_target(const RouteRequest& request, const SessionConstraints& session,
                                     const ClusterView& view, const Policy& policy, BalancerState& state,
                                     std::string_view client_key, std::span<const int> in_flight);

/// Replicas that may serve a read under `session` (up, not lagging, fresh).
[[nodiscard]] std::vector<std::size_t> eligible_replicas(const ClusterView& view, const Policy& policy,
                                                         const SessionConstraints& session);

}  // namespace pgswitch::routing
