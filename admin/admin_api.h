// What the admin API needs from the running proxy, as one small interface
// (ARCHITECTURE.md §1: admin/ never includes proxy/ headers; proxy/ implements
// this, and tests use a fake). Value types only, plus routing/ snapshots.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/metrics.h"
#include "routing/classifier.h"
#include "routing/cluster_view.h"
#include "routing/router.h"

namespace pgswitch::admin {

/// Server connections pgswitch holds to one backend.
struct ConnectionCounts {
    std::uint64_t active = 0;  ///< running a request or inside a transaction
    std::uint64_t idle = 0;
};

/// Requests routed to one backend since start.
struct QueryCounts {
    std::uint64_t reads = 0;
    std::uint64_t writes = 0;
};

/// One backend: the health checker's view plus the proxy's own figures.
struct BackendStats {
    routing::BackendView view;
    ConnectionCounts connections;
    QueryCounts queries;
};

struct StatementCacheStats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t size = 0;
    std::uint64_t capacity = 0;
};

/// One completed failover (filled once failover lands, issue 6).
struct FailoverEvent {
    std::string at;    ///< RFC 3339 UTC
    std::string from;  ///< old primary
    std::string to;    ///< promoted backend
    std::string reason;
};

struct FailoverStatus {
    std::string mode;            ///< "auto" | "manual" | "external"
    std::string state = "idle";  ///< "idle" while no failover runs
    /// Why writes have no primary right now, or why a claimant was fenced
    /// ("" while one healthy primary takes writes).
    std::string reason;
    std::vector<FailoverEvent> history;
};

/// Everything the read-only endpoints show, taken at one instant.
/// Transaction pooling's server connections (all zero in session mode).
struct PoolStats {
    std::uint64_t open = 0;  ///< idle + lent + being opened
    std::uint64_t idle = 0;
    std::uint64_t waiting = 0;  ///< requests queued for a connection
    std::uint64_t size = 0;     ///< proxy.pool_size (per backend per user and database)
};

/// Several instances on etcd (SPEC §9): GET /status `cluster`.
struct ClusterInfo {
    std::string name;    ///< this instance
    std::string leader;  ///< "" when none holds the lease
    std::uint64_t epoch = 0;
    std::optional<double> etcd_seen_ms_ago;  ///< nullopt: etcd never reached
    std::string etcd_endpoint;
    std::string writes_blocked;  ///< why writes are held back, "" when they are not
    struct Instance {
        std::string name;
        std::string listen;
        std::string admin;
        int id = 0;
    };
    std::vector<Instance> instances;
};

struct Snapshot {
    std::string version;
    double uptime_s = 0;
    bool draining = false;               ///< SIGTERM received: no new clients
    std::optional<std::string> primary;  ///< the usable primary's name
    std::vector<BackendStats> backends;  ///< configuration order
    std::uint64_t clients_active = 0;
    std::uint64_t clients_max = 0;
    PoolStats pool;
    StatementCacheStats statement_cache;
    FailoverStatus failover;
    std::uint64_t failovers_total = 0;
    /// Reads sent to a replica that failed there with 25006 and were re-run on the primary.
    std::uint64_t misroutes_total = 0;
    std::uint64_t replay_waits_reached = 0;  ///< replay waits that ended on the replica
    std::uint64_t replay_waits_missed = 0;   ///< replay waits that fell short (re-run on the primary)
    LatencyHistogram query_latency;
    std::optional<ClusterInfo> cluster;  ///< with [cluster] only
    /// Routing decisions by reason (routing::to_string(Reason)); empty when the
    /// proxy does not count them.
    std::vector<std::pair<std::string, std::uint64_t>> routing_decisions;
};

/// One client connection.
struct ClientInfo {
    std::uint64_t id = 0;
    std::string address;  ///< "host:port"
    std::string user;
    std::string database;
    std::string application_name;
    std::string state;       ///< "login", "idle", "active", "idle in transaction", ...
    std::string backend;     ///< the server its last request went to, "" if none yet
    double connected_s = 0;  ///< seconds since it connected
};

/// A backend to add at run time (POST /backends).
struct NewBackend {
    std::string name;
    std::string host;
    std::uint16_t port = 0;
    int weight = 1;
};

/// Where a statement would go for a fresh session (POST /routing/explain).
struct Explanation {
    routing::Classification classification;
    routing::RouteRequest request;      ///< what the router was asked
    std::optional<std::string> target;  ///< backend name, nullopt when none is usable
    std::string reason;
};

/// Outcome of an operator command, mapped to an HTTP status by the handlers.
struct CommandResult {
    enum class Code {
        done,             ///< 200 (201 for a creation)
        accepted,         ///< 202: started, finishes in the background
        not_found,        ///< 404: no such backend
        conflict,         ///< 409: name taken, or the state forbids it
        invalid,          ///< 400: a bad value (message says which)
        unavailable,      ///< 503: cannot now (e.g. running from flags: nothing to reload)
        not_implemented,  ///< 501
    };
    Code code = Code::done;
    std::string message;  ///< the error, or a short note for success

    [[nodiscard]] static CommandResult ok(std::string note = {}) { return {Code::done, std::move(note)}; }
    [[nodiscard]] static CommandResult error(Code c, std::string message) { return {c, std::move(message)}; }
};

/// Implemented by proxy::AdminBridge. Every call happens on the proxy's
/// event-loop thread (the admin server runs there), so no locking.
class AdminApi {
public:
    virtual ~AdminApi() = default;

    /// The bearer token every endpoint but /health needs; "" = no token.
    /// Asked per request, so a reload that changes it applies at once.
    [[nodiscard]] virtual std::string token() const = 0;
    [[nodiscard]] virtual Snapshot snapshot() const = 0;
    [[nodiscard]] virtual std::vector<ClientInfo> clients() const = 0;
    /// Classifies `sql` and asks the router where a new session's request
    /// would go now, without counting it or moving the balancer.
    [[nodiscard]] virtual Explanation explain(std::string_view sql, std::string_view database) const = 0;

    virtual CommandResult add_backend(const NewBackend& backend) = 0;
    /// Drains, then removes once nothing runs there (accepted), or at once.
    virtual CommandResult remove_backend(std::string_view name) = 0;
    virtual CommandResult drain_backend(std::string_view name) = 0;
    /// Back into rotation; clears a fence too.
    virtual CommandResult enable_backend(std::string_view name) = 0;
    virtual CommandResult reload() = 0;
    virtual CommandResult failover(std::optional<std::string> target) = 0;
};

}  // namespace pgswitch::admin
