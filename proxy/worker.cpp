#include "worker.h"

#include "log.h"

namespace pgswitch::proxy {
namespace {
thread_local Worker* current_worker = nullptr;
}  // namespace

void WorkerStats::add(const WorkerStats& other)
{
    for (const auto& [name, c] : other.queries) {
        auto& mine = queries[name];
        mine.reads += c.reads;
        mine.writes += c.writes;
    }
    for (const auto& [name, n] : other.in_flight)
        in_flight[name] += n;
    misroutes += other.misroutes;
    replay_waits_reached += other.replay_waits_reached;
    replay_waits_missed += other.replay_waits_missed;
    query_latency.merge(other.query_latency);
    for (const auto& [reason, n] : other.route_decisions)
        route_decisions[reason] += n;
    cache_hits += other.cache_hits;
    cache_misses += other.cache_misses;
    cache_size += other.cache_size;
    cache_capacity += other.cache_capacity;
    for (const auto& [name, c] : other.pool_by_backend) {
        auto& mine = pool_by_backend[name];
        mine.open += c.open;
        mine.idle += c.idle;
        mine.waiting += c.waiting;
    }
    pool_total.open += other.pool_total.open;
    pool_total.idle += other.pool_total.idle;
    pool_total.waiting += other.pool_total.waiting;
}

Worker::Worker(std::size_t index, SettingsPtr s, routing::ClusterViewPtr c)
    : settings(std::move(s)),
      cluster(std::move(c)),
      index_(index)
{
    // Workers draw different adaptive picks (and differ from run to run).
    const auto t = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    balancer.seed(t ^ ((index + 1) * 0x9e3779b97f4a7c15ull));
}

Worker::~Worker()
{
    stop();
    join();
}

Worker* Worker::current() noexcept
{
    return current_worker;
}

void Worker::start()
{
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] {
        current_worker = this;
        for (;;) {
            try {
                io_.run();
                break;
            } catch (const std::exception& e) {
                // Sessions catch their own failures; anything reaching here is
                // a bug elsewhere: log it and keep the loop serving.
                log::error("worker ", index_, ": ", e.what());
            }
        }
        current_worker = nullptr;
    });
}

void Worker::stop()
{
    work_.reset();
    io_.stop();
}

void Worker::join()
{
    if (thread_.joinable())
        thread_.join();
}

WorkerStats Worker::snapshot(const std::vector<std::string>& backends) const
{
    WorkerStats s = stats;
    s.cache_hits = statement_cache.hits();
    s.cache_misses = statement_cache.misses();
    s.cache_size = statement_cache.size();
    s.cache_capacity = statement_cache.capacity();
    for (const auto& name : backends)
        s.pool_by_backend[name] = pool.counts(name);
    s.pool_total = pool.counts();
    return s;
}

BackendLoad& BackendLoads::of(const std::string& backend)
{
    if (auto it = by_name_.find(backend); it != by_name_.end())
        return it->second;
    auto all = board_->slots(backend);
    auto& mine = all->of(worker_);
    return by_name_.try_emplace(backend, std::chrono::steady_clock::now(), std::move(all), mine).first->second;
}

routing::Load BackendLoads::figures(const routing::ClusterView& view, routing::SteadyTime now)
{
    // A few backends: copying their figures costs less than keeping arrays
    // aligned with every view; the vectors keep their storage.
    in_flight_.clear();
    latency_.clear();
    for (const auto& b : view.backends) {
        const auto& load = of(b.name);
        in_flight_.push_back(load.all_workers->total());
        latency_.push_back(load.latency);
    }
    return routing::Load{in_flight_, latency_, now};
}

}  // namespace pgswitch::proxy
