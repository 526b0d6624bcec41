// Composition root: owns the event loop, the listener, the health checker,
// the current configuration and cluster snapshots, and every session.
#pragma once

#include <boost/asio/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "asio_common.h"
#include "cancel_registry.h"
#include "config.h"
#include "pg_wire/auth.h"
#include "routing/cluster_view.h"
#include "routing/function_catalog.h"
#include "routing/router.h"
#include "routing/statement_cache.h"

namespace pgswitch::proxy {

class ClientSession;
class HealthChecker;

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

private:
    awaitable<void> accept_loop();
    awaitable<void> signal_loop();
    void reload();
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
    std::unordered_map<std::uint64_t, std::weak_ptr<ClientSession>> sessions_;
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
};

}  // namespace pgswitch::proxy
