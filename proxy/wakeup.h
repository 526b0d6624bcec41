// A broadcast wake-up for coroutines on one event loop: waiters sleep until
// notify() or their own deadline, whichever comes first. Sessions waiting for
// a primary (a failover, start-up) wait on their worker's one, which a new
// cluster view notifies, instead of polling. Single-threaded: notify() and
// the waits run on the same loop.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include "asio_common.h"

namespace pgswitch::proxy {

class Wakeup {
public:
    using Clock = std::chrono::steady_clock;

    /// Wakes every coroutine waiting now.
    void notify()
    {
        for (auto* t : waiters_)
            t->cancel();
    }

    /// Sleeps until notify() or `deadline`.
    awaitable<void> wait_until(Clock::time_point deadline)
    {
        asio::steady_timer t(co_await asio::this_coro::executor, deadline);
        waiters_.push_back(&t);
        auto [ec] = co_await t.async_wait(use_nothrow);
        (void)ec;
        std::erase(waiters_, &t);
    }

    [[nodiscard]] std::size_t waiting() const noexcept { return waiters_.size(); }

private:
    std::vector<asio::steady_timer*> waiters_;
};

}  // namespace pgswitch::proxy
