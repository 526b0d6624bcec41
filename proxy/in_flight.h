// Statements running on each backend, counted over all workers without a
// lock on the statement path: one atomic counter per backend name, looked up
// (under a lock) once per server link and once per cluster view, then
// counted with relaxed atomics. least_connections reads them; so do the
// admin API and backend removal.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace pgswitch::proxy {

class InFlightCounters {
public:
    using Counter = std::shared_ptr<std::atomic<int>>;

    /// The counter of `backend` (created at zero when new); keep it.
    [[nodiscard]] Counter counter(const std::string& backend)
    {
        std::lock_guard lock(mutex_);
        auto& c = counters_[backend];
        if (!c)
            c = std::make_shared<std::atomic<int>>(0);
        return c;
    }

    /// Every backend's count now.
    [[nodiscard]] std::unordered_map<std::string, int> snapshot() const
    {
        std::lock_guard lock(mutex_);
        std::unordered_map<std::string, int> out;
        for (const auto& [name, c] : counters_)
            out[name] = c->load(std::memory_order_relaxed);
        return out;
    }

private:
    mutable std::mutex mutex_;
    std::map<std::string, Counter> counters_;
};

}  // namespace pgswitch::proxy
