// Prometheus text exposition (format 0.0.4) of an admin::Snapshot, and the
// query-latency histogram the proxy fills. Pure: no I/O, no clocks.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace pgswitch::admin {

struct Snapshot;

/// Fixed-bucket latency histogram in seconds (Prometheus default buckets,
/// plus sub-millisecond ones: a proxied read often takes well under 1 ms).
/// Cheap enough to observe every statement.
class LatencyHistogram {
public:
    static constexpr std::array<double, 14> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

    void observe(double seconds) noexcept;
    /// Adds another histogram's observations (one per event-loop worker).
    void merge(const LatencyHistogram& other) noexcept;
    /// Observations <= bounds[i] (cumulative, as Prometheus wants); the +Inf
    /// bucket is count().
    [[nodiscard]] std::uint64_t cumulative(std::size_t i) const noexcept;
    [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
    [[nodiscard]] double sum() const noexcept { return sum_; }

private:
    std::array<std::uint64_t, bounds.size()> buckets_{};  ///< per bucket, not cumulative
    std::uint64_t count_ = 0;
    double sum_ = 0;
};

/// Renders every metric family with HELP and TYPE lines:
/// pgswitch_queries_total{backend,kind}, pgswitch_routing_decisions_total{reason},
/// pgswitch_backend_up{backend}, pgswitch_backend_role{backend,role},
/// pgswitch_backend_lag_bytes{backend}, pgswitch_client_connections,
/// pgswitch_max_client_connections, pgswitch_server_connections{backend,state},
/// pgswitch_failovers_total, pgswitch_query_duration_seconds (histogram),
/// pgswitch_statement_cache_{hits,misses}_total, pgswitch_statement_cache_entries,
/// pgswitch_uptime_seconds, pgswitch_build_info{version}.
[[nodiscard]] std::string render_prometheus(const Snapshot& s);

/// Escapes a label value: backslash, double quote and newline.
[[nodiscard]] std::string escape_label(std::string_view value);

}  // namespace pgswitch::admin
