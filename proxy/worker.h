// One event-loop worker (proxy.workers): an io_context on its own thread,
// the sessions accepted onto it, and the routing state they use. Workers
// share nothing mutable: the configuration and the cluster snapshot are
// immutable objects each worker holds its own pointer to (replaced by a post
// from the main loop when a new one is published); counters are per worker
// and summed by the admin API on the workers' own threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "admin/metrics.h"
#include "asio_common.h"
#include "routing/cluster_view.h"
#include "in_flight.h"
#include "wakeup.h"
#include "routing/replay_knowledge.h"
#include "routing/router.h"
#include "routing/statement_cache.h"
#include "server_pool.h"

namespace pgswitch::proxy {

struct Settings;
using SettingsPtr = std::shared_ptr<const Settings>;

/// What one worker counted; summed over workers for /status and /metrics.
struct WorkerStats {
    struct QueryCounts {
        std::uint64_t reads = 0;
        std::uint64_t writes = 0;
    };
    std::unordered_map<std::string, QueryCounts> queries;  ///< per backend
    std::unordered_map<std::string, int> in_flight;        ///< per backend, all workers (Runtime::stats() fills it)
    std::uint64_t misroutes = 0;
    std::uint64_t replay_waits_reached = 0;
    std::uint64_t replay_waits_missed = 0;
    admin::LatencyHistogram query_latency;
    std::map<routing::Reason, std::uint64_t> route_decisions;
    std::uint64_t cache_hits = 0;
    std::uint64_t cache_misses = 0;
    std::size_t cache_size = 0;
    std::size_t cache_capacity = 0;
    /// Transaction pooling: per backend, and over everything.
    std::unordered_map<std::string, ServerPool::Counts> pool_by_backend;
    ServerPool::Counts pool_total;

    void add(const WorkerStats& other);
};

/// One worker's load on one backend: what its sessions have running there
/// (also published in the worker's InFlightBoard slot, for the total over
/// all workers) and how fast it has been answering them.
struct BackendLoad {
    BackendLoad(routing::SteadyTime since, std::shared_ptr<InFlightBoard::Slots> all, InFlightBoard::Slot& mine)
        : latency(since),
          all_workers(std::move(all)),
          slot(&mine)
    {
    }
    /// A client statement started (+1) or ended (-1) here.
    void add(int delta) noexcept
    {
        in_flight += delta;
        slot->n.store(in_flight, std::memory_order_relaxed);
    }

    int in_flight = 0;          ///< this worker's client statements sent and not yet answered
    routing::PeakEwma latency;  ///< their recent response times (adaptive balancing)
    std::shared_ptr<InFlightBoard::Slots> all_workers;
    InFlightBoard::Slot* slot;
};

/// A worker's BackendLoad per backend name (entries never move nor go: links
/// keep their address), and the figures the router reads, aligned with a
/// cluster view's backends (copied into reused arrays at each pick): the
/// statements in flight over all workers, this worker's response times.
class BackendLoads {
public:
    /// Before first use: the board shared by the workers and this one's index there.
    void attach(InFlightBoard& board, std::size_t worker) noexcept
    {
        board_ = &board;
        worker_ = worker;
    }
    [[nodiscard]] BackendLoad& of(const std::string& backend);
    /// The figures of `view`'s backends for a pick at `now`; valid until the next call.
    [[nodiscard]] routing::Load figures(const routing::ClusterView& view, routing::SteadyTime now);

private:
    InFlightBoard* board_ = nullptr;
    std::size_t worker_ = 0;
    std::unordered_map<std::string, BackendLoad> by_name_;
    std::vector<int> in_flight_;
    std::vector<routing::PeakEwma> latency_;
};

class Worker {
    // First member, destroyed last: the sockets and timers of everything
    // below (pooled connections, sessions' coroutines) belong to it.
    asio::io_context io_{1};

public:
    Worker(std::size_t index, SettingsPtr settings, routing::ClusterViewPtr cluster);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    /// Starts the thread running the loop.
    void start();
    /// Lets the loop end once its work is done, and stops it.
    void stop();
    /// Waits for the thread (after stop()).
    void join();

    [[nodiscard]] std::size_t index() const noexcept { return index_; }
    [[nodiscard]] asio::io_context& io() noexcept { return io_; }
    /// The worker whose thread is calling, or null (the main loop's thread).
    [[nodiscard]] static Worker* current() noexcept;

    /// Runs `fn` on this worker's thread and waits for it (at most `timeout`);
    /// nullopt when the worker did not answer in time (the task may still
    /// run later: capture by value). Never call it from this worker's own
    /// thread.
    template <class F>
    auto call(F fn, std::chrono::milliseconds timeout = std::chrono::seconds(2)) -> std::optional<decltype(fn())>
    {
        using R = decltype(fn());
        auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
        auto result = task->get_future();
        asio::post(io_, [task] { (*task)(); });
        if (result.wait_for(timeout) != std::future_status::ready)
            return std::nullopt;
        return result.get();
    }

    // ---- used on the worker's own thread only -----------------------------
    SettingsPtr settings;
    routing::ClusterViewPtr cluster;
    /// Notified whenever `cluster` is replaced: sessions waiting for a
    /// primary (or any server) look again.
    Wakeup cluster_changed;
    routing::StatementCache statement_cache;
    routing::BalancerState balancer;
    /// What this worker's sessions' replay waits learned of replica positions.
    routing::ReplayKnowledge replay_knowledge;
    WorkerStats stats;  ///< cache_* and pool_* filled in by snapshot()
    /// Transaction pooling's server connections of this worker's sessions.
    ServerPool pool;
    /// What this worker's sessions have running on each backend, and how fast
    /// each answered them (least_connections, adaptive).
    BackendLoads loads;

    /// A copy of stats with the statement cache's and the pool's counters
    /// (pool counts for the named backends).
    [[nodiscard]] WorkerStats snapshot(const std::vector<std::string>& backends) const;

private:
    std::size_t index_;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
    std::thread thread_;
};

}  // namespace pgswitch::proxy
