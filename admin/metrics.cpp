#include "admin/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "admin/admin_api.h"

namespace pgswitch::admin {

void LatencyHistogram::observe(double seconds) noexcept
{
    if (!(seconds >= 0))  // NaN or negative: a clock bug must not poison the sum
        seconds = 0;
    ++count_;
    sum_ += seconds;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
        if (seconds <= bounds[i]) {
            ++buckets_[i];
            return;
        }
    }
}

void LatencyHistogram::merge(const LatencyHistogram& other) noexcept
{
    for (std::size_t i = 0; i < buckets_.size(); ++i)
        buckets_[i] += other.buckets_[i];
    count_ += other.count_;
    sum_ += other.sum_;
}

std::uint64_t LatencyHistogram::cumulative(std::size_t i) const noexcept
{
    std::uint64_t n = 0;
    for (std::size_t j = 0; j <= i && j < buckets_.size(); ++j)
        n += buckets_[j];
    return n;
}

std::string escape_label(std::string_view value)
{
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        switch (c) {
        case '\\':
            out += "\\\\";
            break;
        case '"':
            out += "\\\"";
            break;
        case '\n':
            out += "\\n";
            break;
        default:
            out += c;
        }
    }
    return out;
}

namespace {

/// Prometheus float formatting: shortest round-trip, +Inf/-Inf/NaN spelled its way.
std::string format_value(double v)
{
    if (std::isnan(v))
        return "NaN";
    if (std::isinf(v))
        return v > 0 ? "+Inf" : "-Inf";
    // The shortest form that reads back as the same double (0.25, not 0.25000000000000000).
    char buf[32];
    for (int precision = 6; precision <= 17; ++precision) {
        std::snprintf(buf, sizeof buf, "%.*g", precision, v);
        if (std::strtod(buf, nullptr) == v)
            break;
    }
    return buf;
}

class Writer {
public:
    void family(std::string_view name, std::string_view type, std::string_view help)
    {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }

    /// One sample; `labels` alternate name, value.
    void sample(std::string_view name, std::initializer_list<std::string_view> labels, std::string_view value)
    {
        out_ += name;
        if (labels.size() > 0) {
            out_ += '{';
            bool first = true;
            for (auto it = labels.begin(); it != labels.end(); it += 2) {
                if (!first)
                    out_ += ',';
                first = false;
                out_ += *it;
                out_ += "=\"";
                out_ += escape_label(*(it + 1));
                out_ += '"';
            }
            out_ += '}';
        }
        out_ += ' ';
        out_ += value;
        out_ += '\n';
    }
    void sample(std::string_view name, std::initializer_list<std::string_view> labels, std::uint64_t value)
    {
        sample(name, labels, std::to_string(value));
    }

    [[nodiscard]] std::string take() { return std::move(out_); }

private:
    std::string out_;
};

/// Build and uptime.
void write_process(Writer& w, const Snapshot& s)
{
    w.family("pgswitch_build_info", "gauge", "pgswitch version (always 1)");
    w.sample("pgswitch_build_info", {"version", s.version}, 1);
    w.family("pgswitch_uptime_seconds", "gauge", "Seconds since pgswitch started");
    w.sample("pgswitch_uptime_seconds", {}, format_value(s.uptime_s));
}

/// Where requests went and why: per backend and kind, decisions, misroutes, replay waits.
void write_routing(Writer& w, const Snapshot& s)
{
    w.family("pgswitch_queries_total", "counter", "Requests routed, by backend and kind (read or write)");
    for (const auto& b : s.backends) {
        w.sample("pgswitch_queries_total", {"backend", b.view.name, "kind", "read"}, b.queries.reads);
        w.sample("pgswitch_queries_total", {"backend", b.view.name, "kind", "write"}, b.queries.writes);
    }

    w.family("pgswitch_routing_decisions_total", "counter", "Routing decisions, by reason");
    for (const auto& [reason, n] : s.routing_decisions)
        w.sample("pgswitch_routing_decisions_total", {"reason", reason}, n);

    w.family("pgswitch_misroutes_total", "counter",
             "Reads routed to a replica that failed there with 25006 (read-only) and were re-run on the primary");
    w.sample("pgswitch_misroutes_total", {}, s.misroutes_total);
    w.family("pgswitch_replay_waits_total", "counter",
             "Reads after a write that waited on a replica for it to replay that write, by outcome "
             "(replica: it did, within routing.read_your_writes_wait_ms; primary: it did not, the read re-ran there)");
    w.sample("pgswitch_replay_waits_total", {"outcome", "replica"}, s.replay_waits_reached);
    w.sample("pgswitch_replay_waits_total", {"outcome", "primary"}, s.replay_waits_missed);
}

/// Each backend's health, role and lag.
void write_backends(Writer& w, const Snapshot& s)
{
    w.family("pgswitch_backend_up", "gauge", "1 when the backend is up (passing health checks, not drained or fenced)");
    for (const auto& b : s.backends)
        w.sample("pgswitch_backend_up", {"backend", b.view.name}, b.view.state == routing::BackendState::up ? 1 : 0);

    w.family("pgswitch_backend_role", "gauge", "1 for the role the backend reports (primary, replica, unknown)");
    for (const auto& b : s.backends)
        for (auto role : {routing::Role::primary, routing::Role::replica, routing::Role::unknown})
            w.sample("pgswitch_backend_role", {"backend", b.view.name, "role", routing::to_string(role)},
                     b.view.role == role ? 1 : 0);

    w.family("pgswitch_backend_lag_bytes", "gauge", "Replica replay lag behind the primary's WAL position, in bytes");
    for (const auto& b : s.backends)
        if (b.view.lag_bytes)
            w.sample("pgswitch_backend_lag_bytes", {"backend", b.view.name}, *b.view.lag_bytes);
}

/// Clients, the transaction pool and the server connections held.
void write_connections(Writer& w, const Snapshot& s)
{
    w.family("pgswitch_client_connections", "gauge", "Logged-in client connections");
    w.sample("pgswitch_client_connections", {}, s.clients_active);
    w.family("pgswitch_max_client_connections", "gauge", "proxy.max_client_connections");
    w.sample("pgswitch_max_client_connections", {}, s.clients_max);

    w.family("pgswitch_pool_server_connections", "gauge",
             "Transaction pooling: pooled server connections, by state (open = idle + lent + opening)");
    w.sample("pgswitch_pool_server_connections", {"state", "open"}, s.pool.open);
    w.sample("pgswitch_pool_server_connections", {"state", "idle"}, s.pool.idle);
    w.family("pgswitch_pool_waiting_requests", "gauge",
             "Transaction pooling: requests waiting for a server connection");
    w.sample("pgswitch_pool_waiting_requests", {}, s.pool.waiting);
    w.family("pgswitch_pool_size", "gauge", "proxy.pool_size");
    w.sample("pgswitch_pool_size", {}, s.pool.size);
    w.family("pgswitch_server_connections", "gauge", "Server connections held, by backend and state (active, idle)");
    for (const auto& b : s.backends) {
        w.sample("pgswitch_server_connections", {"backend", b.view.name, "state", "active"}, b.connections.active);
        w.sample("pgswitch_server_connections", {"backend", b.view.name, "state", "idle"}, b.connections.idle);
    }
}

/// Failovers, query latency and the classifier cache.
void write_failovers_and_latency(Writer& w, const Snapshot& s)
{
    w.family("pgswitch_failovers_total", "counter", "Completed failovers (promotions)");
    w.sample("pgswitch_failovers_total", {}, s.failovers_total);

    const auto& h = s.query_latency;
    w.family("pgswitch_query_duration_seconds", "histogram",
             "Time from a request reaching a server to its ReadyForQuery, in seconds");
    for (std::size_t i = 0; i < LatencyHistogram::bounds.size(); ++i)
        w.sample("pgswitch_query_duration_seconds_bucket", {"le", format_value(LatencyHistogram::bounds[i])},
                 h.cumulative(i));
    w.sample("pgswitch_query_duration_seconds_bucket", {"le", "+Inf"}, h.count());
    w.sample("pgswitch_query_duration_seconds_sum", {}, format_value(h.sum()));
    w.sample("pgswitch_query_duration_seconds_count", {}, h.count());

    w.family("pgswitch_statement_cache_hits_total", "counter", "Classifier cache hits");
    w.sample("pgswitch_statement_cache_hits_total", {}, s.statement_cache.hits);
    w.family("pgswitch_statement_cache_misses_total", "counter", "Classifier cache misses (statements parsed)");
    w.sample("pgswitch_statement_cache_misses_total", {}, s.statement_cache.misses);
    w.family("pgswitch_statement_cache_entries", "gauge", "Statements in the classifier cache");
    w.sample("pgswitch_statement_cache_entries", {}, s.statement_cache.size);
}

}  // namespace

std::string render_prometheus(const Snapshot& s)
{
    Writer w;
    write_process(w, s);
    write_routing(w, s);
    write_backends(w, s);
    write_connections(w, s);
    write_failovers_and_latency(w, s);
    return w.take();
}

}  // namespace pgswitch::admin
