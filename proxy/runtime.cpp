#include "runtime.h"

#include "cluster_coordinator.h"

#include <algorithm>
#include <csignal>
#include <thread>

#include "admin/http_server.h"
#include "admin_bridge.h"
#include "client_session.h"
#include "health_checker.h"
#include "session_context.h"
#include "log.h"

namespace pgswitch::proxy {

SettingsPtr make_settings(Config config)
{
    auto s = std::make_shared<Settings>();
    for (const auto& u : config.users) {
        if (u.scram_secret) {
            if (auto parsed = wire::auth::parse_scram_secret(*u.scram_secret))
                s->scram_secrets.emplace(u.name, *parsed);
        } else if (u.password) {
            // Derived once per load (PBKDF2 is deliberately slow), with a fresh salt.
            s->scram_secrets.emplace(u.name,
                                     wire::auth::make_scram_secret(*u.password, wire::auth::random_nonce(16), 4096));
        }
    }
    const auto& r = config.routing;
    s->policy.load_balancing = r.load_balancing;
    s->policy.read_your_writes = r.read_your_writes;
    s->policy.primary_reads = r.primary_reads;
    s->policy.max_replica_lag_bytes = static_cast<std::uint64_t>(r.max_replica_lag_bytes);
    s->policy.read_your_writes_wait_ms = static_cast<std::uint32_t>(r.read_your_writes_wait_ms);
    s->config = std::move(config);
    return s;
}

Runtime::Runtime(Config config, std::string config_path)
    : config_path_(std::move(config_path)),
      settings_(make_settings(std::move(config))),
      cluster_(std::make_shared<routing::ClusterView>()),
      signals_(io_, SIGINT, SIGTERM, SIGHUP),
      shutdown_timer_(io_)
{
}

Runtime::~Runtime()
{
    // Workers first: their loops may still own sessions, whose destructors
    // use the registry, the cancel keys and the counters below.
    for (auto& w : workers_)
        w->stop();
    for (auto& w : workers_)
        w->join();
    workers_.clear();
}

asio::io_context& Runtime::io() noexcept
{
    auto* w = Worker::current();
    return w ? w->io() : io_;
}

SettingsPtr Runtime::settings() const noexcept
{
    auto* w = Worker::current();
    return w ? w->settings : settings_;
}

routing::ClusterViewPtr Runtime::cluster() const noexcept
{
    auto* w = Worker::current();
    return w ? w->cluster : cluster_;
}

void Runtime::publish_schema_lsn(std::uint64_t lsn) noexcept
{
    auto seen = schema_lsn_.load(std::memory_order_relaxed);
    while (seen < lsn && !schema_lsn_.compare_exchange_weak(seen, lsn, std::memory_order_release))
        ;
}

std::size_t Runtime::next_worker() noexcept
{
    const auto i = next_worker_;
    next_worker_ = (next_worker_ + 1) % workers_.size();
    return i;
}

void Runtime::post_to_workers(std::function<void(Worker&)> fn)
{
    for (auto& w : workers_)
        asio::post(w->io(), [fn, worker = w.get()] { fn(*worker); });
}

const routing::Policy& Runtime::policy() const noexcept
{
    // The worker's (or main thread's) settings outlive any caller's use of
    // the reference: a reload swaps them between statements, on that thread.
    auto* w = Worker::current();
    return (w ? w->settings : settings_)->policy;
}

std::shared_ptr<const routing::FunctionCatalog> Runtime::catalog(const std::string& database, bool* stale) const
{
    std::lock_guard lock(catalogs_mutex_);
    auto it = catalogs_.find(database);
    const bool found = it != catalogs_.end() && it->second.catalog;
    if (stale)
        *stale = !found || it->second.stale;
    return found ? it->second.catalog : nullptr;
}

std::vector<std::string> Runtime::catalog_databases() const
{
    std::lock_guard lock(catalogs_mutex_);
    std::vector<std::string> out;
    for (const auto& [name, entry] : catalogs_)
        if (entry.catalog)
            out.push_back(name);
    return out;
}

std::shared_ptr<const routing::FunctionCatalog> Runtime::store_catalog(const std::string& database,
                                                                       const std::vector<FunctionRow>& functions,
                                                                       const std::vector<std::string>& looked_for)
{
    const auto settings = this->settings();
    std::lock_guard lock(catalogs_mutex_);
    auto c = std::make_shared<routing::FunctionCatalog>(++catalog_generation_);
    for (const auto& f : functions) {
        if (f.unlogged_relation) {
            c->add_unlogged(f.schema, f.name);
            continue;
        }
        c->add_known(f.schema, f.name);
        // Built-ins are judged by name (builtin_function_effect): most
        // VOLATILE ones (random(), pg_sleep()) are reads.
        if (f.is_volatile && f.schema != "pg_catalog" && f.schema != "information_schema")
            c->add_volatile(f.schema, f.name);
    }
    for (const auto& name : looked_for) {
        const auto dot = name.find('.');
        const auto schema = dot == std::string::npos ? std::string_view{} : std::string_view(name).substr(0, dot);
        const auto bare = dot == std::string::npos ? std::string_view(name) : std::string_view(name).substr(dot + 1);
        if (!c->knows(schema, bare))
            c->add_missing(name);
    }
    for (const auto& f : settings->config.routing.write_functions)
        c->add_write_function(f);
    for (const auto& f : settings->config.routing.read_only_functions)
        c->add_read_only_function(f);
    auto& e = catalogs_[database];
    e.catalog = c;
    e.stale = false;
    e.refreshing = false;
    e.refreshed_at = std::chrono::steady_clock::now();
    catalogs_changed_.fetch_add(1, std::memory_order_release);
    return c;
}

void Runtime::invalidate_catalog(const std::string& database)
{
    std::lock_guard lock(catalogs_mutex_);
    if (auto it = catalogs_.find(database); it != catalogs_.end())
        it->second.stale = true;
    catalogs_changed_.fetch_add(1, std::memory_order_release);
}

bool Runtime::claim_catalog_refresh(const std::string& database, bool urgent)
{
    // Unknown names come from every session that calls them: one lookup a
    // second per database at most; DDL seen by pgswitch refreshes at once.
    constexpr auto min_interval = std::chrono::seconds(1);
    std::lock_guard lock(catalogs_mutex_);
    auto& e = catalogs_[database];
    if (e.refreshing)
        return false;
    if (!urgent && e.catalog && std::chrono::steady_clock::now() - e.refreshed_at < min_interval)
        return false;
    e.refreshing = true;
    return true;
}

void Runtime::end_catalog_refresh(const std::string& database)
{
    std::lock_guard lock(catalogs_mutex_);
    catalogs_[database].refreshing = false;
}

awaitable<void> Runtime::forward_cancel(wire::CancelRequest cancel)
{
    const int id = routing::instance_of_secret(cancel.secret_key);
    if (!coordinator_ || id == 0 || id == coordinator_->instance_id()) {
        log::debug("cancel request with an unknown key ignored");
        co_return;
    }
    const auto target = coordinator_->instance(id);
    if (!target) {
        log::info("cancel request for instance id ", id, ", which is not registered: ignored");
        co_return;
    }
    const auto colon = target->listen.rfind(':');
    if (colon == std::string::npos || colon == 0 || target->listen == coordinator_->listen_address()) {
        log::warning("cancel: instance ", target->name, " has no usable address (", target->listen, ")");
        co_return;
    }
    // Its registered address may be a host name (a wildcard listener registers the machine's name).
    auto host = target->listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    const auto port = target->listen.substr(colon + 1);
    tcp::resolver resolver(io_);
    auto [rerr, found] = co_await resolver.async_resolve(host, port, use_nothrow);
    if (rerr || found.empty()) {
        log::warning("cancel: could not resolve instance ", target->name, " at ", target->listen, ": ", rerr.message());
        co_return;
    }
    const tcp::endpoint ep = *found.begin();
    tcp::socket s(io_);
    asio::steady_timer guard(io_, std::chrono::seconds(5));
    guard.async_wait([&s](error_code e) {
        if (!e)
            s.close();
    });
    auto [cec] = co_await s.async_connect(ep, use_nothrow);
    if (cec) {
        log::warning("cancel: could not reach instance ", target->name, " at ", target->listen, ": ", cec.message());
        co_return;
    }
    std::string msg;
    wire::build_cancel_request(msg, cancel.process_id, cancel.secret_key);
    auto [wec, n] = co_await asio::async_write(s, asio::buffer(msg), use_nothrow);
    (void)n;
    if (!wec) {
        // It closes the connection once it has passed the cancel on.
        char byte;
        auto [rec, rn] = co_await s.async_read_some(asio::buffer(&byte, 1), use_nothrow);
        (void)rec;
        (void)rn;
        log::debug("cancel forwarded to instance ", target->name);
    }
    guard.cancel();
}

void Runtime::publish(routing::ClusterViewPtr view)
{
    // Backends fenced by this view: every connection to them closes at once,
    // in-flight statements there fail, and nothing they say afterwards reaches
    // a client (a frozen old primary that thaws must not acknowledge a commit).
    std::vector<std::string> fenced;
    for (const auto& b : view->backends) {
        const auto* before = cluster_ ? cluster_->find(b.name) : nullptr;
        if (b.state == routing::BackendState::fenced && (!before || before->state != routing::BackendState::fenced))
            fenced.push_back(b.name);
    }
    // Writes just blocked (this instance lost etcd for longer than the lease
    // TTL: another may be promoting): the primary is cut off as if fenced,
    // so no transaction goes on writing there; reads carry on.
    if (!view->writes_blocked.empty() && cluster_ && cluster_->writes_blocked.empty())
        if (const auto p = cluster_->primary_index())
            fenced.push_back(cluster_->backends[*p].name);
    cluster_ = view;
    post_to_workers([this, view, fenced](Worker& w) {
        w.cluster = view;
        for (const auto& name : fenced) {
            w.pool.close_idle_to(name);
            for (auto& s : live_sessions(&w))
                s->drop_backend(name);
        }
        w.cluster_changed.notify();
    });
}

bool Runtime::try_admit_client()
{
    const auto max = static_cast<std::size_t>(settings()->config.proxy.max_client_connections);
    auto n = clients_.load(std::memory_order_relaxed);
    do {
        if (n >= max)
            return false;
    } while (!clients_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
}

void Runtime::release_client() noexcept
{
    auto n = clients_.load(std::memory_order_relaxed);
    while (n > 0 && !clients_.compare_exchange_weak(n, n - 1, std::memory_order_relaxed)) {
    }
}

void Runtime::session_started(const std::shared_ptr<ClientSession>& s, Worker& worker)
{
    std::lock_guard lock(sessions_mutex_);
    sessions_.emplace(s->id(), SessionEntry{s, &worker, std::chrono::steady_clock::now()});
}

void Runtime::session_ended(std::uint64_t id) noexcept
{
    bool last = false;
    {
        std::lock_guard lock(sessions_mutex_);
        sessions_.erase(id);
        last = sessions_.empty();
    }
    if (last && draining())
        asio::post(io_, [this] { finish_if_drained(); });
}

void Runtime::report_restart_announced(const std::string& backend)
{
    asio::post(io_, [this, backend] {
        if (health_)
            health_->restart_announced(backend);
    });
}

std::vector<std::shared_ptr<ClientSession>> Runtime::live_sessions(const Worker* w) const
{
    std::vector<std::shared_ptr<ClientSession>> out;
    std::lock_guard lock(sessions_mutex_);
    out.reserve(sessions_.size());
    for (const auto& [id, e] : sessions_)
        if (!w || e.worker == w)
            if (auto s = e.session.lock())
                out.push_back(std::move(s));
    return out;
}

void Runtime::request_health_check() noexcept
{
    // From a worker: the health checker lives on the main loop.
    asio::post(io_, [this] {
        if (health_)
            health_->check_now();
    });
}

bool Runtime::setup_tls(const Config& c)
{
    if (c.proxy.tls_cert.empty())
        return true;
    try {
        auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
        ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
        ctx->use_certificate_chain_file(c.proxy.tls_cert);
        ctx->use_private_key_file(c.proxy.tls_key, asio::ssl::context::pem);
        tls_ = std::move(ctx);
        return true;
    } catch (const std::exception& e) {
        log::error("proxy.tls_cert/proxy.tls_key: cannot load: ", e.what());
        return false;
    }
}

int Runtime::run()
{
    const auto& cfg = settings_->config;
    if (!setup_tls(cfg))
        return 1;
    std::size_t nworkers = cfg.proxy.workers > 0 ? static_cast<std::size_t>(cfg.proxy.workers)
                                                 : std::max(1u, std::thread::hardware_concurrency());
    in_flight_ = std::make_unique<InFlightBoard>(nworkers);
    for (std::size_t i = 0; i < nworkers; ++i) {
        workers_.push_back(std::make_unique<Worker>(i, settings_, cluster_));
        workers_.back()->loads.attach(*in_flight_, i);
        contexts_.push_back(std::make_unique<SessionContext>(*this, *workers_.back()));
    }

    error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(cfg.proxy.listen.host, std::to_string(cfg.proxy.listen.port), ec);
    if (ec || results.empty()) {
        log::error("proxy.listen: cannot resolve ", cfg.proxy.listen.to_string(), ": ", ec.message());
        return 1;
    }
    const tcp::endpoint ep = *results.begin();
    acceptor_ = std::make_unique<tcp::acceptor>(io_);
    acceptor_->open(ep.protocol(), ec);
    if (!ec)
        acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        acceptor_->bind(ep, ec);
    if (!ec)
        acceptor_->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        log::error("proxy.listen: cannot listen on ", cfg.proxy.listen.to_string(), ": ", ec.message());
        return 1;
    }
    log::info("pgswitch ", PGSWITCH_VERSION_STRING, " listening on ", cfg.proxy.listen.to_string(), " with ",
              cfg.backends.size(), " backend(s), ", nworkers, " worker thread(s)");

    // The admin API on admin.listen (config validation already refused a
    // non-loopback address without a token).
    admin_bridge_ = std::make_unique<AdminBridge>(*this);
    admin_server_ = std::make_unique<admin::HttpServer>(io_.get_executor(), *admin_bridge_);
    if (auto aec = admin_server_->listen(cfg.admin.listen.host, cfg.admin.listen.port)) {
        log::error("admin.listen: cannot listen on ", cfg.admin.listen.to_string(), ": ", aec.message());
        return 1;
    }
    admin_server_->start();
    log::info("admin API listening on ", cfg.admin.listen.to_string(),
              cfg.admin.token.empty() ? " (no token)" : " (bearer token required)");

    if (cfg.cluster.enabled()) {
        coordinator_ = std::make_unique<ClusterCoordinator>(*this, cfg);
        coordinator_->start();
    }
    health_ = std::make_unique<HealthChecker>(*this);
    health_->start();
    auto log_failure = [](const char* what) {
        return [what](std::exception_ptr e) {
            if (!e)
                return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& ex) {
                log::error(what, " failed: ", ex.what());
            }
        };
    };
    for (auto& w : workers_)
        w->start();
    asio::co_spawn(io_, accept_loop(), log_failure("accept loop"));
    asio::co_spawn(io_, signal_loop(), log_failure("signal handling"));
    io_.run();
    for (auto& w : workers_)
        w->stop();
    for (auto& w : workers_)
        w->join();
    log::info("pgswitch stopped");
    return exit_code_;
}

awaitable<void> Runtime::accept_loop()
{
    asio::steady_timer backoff(io_);
    while (acceptor_ && acceptor_->is_open()) {
        // The socket is accepted straight onto the worker that will run it.
        const auto index = next_worker();
        auto& worker = *workers_[index];
        auto* ctx = contexts_[index].get();
        auto [ec, socket] = co_await acceptor_->async_accept(worker.io(), use_nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted || !acceptor_->is_open())
                break;
            // Out of descriptors (EMFILE) and the like: back off rather than spin.
            log::warning("accept failed: ", ec.message());
            backoff.expires_after(std::chrono::milliseconds(100));
            auto [tec] = co_await backoff.async_wait(use_nothrow);
            (void)tec;
            continue;
        }
        asio::post(worker.io(), [ctx, s = std::make_shared<tcp::socket>(std::move(socket))]() mutable {
            std::make_shared<ClientSession>(*ctx, std::move(*s))->start();
        });
    }
}

awaitable<void> Runtime::signal_loop()
{
    for (;;) {
        auto [ec, sig] = co_await signals_.async_wait(use_nothrow);
        if (ec)
            co_return;
        if (sig == SIGHUP) {
            (void)reload();
            continue;
        }
        if (draining_) {
            log::info("second stop signal: closing every client now");
            post_to_workers([this](Worker& w) {
                for (auto& s : live_sessions(&w))
                    s->close();
            });
            continue;
        }
        log::info(sig == SIGTERM ? "SIGTERM" : "SIGINT", ": not accepting new clients; waiting up to ",
                  settings_->config.proxy.shutdown_timeout_ms, " ms for open transactions");
        begin_shutdown();
    }
}

void Runtime::begin_shutdown()
{
    draining_ = true;
    error_code ignored;
    if (acceptor_)
        acceptor_->close(ignored);
    // Each session is told on its own worker's thread.
    post_to_workers([this](Worker& w) {
        for (auto& s : live_sessions(&w))
            s->on_drain();
    });
    shutdown_timer_.expires_after(std::chrono::milliseconds(settings_->config.proxy.shutdown_timeout_ms));
    shutdown_timer_.async_wait([this](error_code ec) {
        if (ec)
            return;
        std::size_t left = 0;
        {
            std::lock_guard lock(sessions_mutex_);
            left = sessions_.size();
        }
        if (left)
            log::warning("shutdown_timeout_ms reached: closing ", left, " client(s) still in a transaction");
        post_to_workers([this](Worker& w) {
            for (auto& s : live_sessions(&w))
                s->close();
        });
        finish_if_drained();
        // Closed sessions end as their coroutines unwind; whatever has not
        // ended a second later is dropped with its loop.
        shutdown_timer_.expires_after(std::chrono::seconds(1));
        shutdown_timer_.async_wait([this](error_code ec2) {
            if (!ec2)
                stop_loops();
        });
    });
    finish_if_drained();
}

void Runtime::finish_if_drained()
{
    {
        std::lock_guard lock(sessions_mutex_);
        if (!draining() || !sessions_.empty())
            return;
    }
    stop_loops();
}

void Runtime::stop_loops()
{
    if (stopping_)
        return;
    stopping_ = true;
    // Let the last sessions' coroutines unwind before the loop stops.
    asio::post(io_, [this] {
        if (coordinator_)
            coordinator_->stop();
        if (health_)
            health_->stop();
        // The admin API answers (/ready says 503) until the very end of the drain.
        if (admin_server_)
            admin_server_->stop();
        if (admin_bridge_)
            admin_bridge_->stop();
        error_code ignored;
        signals_.cancel(ignored);
        io_.stop();
    });
}

Runtime::ReloadResult Runtime::reload()
{
    ReloadResult result;
    if (config_path_.empty()) {
        log::warning("reload: running from command-line flags, there is no file to reload");
        result.no_file = true;
        return result;
    }
    auto loaded = load_config_file(config_path_);
    if (!loaded.errors.empty()) {
        for (const auto& e : loaded.errors) {
            log::error("reload: ", e.to_string());
            result.errors.push_back(e.to_string());
        }
        log::error("reload: keeping the running configuration");
        return result;
    }
    const auto& old = settings_->config;
    const auto& next = *loaded.config;
    auto restart_only = [&](bool changed, const char* key) {
        if (changed) {
            log::warning("reload: ", key, " changed; it takes effect after a restart");
            result.warnings.push_back(std::string(key) + " changed; it takes effect after a restart");
        }
    };
    restart_only(old.proxy.listen.to_string() != next.proxy.listen.to_string(), "proxy.listen");
    restart_only(old.proxy.workers != next.proxy.workers, "proxy.workers");
    restart_only(old.proxy.tls_cert != next.proxy.tls_cert || old.proxy.tls_key != next.proxy.tls_key,
                 "proxy.tls_cert/tls_key");
    restart_only(old.admin.listen.to_string() != next.admin.listen.to_string(), "admin.listen");
    restart_only(old.cluster.etcd != next.cluster.etcd || old.cluster.prefix != next.cluster.prefix ||
                     old.cluster.name != next.cluster.name || old.cluster.lease_ttl_ms != next.cluster.lease_ttl_ms,
                 "cluster.*");
    Config applied = next;
    // Keep what cannot change live, so the running state stays truthful.
    applied.proxy.listen = old.proxy.listen;
    applied.proxy.workers = old.proxy.workers;
    applied.proxy.tls_cert = old.proxy.tls_cert;
    applied.proxy.tls_key = old.proxy.tls_key;
    applied.admin.listen = old.admin.listen;
    applied.cluster = old.cluster;
    if (old.cluster.enabled()) {
        // The deployment's backends live in etcd (added, drained, removed
        // through any instance): the file's list seeded it once.
        applied.backends = old.backends;
        if (old.backends != next.backends)
            result.warnings.push_back(
                "backends are shared through etcd in cluster mode: change them with the admin API");
    }
    settings_ = make_settings(std::move(applied));
    {
        std::lock_guard lock(catalogs_mutex_);
        catalogs_.clear();  // write_functions / read_only_functions may have changed
        catalogs_changed_.fetch_add(1, std::memory_order_release);
    }
    post_to_workers([settings = settings_](Worker& w) {
        w.settings = settings;
        w.statement_cache.clear();
    });
    if (health_)
        health_->set_backends(settings_->config.backends);
    log::info("configuration reloaded from ", config_path_);
    return result;
}

// ---- admin API block ---------------------------------------------------------

WorkerStats Runtime::stats(const std::vector<std::string>& backends) const
{
    WorkerStats total;
    for (const auto& w : workers_)
        if (auto one = w->call([worker = w.get(), backends] { return worker->snapshot(backends); }))
            total.add(*one);
    if (in_flight_)
        total.in_flight = in_flight_->snapshot();
    return total;
}

int Runtime::in_flight(const std::string& backend) const
{
    return in_flight_ ? in_flight_->slots(backend)->total() : 0;
}

std::vector<SessionInfo> Runtime::session_infos() const
{
    // Each session is read on its own worker's thread.
    std::vector<SessionInfo> out;
    for (const auto& w : workers_) {
        auto infos = w->call([this, worker = w.get()] {
            std::vector<SessionInfo> mine;
            for (const auto& s : live_sessions(worker))
                mine.push_back(s->info());
            return mine;
        });
        if (infos)
            for (auto& i : *infos)
                out.push_back(std::move(i));
    }
    const auto now = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(sessions_mutex_);
        for (auto& i : out)
            if (auto it = sessions_.find(i.id); it != sessions_.end())
                i.connected_s = std::chrono::duration<double>(now - it->second.started_at).count();
    }
    std::sort(out.begin(), out.end(), [](const SessionInfo& a, const SessionInfo& b) { return a.id < b.id; });
    return out;
}

void Runtime::set_backends(std::vector<BackendConfig> backends)
{
    // Copy the settings (SCRAM secrets included: re-deriving them is slow and
    // would change salts under logged-in clients) and swap the backend list.
    auto next = std::make_shared<Settings>(*settings_);
    next->config.backends = std::move(backends);
    settings_ = std::move(next);
    post_to_workers([settings = settings_](Worker& w) { w.settings = settings; });
    if (health_) {
        health_->set_backends(settings_->config.backends);
        health_->check_now();
    }
}

}  // namespace pgswitch::proxy
