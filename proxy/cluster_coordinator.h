// Several pgswitch instances as one (SPEC §9, issue 11): this instance's
// registration and its campaign for the leader lease in etcd, the topology it
// follows (written only by the leader: primary, fenced nodes, failover
// history, an epoch that only grows), the backend list every instance shares,
// and the fail-closed rule (no etcd for lease_ttl_ms: no writes). Runs on the
// main loop, beside the health checker, which asks it before any promotion.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "asio_common.h"
#include "config.h"
#include "etcd_client.h"
#include "routing/topology.h"

namespace pgswitch::proxy {

class Runtime;

class ClusterCoordinator {
public:
    using Clock = std::chrono::steady_clock;

    ClusterCoordinator(Runtime& runtime, const Config& config);
    void start();
    void stop() noexcept;

    // ---- what the health checker and the sessions follow (main loop) -------
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    /// "host:port" other instances forward cancels to (a wildcard listener
    /// registers the machine's host name).
    [[nodiscard]] const std::string& listen_address() const noexcept { return listen_; }
    /// 1..127 once registered (carried in secret keys), else 0.
    [[nodiscard]] int instance_id() const noexcept { return id_; }
    [[nodiscard]] const routing::Topology& topology() const noexcept { return topology_; }
    /// The topology has been read from etcd at least once.
    [[nodiscard]] bool has_topology() const noexcept { return topology_seen_; }
    /// This instance holds the leader lease, renewed recently enough that it
    /// cannot have expired in etcd (a margin of a third of the TTL).
    [[nodiscard]] bool is_leader() const noexcept;
    /// "" while writes may go out; else why not (etcd out of reach for
    /// longer than the lease TTL: another instance may be promoting).
    [[nodiscard]] std::string writes_blocked() const;

    /// Leader only: records the promotion of `candidate` in place of
    /// `old_primary` (epoch + 1, the old primary fenced unless `fence_old`
    /// is false) before anything is done to the servers. True when it was
    /// recorded (this instance may go on).
    [[nodiscard]] awaitable<bool> record_promotion(const std::string& candidate, const std::string& old_primary,
                                                   const std::string& reason, bool fence_old = true);
    /// Leader only: records the primary writes go to when none was (start-up).
    [[nodiscard]] awaitable<bool> record_primary(const std::string& primary);
    /// Leader only: fences `name` (a second node claiming primary).
    [[nodiscard]] awaitable<bool> record_fence(const std::string& name, const std::string& reason);
    /// Any instance (POST /backends/{name}/enable): lifts a fence.
    [[nodiscard]] awaitable<bool> lift_fence(const std::string& name);
    /// Any instance: changes the shared backend list with `change` (a
    /// compare-and-swap, retried); "" on success, else what went wrong.
    using BackendChange = std::function<std::string(std::vector<routing::SharedBackend>&)>;
    [[nodiscard]] awaitable<std::string> change_backends(BackendChange change);

    /// Another instance by the id in a secret key.
    [[nodiscard]] std::optional<routing::InstanceInfo> instance(int id) const;

    struct Status {
        std::string name;
        std::string leader;  ///< "" when none
        std::uint64_t epoch = 0;
        std::optional<double> etcd_seen_ms_ago;  ///< nullopt: never reached
        std::string endpoint;                    ///< the etcd member last talked to
        std::vector<routing::InstanceInfo> instances;
        std::string writes_blocked;
    };
    [[nodiscard]] Status status() const;

private:
    awaitable<void> run();
    /// Lease, id and registration; true when this instance is registered.
    [[nodiscard]] awaitable<bool> register_instance();
    [[nodiscard]] awaitable<void> keep_alive();
    /// Reads everything under the prefix and applies what changed.
    [[nodiscard]] awaitable<bool> poll();
    /// Takes the leader key when nobody holds it.
    awaitable<void> campaign();
    /// Writes `next` as the topology if it is still the one last read.
    [[nodiscard]] awaitable<bool> write_topology(const routing::Topology& next, bool leader_only);
    void seen(Clock::time_point request_started);
    void apply_backends(const std::vector<routing::SharedBackend>& shared);
    [[nodiscard]] std::string key(std::string_view suffix) const { return prefix_ + "/" + std::string(suffix); }

    Runtime& runtime_;
    EtcdClient etcd_;
    std::string prefix_;
    std::string name_;
    std::chrono::milliseconds ttl_;
    std::string listen_;
    std::string admin_;
    std::vector<BackendConfig> seed_backends_;

    std::int64_t lease_ = 0;
    int id_ = 0;
    std::string leader_;
    std::int64_t leader_lease_ = 0;
    routing::Topology topology_;
    bool topology_seen_ = false;
    std::int64_t topology_revision_ = 0;  ///< mod_revision of the topology key last read (0: absent)
    std::vector<routing::SharedBackend> backends_;
    std::int64_t backends_revision_ = 0;
    std::vector<routing::InstanceInfo> instances_;
    std::optional<Clock::time_point> etcd_seen_;      ///< start of the last request etcd answered
    std::optional<Clock::time_point> lease_renewed_;  ///< start of the last successful keepalive
    bool blocked_ = false;                            ///< writes_blocked() was non-empty at the last check
    bool stopped_ = false;
    asio::steady_timer wake_;
};

}  // namespace pgswitch::proxy
