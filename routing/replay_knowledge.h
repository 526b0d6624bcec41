// What the replay waits taught about each replica's replay position, fresher
// than the health round's: positions a replica was seen to reach, and ones it
// recently failed to reach in time (so that reads needing them go straight to
// the primary for a while instead of each waiting in vain). Pure: time is
// passed in. One per worker, shared by its sessions.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "routing/cluster_view.h"

namespace pgswitch::routing {

class ReplayKnowledge {
public:
    using Clock = std::chrono::steady_clock;

    /// `backend` was seen past `lsn`.
    void reached(std::string_view backend, std::uint64_t lsn);
    /// A wait for `lsn` on `backend` fell short at `now`.
    void missed(std::string_view backend, std::uint64_t lsn, Clock::time_point now);

    /// Positions reached, by `view` index (0 where unknown).
    [[nodiscard]] std::vector<std::uint64_t> reached_positions(const ClusterView& view) const;
    /// By `view` index: a position the replica failed to reach within
    /// `memory` before `now` (0 where none): it is behind anything at or past it.
    [[nodiscard]] std::vector<std::uint64_t> behind_positions(const ClusterView& view, Clock::time_point now,
                                                              Clock::duration memory) const;

private:
    struct Entry {
        std::string backend;
        std::uint64_t reached = 0;
        std::uint64_t missed = 0;  ///< lowest position missed since the last one reached past it
        Clock::time_point missed_at{};
    };
    Entry& entry(std::string_view backend);
    std::vector<Entry> entries_;
};

}  // namespace pgswitch::routing
