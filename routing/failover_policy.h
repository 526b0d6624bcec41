// The failover decision (SPEC §4) as a pure function of what the health
// checker observed: no I/O, no clocks. The health checker executes it.
#pragma once

#include <chrono>
#include <string_view>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "routing/cluster_view.h"

namespace pgswitch::routing {

enum class FailoverMode { automatic, manual, external };

struct FailoverInput {
    struct Node {
        std::string name;
        Role role = Role::unknown;
        bool healthy = false;  ///< passing health checks (fewer than failure_threshold failures)
        bool fenced = false;
        bool drained = false;
        std::optional<std::uint64_t> receive_lsn;  ///< replicas: WAL received
        std::optional<std::uint64_t> replay_lsn;   ///< replicas: WAL replayed; primary: current
    };
    std::vector<Node> nodes;
    /// The primary writes were last sent to (nullopt before the first one was seen).
    std::optional<std::string> last_primary;
    FailoverMode mode = FailoverMode::automatic;
};

struct FailoverDecision {
    enum class Kind {
        none,     ///< nothing to do (see reason)
        promote,  ///< promote `candidate`, fence `old_primary`, re-point the other replicas
        fence,    ///< a second node claims to be primary: fence `candidate`
    };
    Kind kind = Kind::none;
    std::string candidate;
    std::string old_primary;
    std::string reason;
};

/// The replica to promote: healthy, not fenced or drained, with the most WAL
/// received (then replayed, then by name for a stable answer).
[[nodiscard]] std::optional<std::string> best_promotion_candidate(const FailoverInput& in);

/// The node writes go to: the one healthy, unfenced node reporting primary.
/// nullopt when none or several claim the role, so that a replica promoted
/// behind pgswitch's back never takes over FailoverInput::last_primary (the
/// caller keeps the previous value, and next_failover_action fences the newcomer).
[[nodiscard]] std::optional<std::string> sole_primary(const FailoverInput& in);

/// What to do now. `auto` promotes when no healthy primary remains and one
/// was seen before (never at start-up with no primary: that is a
/// configuration problem, not a failure); `manual` and `external` never
/// promote by themselves. A second claimant to the primary role is fenced in
/// auto/manual mode (never two primaries); external mode only reports it.
[[nodiscard]] FailoverDecision next_failover_action(const FailoverInput& in);

/// Whether a failed health check's error says the server is stopping or
/// starting on purpose: 57P03 ("the database system is shutting down",
/// "... is starting up") or 57P01 "terminating connection due to
/// administrator command" (a fast shutdown). A killed postmaster shows neither:
/// its connections are refused or end with "unexpected postmaster exit".
[[nodiscard]] bool announces_restart(std::string_view sqlstate, std::string_view message) noexcept;

/// The health verdict after `failures` failed checks in a row: down at
/// `threshold`, except while a backend that announced a shutdown (see
/// announces_restart) is within `grace` of that announcement: a restart
/// that comes straight back is not a dead server.
[[nodiscard]] bool is_down(int failures, int threshold, std::optional<std::chrono::milliseconds> since_announced,
                           std::chrono::milliseconds grace) noexcept;

}  // namespace pgswitch::routing
