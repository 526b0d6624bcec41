// What several pgswitch instances share through etcd (SPEC §9): who the
// primary is (the topology the leading instance writes, with an epoch that
// only grows), the backends operators added, drained or removed, and who the
// instances are. Pure values and their JSON; no I/O.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgswitch::routing {

/// One failover the leader carried out.
struct FailoverEntry {
    std::uint64_t epoch = 0;
    std::string at;  ///< RFC 3339 UTC
    std::string from;
    std::string to;
    std::string reason;
    bool operator==(const FailoverEntry&) const = default;
};

struct Topology {
    /// Bumped by every promotion: instances write only to the primary of the
    /// newest epoch they have seen.
    std::uint64_t epoch = 0;
    std::string primary;                        ///< "" until a primary was recorded
    std::map<std::string, std::string> fenced;  ///< backend name → why
    std::vector<FailoverEntry> history;
    bool operator==(const Topology&) const = default;
};

/// The topology after promoting `candidate` in place of `old_primary`
/// (fenced, unless empty): epoch + 1, the failover appended to the history
/// (which keeps its last `history_limit` entries).
[[nodiscard]] Topology after_promotion(const Topology& t, const std::string& candidate, const std::string& old_primary,
                                       const std::string& reason, const std::string& at,
                                       std::size_t history_limit = 50);

/// A backend as the deployment shares it (POST /backends, drain, remove).
struct SharedBackend {
    std::string name;
    std::string host;
    std::uint16_t port = 5432;
    int weight = 1;
    bool drained = false;
    bool operator==(const SharedBackend&) const = default;
};

/// One registered instance.
struct InstanceInfo {
    std::string name;
    std::string listen;  ///< "host:port" of its SQL listener (cancels are forwarded there)
    std::string admin;   ///< "host:port" of its admin API
    int id = 0;          ///< 1..127, carried in the secret keys it hands out
    bool operator==(const InstanceInfo&) const = default;
};

[[nodiscard]] std::string encode(const Topology& t);
[[nodiscard]] std::optional<Topology> decode_topology(std::string_view json);
[[nodiscard]] std::string encode(const std::vector<SharedBackend>& backends);
[[nodiscard]] std::optional<std::vector<SharedBackend>> decode_backends(std::string_view json);
[[nodiscard]] std::string encode(const InstanceInfo& i);
[[nodiscard]] std::optional<InstanceInfo> decode_instance(std::string_view json);

/// The instance id a secret key carries (0: none, a key of an instance not
/// in a cluster). Secrets are (id << 24) | 24 random bits, positive.
[[nodiscard]] constexpr int instance_of_secret(std::int32_t secret) noexcept
{
    return static_cast<int>((static_cast<std::uint32_t>(secret) >> 24) & 0x7f);
}
[[nodiscard]] constexpr std::int32_t secret_with_instance(std::int32_t random, int id) noexcept
{
    return static_cast<std::int32_t>((static_cast<std::uint32_t>(id & 0x7f) << 24) |
                                     (static_cast<std::uint32_t>(random) & 0xffffffu));
}

}  // namespace pgswitch::routing
