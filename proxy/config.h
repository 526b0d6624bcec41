// pgswitch configuration: the TOML file of SPEC §2, or the command-line flags
// of SPEC §1. Loading collects every problem, naming file and key. The keys
// (name, type, allowed values) are listed in config_keys.h; the member
// initialisers below are their defaults.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "routing/cache_eligibility.h"
#include "routing/failover_policy.h"
#include "routing/router.h"

namespace pgswitch::proxy {

/// "host:port" split; host may be a name, an IPv4 or a bracketed IPv6 address.
struct Endpoint {
    std::string host;
    std::uint16_t port = 0;
    [[nodiscard]] std::string to_string() const;
};

enum class PoolMode { session, transaction };
// The routing layer's own settings, configured here (their spellings are in
// config_keys.cpp, with the others').
using LoadBalancing = routing::LoadBalancing;
using ReadYourWrites = routing::ReadYourWrites;
using FailoverMode = routing::FailoverMode;
using CacheStatements = routing::CacheStatements;
/// cache.invalidation: who tells the cache that a table changed.
enum class CacheInvalidation {
    wal,    ///< logical decoding of the primary's commits (wal_level = logical)
    proxy,  ///< only writes through this pgswitch; ttl_ms bounds the rest
};
/// How pgswitch asks clients for their password.
enum class AuthMethod { scram_sha_256, md5, password };

struct ProxySettings {
    Endpoint listen{"127.0.0.1", 6432};
    int workers = 0;  ///< 0 = one per core
    int max_client_connections = 1000;
    PoolMode pool_mode = PoolMode::session;
    int pool_size = 20;
    /// Transaction mode: how long a request waits for a pooled server
    /// connection before it fails with 53300.
    int query_wait_timeout_ms = 5000;
    int connect_timeout_ms = 3000;
    int shutdown_timeout_ms = 10000;
    std::string tls_cert;  ///< PEM file; TLS offered when both are set
    std::string tls_key;
    std::int64_t max_message_bytes = 256LL << 20;  ///< larger client messages close the client (08P01)
};

struct AdminSettings {
    Endpoint listen{"127.0.0.1", 6480};
    std::string token;
};

struct RoutingSettings {
    LoadBalancing load_balancing = LoadBalancing::round_robin;
    bool primary_reads = false;
    std::int64_t max_replica_lag_bytes = 16777216;
    ReadYourWrites read_your_writes = ReadYourWrites::lsn;
    /// A read after a write waits this long on a replica for it to replay
    /// that write, before going to the primary (0: straight to the primary).
    int read_your_writes_wait_ms = 20;
    std::vector<std::string> write_functions;
    std::vector<std::string> read_only_functions;
};

struct HealthSettings {
    int interval_ms = 1000;
    int timeout_ms = 1000;
    int failure_threshold = 3;
    /// A backend whose failed checks say it is shutting down or starting up
    /// (57P03, or 57P01 "administrator command") is not down before this
    /// long: a restart that comes straight back is not a failover. 0 = off.
    int restart_grace_ms = 2000;
    std::string user = "postgres";
    std::string password;
    std::string database = "postgres";
};

struct FailoverSettings {
    FailoverMode mode = FailoverMode::automatic;
    int wait_for_primary_ms = 10000;
};

/// [cluster]: several instances coordinated on etcd (SPEC §9); off while
/// `etcd` is empty.
struct ClusterSettings {
    std::vector<std::string> etcd;  ///< client URLs, "http://host:port"
    std::string prefix = "/pgswitch/default";
    std::string name;  ///< "" = host name + ":" + listen port
    int lease_ttl_ms = 3000;
    [[nodiscard]] bool enabled() const noexcept { return !etcd.empty(); }
};

/// [cache]: the result cache (SPEC §7), off by default.
struct CacheSettings {
    bool enabled = false;
    CacheStatements statements = CacheStatements::hinted;
    int max_memory_mb = 64;
    int ttl_ms = 60000;
    int max_entry_kb = 1024;
    CacheInvalidation invalidation = CacheInvalidation::wal;
};

struct BackendConfig {
    std::string name;
    std::string host;
    std::uint16_t port = 5432;
    int weight = 1;
    bool operator==(const BackendConfig&) const = default;
};

struct UserConfig {
    std::string name;
    std::optional<std::string> password;      ///< plaintext
    std::optional<std::string> scram_secret;  ///< "SCRAM-SHA-256$..." (client auth by SCRAM only)
    AuthMethod auth_method = AuthMethod::scram_sha_256;
};

struct Config {
    std::string source;  ///< the file it came from, "" for flags
    ProxySettings proxy;
    AdminSettings admin;
    RoutingSettings routing;
    HealthSettings health;
    FailoverSettings failover;
    ClusterSettings cluster;
    CacheSettings cache;
    std::vector<BackendConfig> backends;
    std::vector<UserConfig> users;

    [[nodiscard]] const UserConfig* find_user(std::string_view name) const noexcept;
};

/// One problem found while loading: where and what.
struct ConfigError {
    std::string file;  ///< "" for command-line flags
    std::string key;   ///< dotted path, e.g. "proxy.pool_size" or "backends[1].port"
    std::string message;
    [[nodiscard]] std::string to_string() const;
};

struct LoadResult {
    std::optional<Config> config;     ///< set when errors is empty
    std::vector<ConfigError> errors;  ///< every problem found, not just the first
};

/// Parses TOML text (file name used only in messages). Reports unknown keys,
/// wrong types, impossible values, duplicate backend/user names, a user with
/// neither password nor scram_secret, md5/password auth without a plaintext
/// password, and a non-loopback admin.listen with an empty admin.token.
[[nodiscard]] LoadResult parse_config(std::string_view toml_text, const std::string& file_name);
/// Reads and parses a file (an unreadable file is one error naming it).
[[nodiscard]] LoadResult load_config_file(const std::string& path);
/// Validates a Config built some other way (flags); the same rules as parse_config.
[[nodiscard]] std::vector<ConfigError> validate(const Config& c);
/// Parses "host:port" / "[v6]:port" (errors name `key`).
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view text);

/// What the command line asked for.
struct CommandLine {
    enum class Action { run, check, version, help };
    Action action = Action::run;
    std::string config_path;          ///< -c / --config
    std::optional<Endpoint> primary;  ///< --primary (flag mode)
    std::vector<Endpoint> replicas;   ///< --replica, repeatable
    std::optional<Endpoint> listen;   ///< --listen
    std::optional<Endpoint> admin_listen;
    std::string user;      ///< --user
    std::string password;  ///< --password
};

struct CommandLineResult {
    std::optional<CommandLine> cmd;
    std::vector<std::string> errors;
};
[[nodiscard]] CommandLineResult parse_command_line(int argc, const char* const* argv);
/// Builds the Config for flag mode: backends "primary", "replica1".. from the
/// endpoints (roles are still discovered), one user that is also the health
/// user, and the listeners. Validation errors are returned as in parse_config.
[[nodiscard]] LoadResult config_from_flags(const CommandLine& cmd);
/// Text printed by --help.
[[nodiscard]] std::string usage_text();

[[nodiscard]] std::string_view to_string(PoolMode m) noexcept;
[[nodiscard]] std::string_view to_string(LoadBalancing m) noexcept;
[[nodiscard]] std::string_view to_string(ReadYourWrites m) noexcept;
[[nodiscard]] std::string_view to_string(FailoverMode m) noexcept;
[[nodiscard]] std::string_view to_string(AuthMethod m) noexcept;
[[nodiscard]] std::string_view to_string(CacheStatements m) noexcept;
[[nodiscard]] std::string_view to_string(CacheInvalidation m) noexcept;

}  // namespace pgswitch::proxy
