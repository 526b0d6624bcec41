// The configuration's keys, each listed once (SPEC §2). For every [section]
// and every [[backends]] / [[users]] entry: each key's name, the Config member
// it fills (which gives its type; the member's initialiser in config.h is its
// default) and the values it allows. The TOML reader (config_toml.cpp),
// validate() (config_validate.cpp) and the command line (config_cli.cpp) all
// read these tables; none of them spells a key's type, default or range again.
#pragma once

#include "proxy/config.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace pgswitch::proxy::config_keys {

// ---------------------------------------------------------------------------
// Key paths and values as messages show them.

/// `prefix.k` ("k" at top level), k quoted unless it is a bare TOML key, so
/// that `"a.b" = 1` is not mistaken for `a.b = 1` in a message.
[[nodiscard]] std::string dotted(const std::string& prefix, std::string_view k);
/// `prefix[i]`
[[nodiscard]] std::string indexed(const std::string& prefix, std::size_t i);
/// `"s"`
[[nodiscard]] std::string quoted(std::string_view s);

/// parse_endpoint() that also says why `text` is not "host:port" / "[v6]:port"
/// (in config.cpp, with Endpoint).
[[nodiscard]] std::optional<Endpoint> parse_endpoint(std::string_view text, std::string& why);

/// Collects problems, every one tagged with the file they were found in.
class Problems {
public:
    explicit Problems(std::string file) : file_(std::move(file)) {}
    void add(std::string key, std::string message);
    [[nodiscard]] std::vector<ConfigError>& list() noexcept { return list_; }

private:
    std::string file_;
    std::vector<ConfigError> list_;
};

// ---------------------------------------------------------------------------
// What a key allows.

/// The integers an integer key allows; unbounded unless said otherwise.
struct Range {
    std::int64_t min = std::numeric_limits<std::int64_t>::min();
    std::int64_t max = std::numeric_limits<std::int64_t>::max();
    std::string_view max_reason{};  ///< why there is a maximum, said in its message

    [[nodiscard]] constexpr bool bounded() const noexcept
    {
        return min != std::numeric_limits<std::int64_t>::min() || max != std::numeric_limits<std::int64_t>::max();
    }
    /// What is wrong with `v`, nullopt when it is allowed.
    [[nodiscard]] std::optional<std::string> violation(std::int64_t v) const;
};

[[nodiscard]] constexpr Range at_least(std::int64_t min) noexcept
{
    return Range{.min = min};
}

/// Port numbers are 1..65535 wherever they appear: a property of the type,
/// so no key lists it. The message for `port` outside that.
[[nodiscard]] std::string port_violation(std::int64_t port);

/// The rules of one key beyond its type.
struct Rules {
    Range range{};           ///< integer keys only
    bool required = false;   ///< must be written (entries: a backend's name, ...)
    bool not_empty = false;  ///< string keys: "" is refused
    bool unique = false;     ///< entry keys: no two entries share the value
};

/// A rule on one key's value that Rules cannot state (a URL's form, a
/// forbidden character). `owner` is the section or entry holding the value;
/// complaints go to `problems` under `key` (or keys below it).
template <class S, class T>
using Check = void (*)(const S& owner, const T& value, const std::string& key, Problems& problems);

/// Where a key's value lives in its section or entry S, and its extra rule.
template <class S, class T>
struct Field {
    using value_type = T;
    T S::*member;
    Check<S, T> check;
};

/// Every type a key can have. Enumerations are spelled by spellings<E>().
template <class S>
using AnyField =
    std::variant<Field<S, int>, Field<S, std::int64_t>, Field<S, std::uint16_t>, Field<S, bool>, Field<S, std::string>,
                 Field<S, std::optional<std::string>>, Field<S, std::vector<std::string>>, Field<S, Endpoint>,
                 Field<S, PoolMode>, Field<S, LoadBalancing>, Field<S, ReadYourWrites>, Field<S, FailoverMode>,
                 Field<S, AuthMethod>, Field<S, CacheStatements>, Field<S, CacheInvalidation>>;

/// One key of a section or entry S.
template <class S>
struct Key {
    template <class T>
    constexpr Key(std::string_view key_name, T S::*member, Rules key_rules = {},
                  std::type_identity_t<Check<S, T>> check = nullptr)
        : name(key_name),
          field(Field<S, T>{member, check}),
          rules(key_rules)
    {
    }

    std::string_view name;
    AnyField<S> field;
    Rules rules;
};

/// A [section]: one table filling the member `member` of Config.
template <class S>
struct Section {
    std::string_view name;
    S Config::*member;
    std::span<const Key<S>> keys;
};

/// An array of tables ([[backends]]): one entry of Config's `member` each.
template <class S>
struct Entries {
    std::string_view name;
    std::vector<S> Config::*member;
    std::span<const Key<S>> keys;
    std::string_view noun;  ///< one entry, in messages: "duplicate backend name ..."
};

/// Whether T is a Section (not Entries): for code walking `sections`.
template <class T>
inline constexpr bool is_section = false;
template <class S>
inline constexpr bool is_section<Section<S>> = true;

// ---------------------------------------------------------------------------
// Enumeration spellings, in the order messages list them.

template <class E>
struct Spelling {
    std::string_view name;
    E value;
};

template <class E>
[[nodiscard]] std::span<const Spelling<E>> spellings() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<PoolMode>> spellings<PoolMode>() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<LoadBalancing>> spellings<LoadBalancing>() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<ReadYourWrites>> spellings<ReadYourWrites>() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<FailoverMode>> spellings<FailoverMode>() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<AuthMethod>> spellings<AuthMethod>() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<CacheStatements>> spellings<CacheStatements>() noexcept;
template <>
[[nodiscard]] std::span<const Spelling<CacheInvalidation>> spellings<CacheInvalidation>() noexcept;

/// `"a", "b", "c"`: the spellings of E for a message.
template <class E>
[[nodiscard]] std::string spelling_list()
{
    std::string out;
    for (const auto& s : spellings<E>())
        out += (out.empty() ? "" : ", ") + quoted(s.name);
    return out;
}

// ---------------------------------------------------------------------------
// The rules Rules cannot state, named by the keys below (config_keys.cpp).

void check_function_names(const RoutingSettings&, const std::vector<std::string>& names, const std::string& key,
                          Problems& problems);
void check_etcd_urls(const ClusterSettings&, const std::vector<std::string>& urls, const std::string& key,
                     Problems& problems);
void check_etcd_prefix(const ClusterSettings& cluster, const std::string& prefix, const std::string& key,
                       Problems& problems);
void check_instance_name(const ClusterSettings&, const std::string& name, const std::string& key, Problems& problems);

// ---------------------------------------------------------------------------
// The keys. Their order is the order messages list them in ("unknown key
// (allowed here: ...)") and the order validate() checks them in (the rules
// between keys of a section come after them).

inline constexpr Key<ProxySettings> proxy_keys[] = {
    {"listen", &ProxySettings::listen},
    {"workers", &ProxySettings::workers, {.range = at_least(0)}},  // 0: one per core
    {"max_client_connections", &ProxySettings::max_client_connections, {.range = at_least(1)}},
    {"pool_mode", &ProxySettings::pool_mode},
    {"pool_size", &ProxySettings::pool_size, {.range = at_least(1)}},
    {"query_wait_timeout_ms", &ProxySettings::query_wait_timeout_ms, {.range = at_least(1)}},
    {"connect_timeout_ms", &ProxySettings::connect_timeout_ms, {.range = at_least(1)}},
    {"shutdown_timeout_ms", &ProxySettings::shutdown_timeout_ms, {.range = at_least(0)}},
    {"tls_cert", &ProxySettings::tls_cert},
    {"tls_key", &ProxySettings::tls_key},
    {"max_message_bytes", &ProxySettings::max_message_bytes, {.range = at_least(1024)}},
};

inline constexpr Key<AdminSettings> admin_keys[] = {
    {"listen", &AdminSettings::listen},
    {"token", &AdminSettings::token},
};

inline constexpr Key<RoutingSettings> routing_keys[] = {
    {"load_balancing", &RoutingSettings::load_balancing},
    {"primary_reads", &RoutingSettings::primary_reads},
    {"max_replica_lag_bytes", &RoutingSettings::max_replica_lag_bytes, {.range = at_least(0)}},
    {"read_your_writes", &RoutingSettings::read_your_writes},
    {"read_your_writes_wait_ms",
     &RoutingSettings::read_your_writes_wait_ms,
     {.range = {.min = 0, .max = 10000, .max_reason = "a read waits that long at most"}}},
    {"write_functions", &RoutingSettings::write_functions, {}, check_function_names},
    {"read_only_functions", &RoutingSettings::read_only_functions, {}, check_function_names},
};

inline constexpr Key<HealthSettings> health_keys[] = {
    {"interval_ms", &HealthSettings::interval_ms, {.range = at_least(1)}},
    {"timeout_ms", &HealthSettings::timeout_ms, {.range = at_least(1)}},
    {"failure_threshold", &HealthSettings::failure_threshold, {.range = at_least(1)}},
    {"restart_grace_ms", &HealthSettings::restart_grace_ms, {.range = at_least(0)}},  // 0: off
    {"user", &HealthSettings::user, {.not_empty = true}},
    {"password", &HealthSettings::password},
    {"database", &HealthSettings::database, {.not_empty = true}},
};

inline constexpr Key<FailoverSettings> failover_keys[] = {
    {"mode", &FailoverSettings::mode},
    {"wait_for_primary_ms", &FailoverSettings::wait_for_primary_ms, {.range = at_least(1)}},
};

inline constexpr Key<ClusterSettings> cluster_keys[] = {
    {"etcd", &ClusterSettings::etcd, {}, check_etcd_urls},
    {"prefix", &ClusterSettings::prefix, {}, check_etcd_prefix},
    {"name", &ClusterSettings::name, {}, check_instance_name},
    {"lease_ttl_ms", &ClusterSettings::lease_ttl_ms, {.range = at_least(1000)}},
};

inline constexpr Key<CacheSettings> cache_keys[] = {
    {"enabled", &CacheSettings::enabled},
    {"statements", &CacheSettings::statements},
    {"max_memory_mb", &CacheSettings::max_memory_mb, {.range = at_least(1)}},
    {"ttl_ms", &CacheSettings::ttl_ms, {.range = at_least(1)}},
    {"max_entry_kb", &CacheSettings::max_entry_kb, {.range = at_least(1)}},
    {"invalidation", &CacheSettings::invalidation},
};

inline constexpr Key<BackendConfig> backend_keys[] = {
    {"name", &BackendConfig::name, {.required = true, .not_empty = true, .unique = true}},
    {"host", &BackendConfig::host, {.required = true, .not_empty = true}},
    {"port", &BackendConfig::port},
    {"weight", &BackendConfig::weight, {.range = at_least(0)}},  // 0: a replica that takes no reads
};

inline constexpr Key<UserConfig> user_keys[] = {
    {"name", &UserConfig::name, {.required = true, .not_empty = true, .unique = true}},
    {"password", &UserConfig::password},
    {"scram_secret", &UserConfig::scram_secret},
    {"auth_method", &UserConfig::auth_method},
};

/// The top level of the file, in order.
inline constexpr std::tuple sections{
    Section<ProxySettings>{"proxy", &Config::proxy, proxy_keys},
    Section<AdminSettings>{"admin", &Config::admin, admin_keys},
    Section<RoutingSettings>{"routing", &Config::routing, routing_keys},
    Section<HealthSettings>{"health", &Config::health, health_keys},
    Section<FailoverSettings>{"failover", &Config::failover, failover_keys},
    Section<ClusterSettings>{"cluster", &Config::cluster, cluster_keys},
    Section<CacheSettings>{"cache", &Config::cache, cache_keys},
    Entries<BackendConfig>{"backends", &Config::backends, backend_keys, "backend"},
    Entries<UserConfig>{"users", &Config::users, user_keys, "user"},
};

/// Calls `f` with each Section and Entries of `sections`, in order.
template <class F>
void for_each_section(F&& f)
{
    std::apply([&f](const auto&... s) { (f(s), ...); }, sections);
}

/// The default of the section key `dotted_name` ("proxy.listen") as text,
/// from a default-constructed Config; nullopt for no such key.
[[nodiscard]] std::optional<std::string> default_text(std::string_view dotted_name);

}  // namespace pgswitch::proxy::config_keys
