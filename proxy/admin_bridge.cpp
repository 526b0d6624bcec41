#include "admin_bridge.h"
#include "routing/request_plan.h"

#include <algorithm>
#include <cmath>

#include "client_session.h"
#include "cluster_coordinator.h"
#include "health_checker.h"
#include "log.h"
#include "pg_wire/frontend.h"
#include "pg_wire/request.h"
#include "routing/classifier.h"
#include "routing/request_analysis.h"
#include "runtime.h"

namespace pgswitch::proxy {

using admin::CommandResult;
using Code = admin::CommandResult::Code;

namespace {

constexpr std::chrono::milliseconds removal_poll_interval{100};

std::string in_quotes(std::string_view s)
{
    return "\"" + std::string(s) + "\"";
}

const BackendConfig* find_config(const Config& c, std::string_view name)
{
    for (const auto& b : c.backends)
        if (b.name == name)
            return &b;
    return nullptr;
}

CommandResult unknown_backend(std::string_view name)
{
    return CommandResult::error(Code::not_found, "no backend named " + in_quotes(name));
}

}  // namespace

AdminBridge::AdminBridge(Runtime& runtime) : runtime_(runtime), poll_(runtime.io()) {}

AdminBridge::~AdminBridge() = default;

void AdminBridge::stop() noexcept
{
    stopped_ = true;
    poll_.cancel();
}

std::string AdminBridge::token() const
{
    return runtime_.settings()->config.admin.token;
}

admin::Snapshot AdminBridge::snapshot() const
{
    const auto settings = runtime_.settings();
    const auto& cfg = settings->config;
    const auto view = runtime_.cluster();
    admin::Snapshot s;
    s.version = PGSWITCH_VERSION_STRING;
    const std::chrono::duration<double> up = std::chrono::steady_clock::now() - runtime_.started_at();
    s.uptime_s = std::round(up.count() * 1000) / 1000;  // milliseconds are plenty
    s.draining = runtime_.draining();
    if (const auto p = view->primary_index())
        s.primary = view->backends[*p].name;
    if (const auto* coord = runtime_.coordinator()) {
        const auto cs = coord->status();
        admin::ClusterInfo c{cs.name, cs.leader, cs.epoch, cs.etcd_seen_ms_ago, cs.endpoint, cs.writes_blocked, {}};
        for (const auto& i : cs.instances)
            c.instances.push_back({i.name, i.listen, i.admin, i.id});
        s.cluster = std::move(c);
    }

    const auto sessions = runtime_.session_infos();
    std::vector<std::string> names;
    for (const auto& v : view->backends)
        names.push_back(v.name);
    const auto stats = runtime_.stats(names);
    const auto& pooled = stats.pool_by_backend;
    const auto& pool_total = stats.pool_total;
    for (const auto& v : view->backends) {
        admin::BackendStats b;
        b.view = v;
        for (const auto& session : sessions)
            for (const auto& link : session.links)
                if (link.backend == v.name)
                    ++(link.busy ? b.connections.active : b.connections.idle);
        // Transaction pooling: connections waiting in the pools are idle (the
        // lent ones are counted through the sessions above).
        if (auto it = pooled.find(v.name); it != pooled.end())
            b.connections.idle += static_cast<std::uint64_t>(it->second.idle);
        if (auto it = stats.queries.find(v.name); it != stats.queries.end())
            b.queries = {it->second.reads, it->second.writes};
        s.backends.push_back(std::move(b));
    }
    s.clients_active = runtime_.client_count();
    s.clients_max = static_cast<std::uint64_t>(cfg.proxy.max_client_connections);
    s.pool.open = static_cast<std::uint64_t>(pool_total.open);
    s.pool.idle = static_cast<std::uint64_t>(pool_total.idle);
    s.pool.waiting = static_cast<std::uint64_t>(pool_total.waiting);
    s.pool.size = static_cast<std::uint64_t>(cfg.proxy.pool_size);
    // Each worker has its own cache: the figures are sums over workers.
    s.statement_cache = {stats.cache_hits, stats.cache_misses, stats.cache_size, stats.cache_capacity};
    s.failover.mode = std::string(to_string(cfg.failover.mode));
    if (auto* health = const_cast<Runtime&>(runtime_).health()) {
        for (const auto& r : health->failover_history()) {
            admin::FailoverEvent e;
            e.at = r.at;
            e.from = r.from;
            e.to = r.to;
            e.reason = r.reason + " (" + std::to_string(static_cast<long long>(r.duration_ms)) + " ms; " +
                       std::to_string(r.unreceived_bytes) + " bytes of WAL the old primary had were not received)";
            s.failover.history.push_back(std::move(e));
        }
        s.failovers_total = health->failover_history().size();
        if (health->failover_running())
            s.failover.state = "promoting";
        s.failover.reason = health->failover_problem();
    }
    s.query_latency = stats.query_latency;
    s.misroutes_total = stats.misroutes;
    s.replay_waits_reached = stats.replay_waits_reached;
    s.replay_waits_missed = stats.replay_waits_missed;
    for (const auto& [reason, n] : stats.route_decisions)
        s.routing_decisions.emplace_back(std::string(routing::to_string(reason)), n);
    return s;
}

std::vector<admin::ClientInfo> AdminBridge::clients() const
{
    std::vector<admin::ClientInfo> out;
    for (auto& i : runtime_.session_infos()) {
        admin::ClientInfo c;
        c.id = i.id;
        c.address = std::move(i.address);
        c.user = std::move(i.user);
        c.database = std::move(i.database);
        c.application_name = std::move(i.application_name);
        c.state = std::move(i.state);
        c.backend = std::move(i.backend);
        c.connected_s = std::round(i.connected_s * 1000) / 1000;
        out.push_back(std::move(c));
    }
    return out;
}

admin::Explanation AdminBridge::explain(std::string_view sql, std::string_view database) const
{
    admin::Explanation e;
    // classify() directly, not through the cache: explaining must not move
    // the hit/miss counters operators watch.
    // No database named: the one sessions use, when there is only one.
    std::string db(database);
    if (const auto loaded = runtime_.catalog_databases(); db.empty() && loaded.size() == 1)
        db = loaded.front();
    const auto catalog = runtime_.catalog(db);
    e.classification = routing::classify(sql, catalog.get());
    const auto& cls = e.classification;

    // The same request summary the session builds (routing::analyze_request),
    // for a session that just logged in.
    const auto request = wire::make_query_request(sql);
    const routing::SessionState fresh;
    const routing::ClassifyFn classify = [&](std::string_view text) {
        return std::make_shared<const routing::Classification>(routing::classify(text, catalog.get()));
    };
    const auto facts = routing::analyze_request(request, fresh, classify);
    const auto view = runtime_.cluster();
    // A session that just logged in holds its primary connection in session
    // pooling, nothing in transaction pooling: the same rules as sessions.
    const bool session_pooling = runtime_.settings()->config.proxy.pool_mode == PoolMode::session;
    const auto placement = routing::SessionPlacement::logged_in(session_pooling && view->primary_index());
    e.request = routing::route_request_for(facts, true);
    const auto sticky = routing::plan_sticky(facts, placement);
    if (sticky.stick != routing::Stick::none) {
        // Only `active` and `primary_link` can keep a new session's request:
        // both are its primary connection.
        if (const auto p = view->primary_index())
            e.target = view->backends[*p].name;
        e.reason = cls.statements.empty() ? "empty query: answered where the session is (the primary)"
                                          : std::string(routing::describe(sticky.stick));
        return e;
    }
    // A balancer of its own (explaining must not shift any worker's round
    // robin) and the statements in flight summed over the workers.
    routing::BalancerState balancer;
    const auto stats = runtime_.stats();
    std::vector<int> in_flight;
    for (const auto& b : view->backends) {
        auto it = stats.in_flight.find(b.name);
        in_flight.push_back(it == stats.in_flight.end() ? 0 : it->second);
    }
    const auto sc = routing::session_constraints(fresh, runtime_.schema_lsn(), false);
    // (adaptive: response times are each worker's own; the pick here sees none.)
    const routing::Load load{in_flight, {}, std::chrono::steady_clock::now()};
    const auto d = routing::choose_target(e.request, sc, *view, runtime_.policy(), balancer, "", load);
    if (d.backend)
        e.target = view->backends[*d.backend].name;
    e.reason = std::string(routing::to_string(d.reason));
    if (d.reason == routing::Reason::no_primary)
        e.reason += ": writes wait failover.wait_for_primary_ms for one, then fail with 57P03";
    if (!catalog)
        e.reason += " (no function catalog for database \"" + db +
                    "\" yet: user functions count as reads; it is loaded when a session logs in to it)";
    else if (!facts.unknown_functions.empty())
        e.reason += " (calls functions pgswitch does not know: " + facts.unknown_functions.front() +
                    "; a session looks them up first)";
    return e;
}

CommandResult AdminBridge::add_backend(const admin::NewBackend& nb)
{
    const auto settings = runtime_.settings();
    const auto& cfg = settings->config;
    if (find_config(cfg, nb.name))
        return CommandResult::error(Code::conflict, "a backend named " + in_quotes(nb.name) + " already exists");
    for (const auto& b : cfg.backends)
        if (b.host == nb.host && b.port == nb.port)
            return CommandResult::error(Code::conflict, "backend " + in_quotes(b.name) + " already has address " +
                                                            nb.host + ":" + std::to_string(nb.port));
    if (runtime_.coordinator()) {
        const routing::SharedBackend added{nb.name, nb.host, nb.port, nb.weight, false};
        share(
            [added](std::vector<routing::SharedBackend>& list) {
                for (const auto& b : list)
                    if (b.name == added.name)
                        return "a backend named \"" + added.name + "\" already exists";
                list.push_back(added);
                return std::string();
            },
            "adding backend " + nb.name);
        return CommandResult::ok("added for every instance (stored in etcd): it gets traffic once its health "
                                 "checks pass");
    }
    auto backends = cfg.backends;
    backends.push_back({nb.name, nb.host, nb.port, nb.weight});
    runtime_.set_backends(std::move(backends));
    log::info("admin: backend ", nb.name, " (", nb.host, ":", nb.port, ") added; checked now");
    return CommandResult::ok("added: it gets traffic once its health checks pass (not saved to the config file)");
}

bool AdminBridge::idle(const std::string& name) const
{
    if (runtime_.in_flight(name) > 0)
        return false;
    for (const auto& s : runtime_.session_infos())
        for (const auto& l : s.links)
            if (l.backend == name && l.busy)
                return false;
    return true;
}

void AdminBridge::share(std::function<std::string(std::vector<routing::SharedBackend>&)> change, std::string what)
{
    auto* coord = runtime_.coordinator();
    asio::co_spawn(
        runtime_.io(),
        [coord, change = std::move(change), what = std::move(what)]() -> awaitable<void> {
            const auto err = co_await coord->change_backends(change);
            if (err.empty())
                log::info("admin: ", what, ": stored in etcd for every instance");
            else
                log::error("admin: ", what, " failed: ", err);
        },
        asio::detached);
}

void AdminBridge::share_drained(const std::string& name, bool drained)
{
    share(
        [name, drained](std::vector<routing::SharedBackend>& list) {
            for (auto& b : list)
                if (b.name == name)
                    b.drained = drained;
            return std::string();
        },
        (drained ? "draining " : "enabling ") + name);
}

void AdminBridge::remove_now(const std::string& name)
{
    if (runtime_.coordinator()) {
        share(
            [name](std::vector<routing::SharedBackend>& list) {
                std::erase_if(list, [&](const routing::SharedBackend& b) { return b.name == name; });
                return std::string();
            },
            "removing backend " + name);
        return;
    }
    auto backends = runtime_.settings()->config.backends;
    std::erase_if(backends, [&](const BackendConfig& b) { return b.name == name; });
    runtime_.set_backends(std::move(backends));
    log::info("admin: backend ", name, " removed");
}

CommandResult AdminBridge::remove_backend(std::string_view name_view)
{
    const std::string name(name_view);
    const auto& cfg = runtime_.settings()->config;
    if (!find_config(cfg, name))
        return unknown_backend(name);
    if (cfg.backends.size() == 1)
        return CommandResult::error(Code::conflict, "cannot remove the last backend");
    const auto view = runtime_.cluster();
    if (const auto p = view->primary_index(); p && view->backends[*p].name == name)
        return CommandResult::error(Code::conflict,
                                    in_quotes(name) + " is the primary: fail over (or drain it) before removing it");
    if (runtime_.health())
        (void)runtime_.health()->set_drained(name, true);
    if (runtime_.coordinator())
        share_drained(name, true);
    if (idle(name)) {
        std::erase_if(removals_, [&](const PendingRemoval& r) { return r.name == name; });
        remove_now(name);
        return CommandResult::ok("removed");
    }
    const auto limit = std::chrono::milliseconds(cfg.proxy.shutdown_timeout_ms);
    if (std::none_of(removals_.begin(), removals_.end(), [&](const PendingRemoval& r) { return r.name == name; }))
        removals_.push_back({name, std::chrono::steady_clock::now() + limit});
    schedule_poll();
    log::info("admin: removing backend ", name, " once its running statements and transactions finish");
    return CommandResult::error(Code::accepted, "draining: removed once its running statements and transactions "
                                                "finish (at most proxy.shutdown_timeout_ms = " +
                                                    std::to_string(limit.count()) + " ms)");
}

void AdminBridge::schedule_poll()
{
    if (polling_ || stopped_ || removals_.empty())
        return;
    polling_ = true;
    poll_.expires_after(removal_poll_interval);
    poll_.async_wait([this](error_code ec) {
        polling_ = false;
        if (ec || stopped_)
            return;
        poll_removals();
        schedule_poll();
    });
}

void AdminBridge::poll_removals()
{
    const auto now = std::chrono::steady_clock::now();
    std::vector<PendingRemoval> keep;
    for (auto& r : removals_) {
        if (!find_config(runtime_.settings()->config, r.name))
            continue;  // gone already (a reload dropped it)
        if (idle(r.name)) {
            remove_now(r.name);
        } else if (now >= r.deadline) {
            log::warning("admin: backend ", r.name, " still busy after proxy.shutdown_timeout_ms; removing it anyway");
            remove_now(r.name);
        } else {
            keep.push_back(std::move(r));
        }
    }
    removals_ = std::move(keep);
}

CommandResult AdminBridge::drain_backend(std::string_view name)
{
    if (!find_config(runtime_.settings()->config, name) || !runtime_.health())
        return unknown_backend(name);
    const auto view = runtime_.cluster();
    const auto p = view->primary_index();
    const bool primary = p && view->backends[*p].name == name;
    (void)runtime_.health()->set_drained(name, true);
    if (runtime_.coordinator())
        share_drained(std::string(name), true);
    log::info("admin: backend ", name, " drained");
    return CommandResult::ok(primary ? "drained: this is the primary, so writes now wait for a primary "
                                       "(failover.wait_for_primary_ms) and then fail"
                                     : "drained: no new statements; running transactions finish");
}

CommandResult AdminBridge::enable_backend(std::string_view name)
{
    if (!find_config(runtime_.settings()->config, name) || !runtime_.health())
        return unknown_backend(name);
    std::string note = "enabled: back in rotation once its health checks pass";
    const auto before = removals_.size();
    std::erase_if(removals_, [&](const PendingRemoval& r) { return r.name == name; });
    if (removals_.size() != before)
        note += " (its pending removal is cancelled)";
    (void)runtime_.health()->set_fenced(name, false);
    (void)runtime_.health()->set_drained(name, false);
    if (auto* coord = runtime_.coordinator()) {
        share_drained(std::string(name), false);
        asio::co_spawn(
            runtime_.io(),
            [coord, n = std::string(name)]() -> awaitable<void> {
                if (!co_await coord->lift_fence(n))
                    log::error("admin: could not lift the fence of ", n, " in etcd");
            },
            asio::detached);
    }
    log::info("admin: backend ", name, " enabled");
    return CommandResult::ok(note);
}

CommandResult AdminBridge::reload()
{
    auto r = runtime_.reload();
    if (r.no_file)
        return CommandResult::error(Code::conflict,
                                    "running from command-line flags: there is no config file to reload");
    if (!r.errors.empty()) {
        std::string message = "the config file has " + std::to_string(r.errors.size()) +
                              " problem(s); the running configuration is kept: ";
        for (std::size_t i = 0; i < r.errors.size(); ++i)
            message += (i ? "; " : "") + r.errors[i];
        return CommandResult::error(Code::invalid, message);
    }
    std::string note = "configuration reloaded from " + runtime_.settings()->config.source;
    for (const auto& w : r.warnings)
        note += "; " + w;
    return CommandResult::ok(note);
}

CommandResult AdminBridge::failover(std::optional<std::string> target)
{
    auto* health = runtime_.health();
    if (!health)
        return CommandResult::error(Code::unavailable, "pgswitch is not running its health checks");
    if (runtime_.settings()->config.failover.mode == FailoverMode::external)
        return CommandResult::error(Code::conflict,
                                    "failover.mode = external: pgswitch never promotes, it follows the cluster");
    if (auto err = health->manual_failover(std::move(target)))
        return CommandResult::error(Code::conflict, *err);
    return CommandResult{Code::accepted, "promotion started; GET /status shows the outcome"};
}

}  // namespace pgswitch::proxy
