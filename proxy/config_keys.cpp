// What the key tables of config_keys.h need besides the tables: how key paths
// and ranges read in messages, the spellings of the enumerations (and so
// to_string() for them), the per-key rules the tables name, and the defaults
// as text for --help.
#include "proxy/config_keys.h"

#include <algorithm>

namespace pgswitch::proxy {

namespace config_keys {

std::string dotted(const std::string& prefix, std::string_view k)
{
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
               ch == '-';
    });
    std::string part;
    if (bare) {
        part = k;
    } else {
        part = "\"";
        for (char ch : k) {
            if (ch == '"' || ch == '\\')
                part += '\\';
            part += ch;
        }
        part += '"';
    }
    return prefix.empty() ? part : prefix + "." + part;
}

std::string indexed(const std::string& prefix, std::size_t i)
{
    return prefix + "[" + std::to_string(i) + "]";
}

std::string quoted(std::string_view s)
{
    return "\"" + std::string(s) + "\"";
}

void Problems::add(std::string key, std::string message)
{
    list_.push_back(ConfigError{file_, std::move(key), std::move(message)});
}

std::optional<std::string> Range::violation(std::int64_t v) const
{
    if (v < min)
        return "must be at least " + std::to_string(min) + ", got " + std::to_string(v);
    if (v > max)
        return "must be at most " + std::to_string(max) +
               (max_reason.empty() ? "" : " (" + std::string(max_reason) + ")");
    return std::nullopt;
}

std::string port_violation(std::int64_t port)
{
    return "must be 1..65535, got " + std::to_string(port);
}

// ---------------------------------------------------------------------------
// Spellings.

namespace {

constexpr Spelling<PoolMode> pool_modes[] = {{"session", PoolMode::session}, {"transaction", PoolMode::transaction}};
constexpr Spelling<LoadBalancing> load_balancings[] = {{"round_robin", LoadBalancing::round_robin},
                                                       {"least_connections", LoadBalancing::least_connections},
                                                       {"ip_hash", LoadBalancing::ip_hash},
                                                       {"adaptive", LoadBalancing::adaptive}};
constexpr Spelling<ReadYourWrites> read_your_writes_modes[] = {
    {"lsn", ReadYourWrites::lsn}, {"session", ReadYourWrites::session}, {"off", ReadYourWrites::off}};
// "auto", not "automatic": the word SPEC §2 uses.
constexpr Spelling<FailoverMode> failover_modes[] = {
    {"auto", FailoverMode::automatic}, {"manual", FailoverMode::manual}, {"external", FailoverMode::external}};
constexpr Spelling<CacheStatements> cache_statements[] = {{"hinted", CacheStatements::hinted},
                                                          {"all", CacheStatements::all}};
constexpr Spelling<CacheInvalidation> cache_invalidations[] = {{"wal", CacheInvalidation::wal},
                                                               {"proxy", CacheInvalidation::proxy}};
constexpr Spelling<AuthMethod> auth_methods[] = {
    {"scram-sha-256", AuthMethod::scram_sha_256}, {"md5", AuthMethod::md5}, {"password", AuthMethod::password}};

template <class E>
std::string_view spelling_of(E value) noexcept
{
    for (const auto& s : spellings<E>())
        if (s.value == value)
            return s.name;
    return "?";
}

}  // namespace

template <>
std::span<const Spelling<PoolMode>> spellings<PoolMode>() noexcept
{
    return pool_modes;
}
template <>
std::span<const Spelling<LoadBalancing>> spellings<LoadBalancing>() noexcept
{
    return load_balancings;
}
template <>
std::span<const Spelling<ReadYourWrites>> spellings<ReadYourWrites>() noexcept
{
    return read_your_writes_modes;
}
template <>
std::span<const Spelling<FailoverMode>> spellings<FailoverMode>() noexcept
{
    return failover_modes;
}
template <>
std::span<const Spelling<AuthMethod>> spellings<AuthMethod>() noexcept
{
    return auth_methods;
}
template <>
std::span<const Spelling<CacheStatements>> spellings<CacheStatements>() noexcept
{
    return cache_statements;
}
template <>
std::span<const Spelling<CacheInvalidation>> spellings<CacheInvalidation>() noexcept
{
    return cache_invalidations;
}

// ---------------------------------------------------------------------------
// The per-key rules the tables name.

void check_function_names(const RoutingSettings&, const std::vector<std::string>& names, const std::string& key,
                          Problems& problems)
{
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i].empty())
            problems.add(indexed(key, i), "function name is empty");
}

void check_etcd_urls(const ClusterSettings&, const std::vector<std::string>& urls, const std::string& key,
                     Problems& problems)
{
    for (std::size_t i = 0; i < urls.size(); ++i) {
        const auto& url = urls[i];
        // Plain http only: there is no TLS to etcd yet (docs/cluster.md).
        const auto rest = url.rfind("http://", 0) == 0 ? std::string_view(url).substr(7) : std::string_view{};
        const auto colon = rest.rfind(':');
        if (rest.empty() || colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size() ||
            rest.substr(colon + 1).find_first_not_of("0123456789") != std::string_view::npos)
            problems.add(indexed(key, i), "must be an etcd client URL \"http://host:port\", got \"" + url + "\"");
    }
}

void check_etcd_prefix(const ClusterSettings& cluster, const std::string& prefix, const std::string& key,
                       Problems& problems)
{
    // The prefix only matters, and is only checked, in cluster mode.
    if (!cluster.enabled())
        return;
    if (prefix.empty() || prefix.front() != '/')
        problems.add(key, "must start with \"/\"");
    if (prefix.size() > 1 && prefix.back() == '/')
        problems.add(key, "must not end with \"/\"");
}

void check_instance_name(const ClusterSettings&, const std::string& name, const std::string& key, Problems& problems)
{
    // The name is one segment of an etcd key ("instances/<name>").
    if (name.find('/') != std::string::npos)
        problems.add(key, "must not contain \"/\"");
}

// ---------------------------------------------------------------------------
// Defaults as text.

namespace {

template <class T>
std::string value_text(const T& v)
{
    if constexpr (std::is_same_v<T, bool>) {
        return v ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
        return std::to_string(v);
    } else if constexpr (std::is_enum_v<T>) {
        return std::string(spelling_of(v));
    } else if constexpr (std::is_same_v<T, Endpoint>) {
        return v.to_string();
    } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
        return v.value_or("");
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        std::string out;
        for (const auto& s : v)
            out += (out.empty() ? "" : ", ") + s;
        return out;
    } else {
        return v;
    }
}

}  // namespace

std::optional<std::string> default_text(std::string_view dotted_name)
{
    static const Config defaults;
    std::optional<std::string> text;
    for_each_section([&](const auto& section) {
        if constexpr (is_section<std::remove_cvref_t<decltype(section)>>) {
            const auto& owner = defaults.*section.member;
            for (const auto& key : section.keys)
                if (dotted(std::string(section.name), key.name) == dotted_name)
                    text = std::visit([&](const auto& f) { return value_text(owner.*f.member); }, key.field);
        }
    });
    return text;
}

}  // namespace config_keys

std::string_view to_string(PoolMode m) noexcept
{
    return config_keys::spelling_of(m);
}
std::string_view to_string(LoadBalancing m) noexcept
{
    return config_keys::spelling_of(m);
}
std::string_view to_string(ReadYourWrites m) noexcept
{
    return config_keys::spelling_of(m);
}
std::string_view to_string(FailoverMode m) noexcept
{
    return config_keys::spelling_of(m);
}
std::string_view to_string(AuthMethod m) noexcept
{
    return config_keys::spelling_of(m);
}
std::string_view to_string(CacheStatements m) noexcept
{
    return config_keys::spelling_of(m);
}
std::string_view to_string(CacheInvalidation m) noexcept
{
    return config_keys::spelling_of(m);
}

}  // namespace pgswitch::proxy
