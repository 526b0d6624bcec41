// Composition root: owns the event loop, the listener, the health checker,
// the current configuration and cluster snapshots, and every session.
#pragma once

#include <boost/asio/ssl.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "admin/metrics.h"
#include "asio_common.h"
#include "cancel_registry.h"
#include "config.h"
#include "in_flight.h"
#include "server_pool.h"
#include "pg_wire/auth.h"
#include "pg_wire/startup.h"
#include "routing/cluster_view.h"
#include "routing/function_catalog.h"
#include "routing/router.h"
#include "routing/statement_cache.h"
#include "worker.h"

namespace pgswitch::admin {
class HttpServer;
}

namespace pgswitch::proxy {

class AdminBridge;
class ClientSession;
class ClusterCoordinator;
class HealthChecker;
class SessionContext;
struct ServerLink;
struct SessionInfo;

/// A loaded configuration plus what is derived from it once (SCRAM secrets
/// for client authentication). Immutable; swapped whole on reload.
struct Settings {
    Config config;
    /// Per user: the secret clients are verified against.
    std::unordered_map<std::string, wire::auth::ScramSecret> scram_secrets;
    /// config.routing as the router takes it (read on every statement).
    routing::Policy policy;
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

    // ---- for sessions (on their worker's thread) and the main loop -----------
    // Sessions run on proxy.workers event loops (worker.h); the listener, the
    // health checker, signals and the admin API run on the main loop. io(),
    // settings() and cluster() answer for the calling thread's loop.
    [[nodiscard]] asio::io_context& io() noexcept;
    [[nodiscard]] SettingsPtr settings() const noexcept;
    [[nodiscard]] routing::ClusterViewPtr cluster() const noexcept;
    /// Main loop: makes `view` the cluster snapshot everywhere.
    void publish(routing::ClusterViewPtr view);
    /// TLS context when proxy.tls_cert/tls_key are set, else null.
    [[nodiscard]] asio::ssl::context* tls() noexcept { return tls_.get(); }
    [[nodiscard]] CancelRegistry& cancels() noexcept { return cancels_; }
    [[nodiscard]] bool draining() const noexcept { return draining_.load(std::memory_order_relaxed); }
    /// Counts a logged-in client against max_client_connections.
    [[nodiscard]] bool try_admit_client();
    void release_client() noexcept;
    [[nodiscard]] std::size_t client_count() const noexcept { return clients_.load(std::memory_order_relaxed); }
    void session_started(const std::shared_ptr<ClientSession>& s, Worker& worker);
    void session_ended(std::uint64_t id) noexcept;
    /// Asks the health checker for an immediate round (the data path saw a
    /// server connection fail).
    void request_health_check() noexcept;
    /// From a session: `backend` said it is shutting down on purpose (see
    /// HealthChecker::restart_announced).
    void report_restart_announced(const std::string& backend);
    [[nodiscard]] std::uint64_t next_session_id() noexcept { return ++last_session_id_; }
    /// Event-loop workers running sessions (proxy.workers; 0 = one per core).
    [[nodiscard]] std::size_t worker_count() const noexcept { return workers_.size(); }

    // ---- shared by the workers' sessions (SessionContext) -----------------------
    [[nodiscard]] const routing::Policy& policy() const noexcept;
    /// Volatile user functions of `database`, or null when not loaded yet
    /// (or invalidated by DDL).
    /// `stale` (when given) says whether it needs a refresh: missing, or
    /// marked by invalidate_catalog().
    [[nodiscard]] std::shared_ptr<const routing::FunctionCatalog> catalog(const std::string& database,
                                                                          bool* stale = nullptr) const;
    /// Bumped whenever any database's catalog is stored, marked stale or
    /// dropped: a session re-reads its catalog only when this moved.
    [[nodiscard]] std::uint64_t catalogs_changed() const noexcept
    {
        return catalogs_changed_.load(std::memory_order_acquire);
    }
    /// Databases whose catalog is loaded (sessions logged in to them).
    [[nodiscard]] std::vector<std::string> catalog_databases() const;
    /// One catalog row: a function that exists (and whether it is VOLATILE),
    /// or an UNLOGGED relation.
    struct FunctionRow {
        std::string schema;
        std::string name;
        bool is_volatile = false;
        bool unlogged_relation = false;
    };
    /// Builds and stores a database's catalog from every pg_proc row; the
    /// names in `looked_for` that are not among them are stored as missing
    /// (known to be no function, until the next refresh).
    std::shared_ptr<const routing::FunctionCatalog> store_catalog(const std::string& database,
                                                                  const std::vector<FunctionRow>& functions,
                                                                  const std::vector<std::string>& looked_for = {});
    /// Marks a database's catalog stale after DDL that may change functions
    /// (or a read that wrote after all): the next request refreshes it.
    void invalidate_catalog(const std::string& database);
    /// Claims the refresh of `database`'s catalog: false when one is under
    /// way, or (unless `urgent`) when the last one finished under a second
    /// ago. A claim is ended by store_catalog() or end_catalog_refresh().
    [[nodiscard]] bool claim_catalog_refresh(const std::string& database, bool urgent);
    void end_catalog_refresh(const std::string& database);
    /// The WAL position after the newest schema change (DDL) committed
    /// through this pgswitch, by any session (0: none yet). Every session's
    /// reads go to replicas past it (read_your_writes = lsn).
    [[nodiscard]] std::uint64_t schema_lsn() const noexcept { return schema_lsn_.load(std::memory_order_acquire); }
    void publish_schema_lsn(std::uint64_t lsn) noexcept;

    // ---- admin API (admin_bridge.cpp; on the main loop) ----------------------
    /// Every worker's counters, summed (asked on each worker's own thread).
    /// Pool counts are filled in for `backends`.
    [[nodiscard]] WorkerStats stats(const std::vector<std::string>& backends = {}) const;
    /// Statements in flight on `backend` now, over all workers.
    [[nodiscard]] int in_flight(const std::string& backend) const;
    /// A snapshot of every live session.
    [[nodiscard]] std::vector<SessionInfo> session_infos() const;
    [[nodiscard]] std::chrono::steady_clock::time_point started_at() const noexcept { return started_at_; }
    /// Replaces the running backend list (admin add/remove): new Settings, and
    /// the health checker reconciles at once (new names are checked now).
    void set_backends(std::vector<BackendConfig> backends);
    /// Null before run() started it.
    [[nodiscard]] HealthChecker* health() noexcept { return health_.get(); }
    /// The main loop (health checks, coordinator, admin API).
    [[nodiscard]] asio::io_context& main_io() noexcept { return io_; }
    /// Main loop: passes a CancelRequest this instance cannot place to the
    /// instance whose id its secret carries; completes once that instance
    /// closed the connection (it acted on it).
    [[nodiscard]] awaitable<void> forward_cancel(wire::CancelRequest cancel);
    /// [cluster]: the instances' coordination on etcd; null without it.
    [[nodiscard]] ClusterCoordinator* coordinator() noexcept { return coordinator_.get(); }
    [[nodiscard]] const ClusterCoordinator* coordinator() const noexcept { return coordinator_.get(); }
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
    /// Stops the health checker, the admin API and the main loop (run() then
    /// stops the workers).
    void stop_loops();
    [[nodiscard]] bool setup_tls(const Config& c);

    /// The worker for a new client (round robin), as its index.
    std::size_t next_worker() noexcept;
    /// Runs `fn(worker)` on every worker's thread (posted, not waited for).
    void post_to_workers(std::function<void(Worker&)> fn);

    asio::io_context io_{1};
    std::string config_path_;
    SettingsPtr settings_;
    routing::ClusterViewPtr cluster_;
    std::unique_ptr<asio::ssl::context> tls_;
    std::unique_ptr<tcp::acceptor> acceptor_;
    std::unique_ptr<ClusterCoordinator> coordinator_;  // before health_: it outlives it
    std::unique_ptr<HealthChecker> health_;
    asio::signal_set signals_;
    asio::steady_timer shutdown_timer_;
    CancelRegistry cancels_;
    /// Every live session and the worker it runs on (guarded by sessions_mutex_:
    /// sessions start and end on their workers; the main loop reads it).
    struct SessionEntry {
        std::weak_ptr<ClientSession> session;
        Worker* worker = nullptr;
        std::chrono::steady_clock::time_point started_at;
    };
    mutable std::mutex sessions_mutex_;
    std::unordered_map<std::uint64_t, SessionEntry> sessions_;
    /// The live sessions of `w` (or of every worker when null), held.
    [[nodiscard]] std::vector<std::shared_ptr<ClientSession>> live_sessions(const Worker* w = nullptr) const;
    std::atomic<std::size_t> clients_{0};
    std::atomic<std::uint64_t> last_session_id_{0};
    std::atomic<bool> draining_{false};
    std::atomic<std::uint64_t> schema_lsn_{0};
    /// Statements in flight per backend and worker (set up with the workers).
    std::unique_ptr<InFlightBoard> in_flight_;
    /// Function catalogs per database, shared by the workers (rarely written).
    mutable std::mutex catalogs_mutex_;
    struct CatalogEntry {
        std::shared_ptr<const routing::FunctionCatalog> catalog;
        bool stale = false;
        bool refreshing = false;
        std::chrono::steady_clock::time_point refreshed_at{};
    };
    std::unordered_map<std::string, CatalogEntry> catalogs_;
    std::uint64_t catalog_generation_ = 0;
    std::atomic<std::uint64_t> catalogs_changed_{0};
    int exit_code_ = 0;
    bool stopping_ = false;  // stop_loops() ran (main loop only)
    std::size_t next_worker_ = 0;
    // Admin API: the bridge must outlive the server (declared first, destroyed last).
    std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
    std::unique_ptr<AdminBridge> admin_bridge_;
    std::unique_ptr<admin::HttpServer> admin_server_;
    /// What each worker's sessions may use (SessionContext), aligned with workers_.
    std::vector<std::unique_ptr<SessionContext>> contexts_;
    /// Declared last, destroyed first: a worker's loop may still hold
    /// sessions, whose destructors use the members above.
    std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace pgswitch::proxy
