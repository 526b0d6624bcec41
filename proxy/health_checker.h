// Periodic health checks: one connection and one query per backend per
// interval, reading role and WAL position (ARCHITECTURE.md §4 "one query for
// role and lag"). Publishes a new ClusterView after every round.
#pragma once

#include <memory>
#include <vector>

#include "asio_common.h"
#include "backend_connection.h"
#include "config.h"
#include "routing/cluster_view.h"
#include "routing/failover_policy.h"

namespace pgswitch::proxy {

class ClusterCoordinator;
class Runtime;

/// One completed failover, for /status and the logs.
struct FailoverRecord {
    std::string at;  ///< RFC 3339 UTC
    std::string from;
    std::string to;
    std::string reason;
    double duration_ms = 0;
    std::optional<std::uint64_t> promoted_lsn;  ///< new primary's position when promoted
    /// Asynchronous replication: WAL the old primary had (last seen) that the
    /// promoted replica never received.
    std::uint64_t unreceived_bytes = 0;
};

class HealthChecker {
public:
    /// POST /failover: promote `target` (or the best replica) now. Returns an
    /// error message, or nullopt when the promotion was started.
    [[nodiscard]] std::optional<std::string> manual_failover(std::optional<std::string> target);
    [[nodiscard]] const std::vector<FailoverRecord>& failover_history() const noexcept { return history_; }
    [[nodiscard]] bool failover_running() const noexcept { return failover_running_; }
    /// The failover policy's current complaint (no primary, several primaries),
    /// "" while one healthy primary takes writes: /status failover.reason.
    [[nodiscard]] const std::string& failover_problem() const noexcept { return problem_; }

    explicit HealthChecker(Runtime& runtime);
    ~HealthChecker();

    void start();
    void stop() noexcept;
    /// Starts the next round now instead of at the end of the interval.
    void check_now() noexcept;
    /// A session's server connection to `backend` ended with a fast-shutdown
    /// FATAL (57P01 "administrator command"): the server is stopping on
    /// purpose, so health.restart_grace_ms applies to its failed checks.
    void restart_announced(const std::string& backend);
    /// Reconciles the backend list after a reload: kept names keep their
    /// state and connection, new ones start unknown, removed ones go.
    void set_backends(const std::vector<BackendConfig>& backends);

    // ---- operator states (admin API, failover) -------------------------------
    // Kept across health rounds and reloads (while the name stays): a drained
    // or fenced backend is published as such whatever its checks say, and
    // checks keep running, so enabling it shows its real health at once.
    /// Takes a backend out of rotation (true) or puts it back (false).
    /// Returns false for an unknown name. Publishes a new view.
    bool set_drained(std::string_view name, bool drained);
    /// Fences a backend (an old primary after failover) or lifts the fence.
    bool set_fenced(std::string_view name, bool fenced, std::string reason = "fenced by pgswitch");
    /// Several instances: takes the fenced nodes and the primary from the
    /// topology in etcd (ClusterCoordinator) and republishes the view.
    void follow_topology();

private:
    struct Node;
    awaitable<void> run();
    [[nodiscard]] routing::FailoverInput failover_input() const;
    /// The failover policy's next step for `in`; keeps failover_problem()
    /// and logs a reason when it changes.
    [[nodiscard]] routing::FailoverDecision decide(const routing::FailoverInput& in);
    awaitable<void> apply_failover_policy();
    awaitable<void> apply_cluster_policy(ClusterCoordinator& coord);
    awaitable<void> promote(std::string candidate, std::string old_primary, std::string reason);
    /// POST /failover: records the promotion first when instances share a topology.
    awaitable<void> promote_requested(std::string candidate, std::string old_primary);
    /// A health query's answer: role and positions; the failure text when it makes no sense.
    [[nodiscard]] std::string record_answer(Node& node, const QueryRows& answer);
    /// A failed check: counts it, and marks the node down when the rules say so.
    void record_failure(Node& node, const std::string& failure, const std::string& failure_state);
    awaitable<void> check(std::shared_ptr<Node> node);
    void publish();

    Runtime& runtime_;
    std::vector<std::shared_ptr<Node>> nodes_;
    asio::steady_timer wake_;
    bool stopped_ = false;
    std::uint64_t generation_ = 0;
    std::optional<std::string> last_primary_;
    std::string last_reason_;
    std::string problem_;
    bool failover_running_ = false;
    std::vector<FailoverRecord> history_;
};

}  // namespace pgswitch::proxy
