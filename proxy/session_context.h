// What a client session may use of the process, and nothing more: its own
// worker's loop and routing state (reached directly, unshared, no lock and no
// thread-local lookup), and the few services every worker shares (function
// catalogs, cancel keys, admission, health-check requests, the schema's WAL
// position). The admin API, reload, publish and the main loop's controls are
// Runtime's and not a session's. One per worker, made by Runtime.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "asio_common.h"
#include "runtime.h"
#include "worker.h"

namespace pgswitch::proxy {

struct ServerLink;

class SessionContext {
public:
    SessionContext(Runtime& runtime, Worker& worker) : runtime_(runtime), worker_(worker) {}
    SessionContext(const SessionContext&) = delete;
    SessionContext& operator=(const SessionContext&) = delete;

    // ---- the session's worker --------------------------------------------------
    [[nodiscard]] asio::io_context& io() noexcept { return worker_.io(); }
    [[nodiscard]] const SettingsPtr& settings() const noexcept { return worker_.settings; }
    /// config.routing as the router takes it; valid until the caller next suspends.
    [[nodiscard]] const routing::Policy& policy() const noexcept { return worker_.settings->policy; }
    [[nodiscard]] const routing::ClusterViewPtr& cluster() const noexcept { return worker_.cluster; }
    /// The current view without a reference count: valid until the caller
    /// next suspends (a new view replaces it only between handlers).
    [[nodiscard]] const routing::ClusterView& cluster_now() const noexcept { return *worker_.cluster; }
    /// Sleeps until the worker gets a new cluster view, `deadline`, or
    /// cluster_change_retry, whichever comes first: what a session waiting
    /// for a primary (or any server) does between two looks.
    [[nodiscard]] awaitable<void> wait_for_cluster_change(std::chrono::steady_clock::time_point deadline);
    static constexpr std::chrono::milliseconds cluster_change_retry{250};
    [[nodiscard]] ServerPool& pool() noexcept { return worker_.pool; }
    [[nodiscard]] routing::StatementCache& statement_cache() noexcept { return worker_.statement_cache; }
    [[nodiscard]] routing::BalancerState& balancer() noexcept { return worker_.balancer; }
    [[nodiscard]] routing::ReplayKnowledge& replay_knowledge() noexcept { return worker_.replay_knowledge; }
    /// This worker's load on each of `view`'s backends (statements in flight,
    /// response times) for a pick now; valid until the next call.
    [[nodiscard]] routing::Load loads(const routing::ClusterView& view)
    {
        return worker_.loads.figures(view, std::chrono::steady_clock::now());
    }
    /// A client statement starts on `link` / ends there (`completed`: its
    /// reply arrived; the time it took feeds the latency figures).
    void statement_started(ServerLink& link) noexcept;
    void statement_ended(ServerLink& link, std::chrono::steady_clock::time_point sent, bool completed) noexcept;
    /// `n` client statements on `link` will get no reply (the link or session closed).
    void statements_dropped(ServerLink& link, int n) noexcept;
    /// Counts a statement routed to `link`'s backend.
    void count_query(ServerLink& link, bool write);
    void count_misroute() noexcept { ++worker_.stats.misroutes; }
    void count_replay_wait(bool reached) noexcept
    {
        ++(reached ? worker_.stats.replay_waits_reached : worker_.stats.replay_waits_missed);
    }
    void count_route_decision(routing::Reason reason) { ++worker_.stats.route_decisions[reason]; }
    [[nodiscard]] std::size_t worker_count() const noexcept { return runtime_.worker_count(); }

    // ---- shared by every worker --------------------------------------------------
    [[nodiscard]] std::uint64_t next_session_id() noexcept { return runtime_.next_session_id(); }
    [[nodiscard]] asio::ssl::context* tls() noexcept { return runtime_.tls(); }
    [[nodiscard]] CancelRegistry& cancels() noexcept { return runtime_.cancels(); }
    [[nodiscard]] bool draining() const noexcept { return runtime_.draining(); }
    [[nodiscard]] bool try_admit_client() { return runtime_.try_admit_client(); }
    void release_client() noexcept { runtime_.release_client(); }
    void session_started(const std::shared_ptr<ClientSession>& s) { runtime_.session_started(s, worker_); }
    void session_ended(std::uint64_t id) noexcept { runtime_.session_ended(id); }
    void request_health_check() noexcept { runtime_.request_health_check(); }
    void report_restart_announced(const std::string& backend) { runtime_.report_restart_announced(backend); }
    /// A CancelRequest this instance cannot place may belong to another
    /// instance ([cluster]): forward_cancel() passes it there (on the main loop).
    [[nodiscard]] bool can_forward_cancel() const noexcept { return runtime_.coordinator() != nullptr; }
    [[nodiscard]] awaitable<void> forward_cancel(wire::CancelRequest cancel);

    [[nodiscard]] std::shared_ptr<const routing::FunctionCatalog> catalog(const std::string& database,
                                                                          bool* stale = nullptr) const
    {
        return runtime_.catalog(database, stale);
    }
    [[nodiscard]] std::uint64_t catalogs_changed() const noexcept { return runtime_.catalogs_changed(); }
    std::shared_ptr<const routing::FunctionCatalog> store_catalog(const std::string& database,
                                                                  const std::vector<Runtime::FunctionRow>& functions,
                                                                  const std::vector<std::string>& looked_for = {})
    {
        return runtime_.store_catalog(database, functions, looked_for);
    }
    void invalidate_catalog(const std::string& database) { runtime_.invalidate_catalog(database); }
    [[nodiscard]] bool claim_catalog_refresh(const std::string& database, bool urgent)
    {
        return runtime_.claim_catalog_refresh(database, urgent);
    }
    void end_catalog_refresh(const std::string& database) { runtime_.end_catalog_refresh(database); }
    [[nodiscard]] std::uint64_t schema_lsn() const noexcept { return runtime_.schema_lsn(); }
    void publish_schema_lsn(std::uint64_t lsn) noexcept { runtime_.publish_schema_lsn(lsn); }

private:
    Runtime& runtime_;
    Worker& worker_;
};

}  // namespace pgswitch::proxy
