// Composition root: owns the event loop, the listener, the health checker,
// the current configuration and cluster snapshots, and every session.
#pragma once

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>

#include "admin/metrics.h"
#include "asio_common.h"
#include "cancel_registry.h"
#include "config.h"
#include "server_pool.h"
#include "pg_wire/auth.h"
#include "routing/cluster_view.h"
#include "routing/function_catalog.h"
#include "routing/router.h"
#include "routing/statement_cache.h"

namespace pgswitch::admin {
class HttpServer;
}

namespace pgswitch::proxy {

class AdminBridge;
class ClientSession;
class HealthChecker;
struct SessionInfo;

/// A loaded configuration plus what is derived from it once (SCRAM secrets
/// for client authentication). Immutable; swapped whole on reload.
struct Settings {
    Config config;
    /// Per user: the secret clients are verified against.
    std::unordered_map<std::string, wire::auth::ScramSecret> scram_secrets;
};
using SettingsPtr = std::shared_ptr<const Settings>;

/// Builds Settings, deriving SCRAM secrets from plaintext passwords.
[[nodiscard]] SettingsPtr make_settings(Config config);

class Runtime {
public:
    Runtime(Config config, std::string config_path);
    ~Runtime();

    /// Runs until SIGTERM/SIGINT and the drain finish. Returns the exit code.
    int run();

    // ---- for sessions and the health checker (all on the loop's thread) ----
    [[nodiscard]] asio::io_context& io() noexcept { return io_; }
    [[nodiscard]] SettingsPtr settings() const noexcept { return settings_; }
    [[nodiscard]] routing::ClusterViewPtr cluster() const noexcept { return cluster_; }
    void publish(routing::ClusterViewPtr view);
    /// TLS context when proxy.tls_cert/tls_key are set, else null.
    [[nodiscard]] asio::ssl::context* tls() noexcept { return tls_.get(); }
    [[nodiscard]] CancelRegistry& cancels() noexcept { return cancels_; }
    /// Transaction pooling's server connections (proxy.pool_mode = "transaction").
    [[nodiscard]] ServerPool& pool() noexcept { return pool_; }
    [[nodiscard]] bool draining() const noexcept { return draining_; }
    /// Counts a logged-in client against max_client_connections.
    [[nodiscard]] bool try_admit_client();
    void release_client() noexcept;
    [[nodiscard]] std::size_t client_count() const noexcept { return clients_; }
    void session_started(const std::shared_ptr<ClientSession>& s);
    void session_ended(std::uint64_t id) noexcept;
    /// Asks the health checker for an immediate round (the data path saw a
    /// server connection fail).
    void request_health_check() noexcept;
    [[nodiscard]] std::uint64_t next_session_id() noexcept { return ++last_session_id_; }

    // ---- routing (single-threaded: the loop's thread) ------------------------
    [[nodiscard]] routing::StatementCache& statement_cache() noexcept { return statement_cache_; }
    [[nodiscard]] routing::BalancerState& balancer() noexcept { return balancer_; }
    [[nodiscard]] routing::Policy policy() const noexcept;
    /// Volatile user functions of `database`, or null when not loaded yet
    /// (or invalidated by DDL).
    [[nodiscard]] std::shared_ptr<const routing::FunctionCatalog> catalog(const std::string& database) const;
    /// Builds and stores a database's catalog from pg_proc rows (schema, name).
    std::shared_ptr<const routing::FunctionCatalog> store_catalog(
        const std::string& database, const std::vector<std::pair<std::string, std::string>>& volatile_functions);
    /// Forgets a database's catalog after DDL that may change functions.
    void invalidate_catalog(const std::string& database);
    /// Statements in flight per backend, aligned with `view` (least_connections).
    [[nodiscard]] std::vector<int> in_flight(const routing::ClusterView& view) const;
    void add_in_flight(const std::string& backend, int delta);
    /// Counts a routed request per backend and kind (reads/writes).
    void count_query(const std::string& backend, bool write);
    /// A read the classifier sent to a replica failed there with 25006 and
    /// was re-run on the primary.
    void count_misroute() noexcept { ++misroutes_; }
    [[nodiscard]] std::uint64_t misroutes() const noexcept { return misroutes_; }

    // ---- admin API (admin_bridge.cpp; all on the loop's thread) --------------
    /// One request's time from being sent to a server to its ReadyForQuery,
    /// for the pgswitch_query_duration_seconds histogram (fed by sessions).
    void observe_query_latency(double seconds) noexcept { query_latency_.observe(seconds); }
    /// Counts a routing decision by reason (pgswitch_routing_decisions_total).
    void count_route_decision(routing::Reason reason) noexcept { ++route_decisions_[reason]; }
    [[nodiscard]] const admin::LatencyHistogram& query_latency() const noexcept { return query_latency_; }
    [[nodiscard]] const std::map<routing::Reason, std::uint64_t>& route_decisions() const noexcept
    {
        return route_decisions_;
    }
    /// Requests routed to `backend` since start: {reads, writes}.
    [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> query_counts(const std::string& backend) const;
    /// Statements in flight on `backend` now.
    [[nodiscard]] int in_flight(const std::string& backend) const;
    /// A snapshot of every live session.
    [[nodiscard]] std::vector<SessionInfo> session_infos() const;
    [[nodiscard]] std::chrono::steady_clock::time_point started_at() const noexcept { return started_at_; }
    /// Replaces the running backend list (admin add/remove): new Settings, and
    /// the health checker reconciles at once (new names are checked now).
    void set_backends(std::vector<BackendConfig> backends);
    /// Null before run() started it.
    [[nodiscard]] HealthChecker* health() noexcept { return health_.get(); }
    struct ReloadResult {
        bool no_file = false;               ///< running from flags: nothing to reload
        std::vector<std::string> errors;    ///< the file's problems; running config kept
        std::vector<std::string> warnings;  ///< keys that need a restart
    };
    /// Re-reads the config file (SIGHUP, POST /reload).
    ReloadResult reload();
    // ---- end of admin API block ----------------------------------------------

private:
    awaitable<void> accept_loop();
    awaitable<void> signal_loop();
    void begin_shutdown();
    void finish_if_drained();
    [[nodiscard]] bool setup_tls(const Config& c);

    asio::io_context io_{1};
    std::string config_path_;
    SettingsPtr settings_;
    routing::ClusterViewPtr cluster_;
    std::unique_ptr<asio::ssl::context> tls_;
    std::unique_ptr<tcp::acceptor> acceptor_;
    std::unique_ptr<HealthChecker> health_;
    asio::signal_set signals_;
    asio::steady_timer shutdown_timer_;
    CancelRegistry cancels_;
    ServerPool pool_;
    std::unordered_map<std::uint64_t, std::weak_ptr<ClientSession>> sessions_;
    std::unordered_map<std::uint64_t, std::chrono::steady_clock::time_point> session_started_at_;  // admin
    std::size_t clients_ = 0;
    std::uint64_t last_session_id_ = 0;
    bool draining_ = false;
    routing::StatementCache statement_cache_;
    routing::BalancerState balancer_;
    std::unordered_map<std::string, std::shared_ptr<const routing::FunctionCatalog>> catalogs_;
    std::uint64_t catalog_generation_ = 0;
    std::unordered_map<std::string, int> in_flight_;
    struct QueryCounts {
        std::uint64_t reads = 0;
        std::uint64_t writes = 0;
    };
    std::unordered_map<std::string, QueryCounts> query_counts_;
    std::uint64_t misroutes_ = 0;
    int exit_code_ = 0;
    // Admin API: the bridge must outlive the server (declared first, destroyed last).
    std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
    admin::LatencyHistogram query_latency_;
    std::map<routing::Reason, std::uint64_t> route_decisions_;
    std::unique_ptr<AdminBridge> admin_bridge_;
    std::unique_ptr<admin::HttpServer> admin_server_;
};

}  // namespace pgswitch::proxy
