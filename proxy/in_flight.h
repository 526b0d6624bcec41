// Statements in flight per backend, over all workers, with nothing written
// by two threads: each backend has one cache-line-sized slot per worker,
// written (a plain store, no locked read-modify-write) only by that worker,
// and summed by whoever reads the total (least_connections and adaptive
// picks, the admin API). A backend's slots are looked up (under a lock) once
// per name per worker, then used lock-free.
#pragma once

#include <atomic>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace pgswitch::proxy {

class InFlightBoard {
public:
    struct alignas(64) Slot {
        std::atomic<int> n{0};
    };
    /// One backend's slots, one per worker.
    class Slots {
    public:
        explicit Slots(std::size_t workers) : n_(workers), slots_(std::make_unique<Slot[]>(workers)) {}
        [[nodiscard]] Slot& of(std::size_t worker) noexcept { return slots_[worker]; }
        [[nodiscard]] int total() const noexcept
        {
            int sum = 0;
            for (std::size_t i = 0; i < n_; ++i)
                sum += slots_[i].n.load(std::memory_order_relaxed);
            return sum;
        }

    private:
        std::size_t n_;
        std::unique_ptr<Slot[]> slots_;
    };

    explicit InFlightBoard(std::size_t workers) : workers_(workers) {}

    /// The slots of `backend` (created when new); keep them.
    [[nodiscard]] std::shared_ptr<Slots> slots(const std::string& backend)
    {
        std::lock_guard lock(mutex_);
        auto& s = by_name_[backend];
        if (!s)
            s = std::make_shared<Slots>(workers_);
        return s;
    }

    /// Every backend's total now.
    [[nodiscard]] std::unordered_map<std::string, int> snapshot() const
    {
        std::lock_guard lock(mutex_);
        std::unordered_map<std::string, int> out;
        for (const auto& [name, s] : by_name_)
            out[name] = s->total();
        return out;
    }

private:
    std::size_t workers_;
    mutable std::mutex mutex_;
    std::map<std::string, std::shared_ptr<Slots>> by_name_;
};

}  // namespace pgswitch::proxy
