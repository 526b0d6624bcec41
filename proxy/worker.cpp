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
    s.in_flight = loads.in_flight();
    return s;
}

const std::vector<const BackendLoad*>& BackendLoads::aligned_with(const routing::ClusterView& view)
{
    // A view's generation names its backend list; the address guards against
    // two views (this worker's and an older one a session still holds) that
    // share one.
    if (aligned_view_ != &view || aligned_generation_ != view.generation || aligned_.size() != view.backends.size()) {
        aligned_.clear();
        for (const auto& b : view.backends)
            aligned_.push_back(&by_name_[b.name]);
        aligned_view_ = &view;
        aligned_generation_ = view.generation;
    }
    return aligned_;
}

std::unordered_map<std::string, int> BackendLoads::in_flight() const
{
    std::unordered_map<std::string, int> out;
    for (const auto& [name, load] : by_name_)
        out[name] = load.in_flight;
    return out;
}

}  // namespace pgswitch::proxy
