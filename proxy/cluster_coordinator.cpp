#include "cluster_coordinator.h"

#include <unistd.h>

#include <ctime>

#include "health_checker.h"
#include "log.h"
#include "time_text.h"
#include "runtime.h"

namespace pgswitch::proxy {

namespace {

std::string host_name()
{
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0)
        std::snprintf(host, sizeof host, "pgswitch");
    return host;
}

std::string default_name(const Config& c)
{
    return host_name() + ":" + std::to_string(c.proxy.listen.port);
}

/// The address other instances reach `listen` at: a wildcard listener
/// (0.0.0.0, ::) is registered under this machine's host name.
std::string advertised(const Endpoint& listen)
{
    const bool wildcard = listen.host.empty() || listen.host == "0.0.0.0" || listen.host == "::" || listen.host == "*";
    return wildcard ? host_name() + ":" + std::to_string(listen.port) : listen.to_string();
}

/// etcd requests may not take longer than a third of the TTL: a slow member
/// must not eat the time an instance has before it fails closed.
std::chrono::milliseconds request_timeout(std::chrono::milliseconds ttl)
{
    return std::clamp(ttl / 3, std::chrono::milliseconds(200), std::chrono::milliseconds(1000));
}

/// How often the instance reads the shared state: a follower learns of a
/// new primary within this (besides its own health checks).
std::chrono::milliseconds poll_interval(std::chrono::milliseconds ttl)
{
    return std::clamp(ttl / 10, std::chrono::milliseconds(50), std::chrono::milliseconds(300));
}

// Compare and op lists are built outside co_await expressions: g++ 12
// mishandles braced temporaries there ("array used as initializer").
std::vector<EtcdCompare> key_absent(const std::string& key)
{
    return {EtcdCompare{key, EtcdCompare::Target::create_revision, 0, std::string()}};
}

std::vector<EtcdOp> put_op(const std::string& key, std::string value, std::int64_t lease)
{
    return {EtcdOp{key, std::move(value), lease}};
}

std::vector<routing::SharedBackend> shared_from(const std::vector<BackendConfig>& list)
{
    std::vector<routing::SharedBackend> out;
    for (const auto& b : list)
        out.push_back({b.name, b.host, b.port, b.weight, false});
    return out;
}

}  // namespace

ClusterCoordinator::ClusterCoordinator(Runtime& runtime, const Config& config)
    : runtime_(runtime),
      etcd_(runtime.io().get_executor(), config.cluster.etcd,
            request_timeout(std::chrono::milliseconds(config.cluster.lease_ttl_ms))),
      prefix_(config.cluster.prefix),
      name_(config.cluster.name.empty() ? default_name(config) : config.cluster.name),
      ttl_(config.cluster.lease_ttl_ms),
      listen_(advertised(config.proxy.listen)),
      admin_(advertised(config.admin.listen)),
      seed_backends_(config.backends),
      wake_(runtime.io())
{
}

void ClusterCoordinator::start()
{
    log::info("cluster: instance ", name_, " on etcd ", etcd_.endpoint(), " (prefix ", prefix_, ", lease ",
              ttl_.count(), " ms)");
    asio::co_spawn(runtime_.io(), run(), log::stopped_by_exception("cluster coordinator"));
}

void ClusterCoordinator::stop() noexcept
{
    stopped_ = true;
    wake_.cancel();
}

bool ClusterCoordinator::is_leader() const noexcept
{
    return lease_ != 0 && leader_ == name_ && leader_lease_ == lease_ && lease_renewed_ &&
           Clock::now() - *lease_renewed_ < ttl_ * 2 / 3;
}

std::string ClusterCoordinator::writes_blocked() const
{
    if (!etcd_seen_)
        return "etcd not reached yet: writes wait until this instance can confirm the primary";
    const auto ago = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - *etcd_seen_);
    if (ago > ttl_)
        return "etcd not reached for " + std::to_string(ago.count()) +
               " ms (cluster.lease_ttl_ms = " + std::to_string(ttl_.count()) +
               "): another instance may be changing the primary";
    return {};
}

void ClusterCoordinator::seen(Clock::time_point request_started)
{
    if (!etcd_seen_ || *etcd_seen_ < request_started)
        etcd_seen_ = request_started;
}

std::optional<routing::InstanceInfo> ClusterCoordinator::instance(int id) const
{
    for (const auto& i : instances_)
        if (i.id == id)
            return i;
    return std::nullopt;
}

ClusterCoordinator::Status ClusterCoordinator::status() const
{
    Status s;
    s.name = name_;
    s.leader = leader_;
    s.epoch = topology_.epoch;
    if (etcd_seen_)
        s.etcd_seen_ms_ago = std::chrono::duration<double, std::milli>(Clock::now() - *etcd_seen_).count();
    s.endpoint = etcd_.endpoint();
    s.instances = instances_;
    s.writes_blocked = writes_blocked();
    return s;
}

awaitable<void> ClusterCoordinator::run()
{
    while (!stopped_) {
        if (lease_ == 0)
            (void)co_await register_instance();
        if (lease_ != 0 && (!lease_renewed_ || Clock::now() - *lease_renewed_ >= ttl_ / 3))
            co_await keep_alive();
        (void)co_await poll();
        // Crossing the TTL without etcd (or getting it back) changes where
        // writes may go: republish the cluster view at once.
        const bool blocked = !writes_blocked().empty();
        if (blocked != blocked_) {
            blocked_ = blocked;
            if (blocked)
                log::warning("cluster: ", writes_blocked(), "; no writes until it is reached again");
            else
                log::info("cluster: etcd reached; writes go to ",
                          topology_.primary.empty() ? "the primary" : topology_.primary);
            if (auto* h = runtime_.health())
                h->follow_topology();
        }
        if (stopped_)
            break;
        wake_.expires_after(poll_interval(ttl_));
        auto [ec] = co_await wake_.async_wait(use_nothrow);
        (void)ec;
    }
    if (lease_ != 0)
        (void)co_await etcd_.revoke(lease_);  // leave at once: another instance may lead now
}

awaitable<bool> ClusterCoordinator::register_instance()
{
    const auto started = Clock::now();
    auto lease = co_await etcd_.grant_lease(ttl_);
    if (!lease) {
        log::warning("cluster: could not get a lease from etcd: ", lease.error);
        co_return false;
    }
    seen(started);
    lease_ = *lease.value;
    lease_renewed_ = started;
    // An id for the secret keys this instance hands out, so that a cancel
    // reaching another instance finds its way here (the old one first).
    std::vector<int> candidates;
    if (id_ != 0)
        candidates.push_back(id_);
    for (int id = 1; id <= 127; ++id)
        if (id != id_)
            candidates.push_back(id);
    int claimed = 0;
    for (const int id : candidates) {
        if (claimed != 0)
            break;
        const auto k = key("ids/" + std::to_string(id));
        const auto cmp = key_absent(k);
        const auto ops = put_op(k, name_, lease_);
        auto r = co_await etcd_.txn(cmp, ops);
        if (!r) {
            log::warning("cluster: could not claim an instance id: ", r.error);
            lease_ = 0;
            co_return false;
        }
        if (*r.value)
            claimed = id;
    }
    if (claimed == 0) {
        log::error("cluster: all 127 instance ids are taken under ", prefix_);
        lease_ = 0;
        co_return false;
    }
    if (id_ != 0 && id_ != claimed)
        log::warning("cluster: instance id changed from ", id_, " to ", claimed,
                     " (cancels of older sessions will not be forwarded here)");
    id_ = claimed;
    runtime_.cancels().set_instance_id(id_);
    const routing::InstanceInfo me{name_, listen_, admin_, id_};
    auto put = co_await etcd_.put(key("instances/" + name_), routing::encode(me), lease_);
    if (!put) {
        log::warning("cluster: could not register: ", put.error);
        lease_ = 0;
        co_return false;
    }
    // The first instance of a deployment seeds the shared backend list.
    const auto bk = key("backends");
    const auto seed_cmp = key_absent(bk);
    const auto seed_ops = put_op(bk, routing::encode(shared_from(seed_backends_)), 0);
    (void)co_await etcd_.txn(seed_cmp, seed_ops);
    log::info("cluster: registered as ", name_, " (id ", id_, ")");
    co_return true;
}

awaitable<void> ClusterCoordinator::keep_alive()
{
    const auto started = Clock::now();
    auto r = co_await etcd_.keep_alive(lease_);
    if (!r) {
        log::debug("cluster: lease keepalive failed: ", r.error);
        co_return;
    }
    seen(started);
    if (*r.value <= 0) {
        // etcd dropped the lease (we were away too long): register anew.
        log::warning("cluster: the lease expired; registering again");
        lease_ = 0;
        co_return;
    }
    lease_renewed_ = started;
}

awaitable<bool> ClusterCoordinator::poll()
{
    const auto started = Clock::now();
    auto r = co_await etcd_.range_prefix(prefix_ + "/");
    if (!r) {
        log::debug("cluster: reading ", prefix_, " failed: ", r.error);
        co_return false;
    }
    seen(started);
    std::string leader;
    std::int64_t leader_lease = 0;
    std::vector<routing::InstanceInfo> instances;
    bool topology_found = false;
    for (const auto& kv : *r.value) {
        const std::string_view rest = std::string_view(kv.key).substr(prefix_.size() + 1);
        if (rest == "leader") {
            leader = kv.value;
            leader_lease = kv.lease;
        } else if (rest == "topology") {
            topology_found = true;
            if (kv.mod_revision != topology_revision_) {
                if (auto t = routing::decode_topology(kv.value)) {
                    if (t->epoch < topology_.epoch)
                        log::warning("cluster: topology epoch went back from ", topology_.epoch, " to ", t->epoch,
                                     "; following etcd");
                    else if (t->primary != topology_.primary && !t->primary.empty())
                        log::info("cluster: epoch ", t->epoch, ": the primary is ", t->primary);
                    topology_ = std::move(*t);
                    topology_revision_ = kv.mod_revision;
                    if (auto* h = runtime_.health())
                        h->follow_topology();
                } else {
                    log::error("cluster: the topology in etcd does not decode; ignoring it");
                }
            }
        } else if (rest == "backends") {
            if (kv.mod_revision != backends_revision_) {
                if (auto b = routing::decode_backends(kv.value)) {
                    backends_revision_ = kv.mod_revision;
                    apply_backends(*b);
                }
            }
        } else if (rest.starts_with("instances/")) {
            if (auto i = routing::decode_instance(kv.value))
                instances.push_back(std::move(*i));
        }
    }
    if (!topology_found)
        topology_revision_ = 0;
    topology_seen_ = true;
    instances_ = std::move(instances);
    if (leader != leader_ && !leader.empty())
        log::info("cluster: leader is ", leader, leader == name_ ? " (this instance)" : "");
    leader_ = leader;
    leader_lease_ = leader_lease;
    if (leader_.empty() && lease_ != 0)
        co_await campaign();
    co_return true;
}

awaitable<void> ClusterCoordinator::campaign()
{
    const auto k = key("leader");
    const auto cmp = key_absent(k);
    const auto ops = put_op(k, name_, lease_);
    auto r = co_await etcd_.txn(cmp, ops);
    if (r && *r.value) {
        leader_ = name_;
        leader_lease_ = lease_;
        log::info("cluster: this instance (", name_, ") holds the leader lease");
        if (auto* h = runtime_.health())
            h->check_now();  // act on the latest health at once (a failover may be half done)
    }
}

awaitable<bool> ClusterCoordinator::write_topology(const routing::Topology& next, bool leader_only)
{
    const auto tk = key("topology");
    std::vector<EtcdCompare> compare = key_absent(tk);
    if (topology_revision_ != 0)
        compare = {EtcdCompare{tk, EtcdCompare::Target::mod_revision, topology_revision_, std::string()}};
    if (leader_only) {
        // Only while this instance still holds the leader key with its lease.
        compare.push_back(EtcdCompare{key("leader"), EtcdCompare::Target::value, 0, name_});
        compare.push_back(EtcdCompare{key("leader"), EtcdCompare::Target::lease, lease_, std::string()});
    }
    const auto ops = put_op(tk, routing::encode(next), 0);
    auto r = co_await etcd_.txn(compare, ops);
    if (!r) {
        log::warning("cluster: could not write the topology: ", r.error);
        co_return false;
    }
    (void)co_await poll();  // the new revision (and what others wrote meanwhile)
    co_return *r.value;
}

awaitable<bool> ClusterCoordinator::record_promotion(const std::string& candidate, const std::string& old_primary,
                                                     const std::string& reason, bool fence_old)
{
    if (!is_leader())
        co_return false;
    auto next = routing::after_promotion(topology_, candidate, old_primary, reason, now_rfc3339());
    if (!fence_old)
        next.fenced.erase(old_primary);
    const bool ok = co_await write_topology(next, true);
    if (ok)
        log::warning("cluster: epoch ", next.epoch, ": promoting ", candidate, " in place of ",
                     old_primary.empty() ? std::string("(none)") : old_primary);
    else
        log::warning("cluster: not promoting ", candidate, ": the topology changed or this instance lost the lead");
    co_return ok;
}

awaitable<bool> ClusterCoordinator::record_primary(const std::string& primary)
{
    if (!is_leader())
        co_return false;
    if (topology_.primary == primary)
        co_return true;
    auto next = topology_;
    next.primary = primary;
    next.epoch = std::max<std::uint64_t>(next.epoch, 1);
    co_return co_await write_topology(next, true);
}

awaitable<bool> ClusterCoordinator::record_fence(const std::string& name, const std::string& reason)
{
    if (!is_leader())
        co_return false;
    if (topology_.fenced.contains(name))
        co_return true;
    auto next = topology_;
    next.fenced[name] = reason;
    co_return co_await write_topology(next, true);
}

awaitable<bool> ClusterCoordinator::lift_fence(const std::string& name)
{
    for (int attempt = 0; attempt < 5; ++attempt) {
        if (!topology_.fenced.contains(name))
            co_return true;
        auto next = topology_;
        next.fenced.erase(name);
        if (co_await write_topology(next, false))
            co_return true;
    }
    co_return false;
}

awaitable<std::string> ClusterCoordinator::change_backends(BackendChange change)
{
    const auto bk = key("backends");
    for (int attempt = 0; attempt < 5; ++attempt) {
        auto next = backends_;
        if (auto err = change(next); !err.empty())
            co_return err;
        const std::vector<EtcdCompare> cmp{
            EtcdCompare{bk, EtcdCompare::Target::mod_revision, backends_revision_, std::string()}};
        const auto ops = put_op(bk, routing::encode(next), 0);
        auto r = co_await etcd_.txn(cmp, ops);
        if (!r)
            co_return "etcd: " + r.error;
        (void)co_await poll();
        if (*r.value)
            co_return std::string();
    }
    co_return std::string("the shared backend list kept changing; try again");
}

void ClusterCoordinator::apply_backends(const std::vector<routing::SharedBackend>& shared)
{
    backends_ = shared;
    std::vector<BackendConfig> list;
    for (const auto& b : shared)
        list.push_back({b.name, b.host, b.port, b.weight});
    if (list != runtime_.settings()->config.backends) {
        log::info("cluster: the shared backend list changed (", list.size(), " backends)");
        runtime_.set_backends(list);
    }
    if (auto* h = runtime_.health())
        for (const auto& b : shared)
            (void)h->set_drained(b.name, b.drained);
}

}  // namespace pgswitch::proxy
