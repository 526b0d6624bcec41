// Immutable snapshot of the cluster as the health checker last saw it.
// Pure value types: sessions hold a shared_ptr<const ClusterView> for one decision.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::routing {

/// What a backend reports it is (never configured: SPEC §2 "roles are discovered").
enum class Role {
    unknown,  ///< never reached, or not checked yet
    primary,  ///< pg_is_in_recovery() = false
    replica,  ///< pg_is_in_recovery() = true
};

/// Whether a backend may get traffic.
enum class BackendState {
    up,       ///< passing health checks
    down,     ///< failure_threshold checks failed in a row
    fenced,   ///< an old primary kept out after failover until an operator enables it
    drained,  ///< taken out of rotation by an operator
};

[[nodiscard]] std::string_view to_string(Role r) noexcept;
[[nodiscard]] std::string_view to_string(BackendState s) noexcept;

/// One backend as last observed.
struct BackendView {
    std::string name;
    std::string host;
    std::uint16_t port = 0;
    int weight = 1;
    Role role = Role::unknown;
    BackendState state = BackendState::down;
    int consecutive_failures = 0;
    std::string last_error;                    ///< why the last check failed, "" when it passed
    std::optional<std::uint64_t> wal_lsn;      ///< current (primary) or replay (replica) position
    std::optional<std::uint64_t> receive_lsn;  ///< replica: WAL received (failover picks the most)
    /// Replica only: bytes of WAL the primary has that this replica has not
    /// replayed, from the same health round (nullopt when unknown).
    std::optional<std::uint64_t> lag_bytes;
    /// Replica only: too far behind to get reads. Set with hysteresis by
    /// update_lagging(), so a replica hovering at the limit does not flap.
    bool lagging = false;
    /// Why the backend is fenced ("" when it is not): shown by /status.
    std::string fence_reason;
};

/// Hysteresis for max_replica_lag_bytes: a replica starts lagging above the
/// limit and stops only once it is back under 3/4 of it.
[[nodiscard]] bool update_lagging(bool was_lagging, std::optional<std::uint64_t> lag_bytes,
                                  std::uint64_t max_lag_bytes) noexcept;

struct ClusterView {
    std::vector<BackendView> backends;
    std::uint64_t generation = 0;  ///< bumped on every publish
    /// Several instances (SPEC §9): the primary of the newest topology epoch
    /// this instance has seen; no other node takes writes, whatever it says.
    std::optional<std::string> designated_primary;
    /// Why no writes may be sent anywhere now ("" when they may): this
    /// instance has not reached etcd for longer than cluster.lease_ttl_ms.
    std::string writes_blocked;

    /// Index of the usable primary: the single backend that is up and
    /// reports primary (and is the designated one, when there is one). Two
    /// claiming primaries means none is usable (never write to two: SPEC §4);
    /// none while writes are blocked.
    [[nodiscard]] std::optional<std::size_t> primary_index() const noexcept;
    [[nodiscard]] const BackendView* find(std::string_view name) const noexcept;
};

using ClusterViewPtr = std::shared_ptr<const ClusterView>;

/// Parses a textual LSN "X/Y" (hex halves) into a byte position.
[[nodiscard]] std::optional<std::uint64_t> parse_lsn(std::string_view text) noexcept;
[[nodiscard]] std::string format_lsn(std::uint64_t lsn);

}  // namespace pgswitch::routing
