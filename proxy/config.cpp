// Loading pgswitch's configuration (SPEC §1 flags, §2 TOML) into a Config.
// Depends only on toml++ and POSIX inet_pton; no Boost, no I/O besides reading the file.
#include "proxy/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string_view>
#include <utility>

#include <toml++/toml.h>

namespace pgswitch::proxy {

namespace {

// ---------------------------------------------------------------------------
// Small helpers shared by the TOML reader, validate() and the flag parser.

constexpr std::string_view scram_prefix = "SCRAM-SHA-256$";

/// Renders one TOML key for a dotted path: bare keys as-is, anything else
/// quoted, so that `"a.b" = 1` is not mistaken for `a.b = 1` in a message.
std::string key_part(std::string_view k)
{
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
               ch == '-';
    });
    if (bare)
        return std::string(k);
    std::string out = "\"";
    for (char ch : k) {
        if (ch == '"' || ch == '\\')
            out += '\\';
        out += ch;
    }
    out += '"';
    return out;
}

std::string join_key(const std::string& prefix, std::string_view k)
{
    return prefix.empty() ? key_part(k) : prefix + "." + key_part(k);
}

std::string index_key(const std::string& prefix, std::size_t i)
{
    return prefix + "[" + std::to_string(i) + "]";
}

std::string_view type_name(toml::node_type t)
{
    switch (t) {
    case toml::node_type::string:
        return "string";
    case toml::node_type::integer:
        return "integer";
    case toml::node_type::floating_point:
        return "floating-point number";
    case toml::node_type::boolean:
        return "boolean";
    case toml::node_type::date:
        return "date";
    case toml::node_type::time:
        return "time";
    case toml::node_type::date_time:
        return "date-time";
    case toml::node_type::array:
        return "array";
    case toml::node_type::table:
        return "table";
    case toml::node_type::none:
        break;
    }
    return "nothing";
}

std::string quoted(std::string_view s)
{
    return "\"" + std::string(s) + "\"";
}

/// Parses "host:port" or "[v6]:port"; on failure says why in `why`.
std::optional<Endpoint> parse_endpoint_why(std::string_view text, std::string& why)
{
    std::string_view host;
    std::string_view rest;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            why = "missing ']' after IPv6 address";
            return std::nullopt;
        }
        host = text.substr(1, close - 1);
        rest = text.substr(close + 1);
        // A bracketed host must be an IPv6 literal; names never need brackets.
        const std::string h(host);
        in6_addr a6{};
        if (inet_pton(AF_INET6, h.c_str(), &a6) != 1) {
            why = "\"" + h + "\" is not an IPv6 address";
            return std::nullopt;
        }
        if (rest.empty() || rest.front() != ':') {
            why = "port is required (\"[v6]:port\")";
            return std::nullopt;
        }
        rest.remove_prefix(1);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            why = "port is required (\"host:port\")";
            return std::nullopt;
        }
        host = text.substr(0, colon);
        rest = text.substr(colon + 1);
        // "::1:5432" is ambiguous; IPv6 must be bracketed.
        if (host.find(':') != std::string_view::npos) {
            why = "IPv6 addresses must be bracketed, e.g. \"[::1]:5432\"";
            return std::nullopt;
        }
    }
    if (host.empty()) {
        why = "host is empty";
        return std::nullopt;
    }
    const bool host_ok = std::none_of(host.begin(), host.end(), [](char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '/' || ch == '[' || ch == ']';
    });
    if (!host_ok) {
        why = "host \"" + std::string(host) + "\" contains invalid characters";
        return std::nullopt;
    }
    if (rest.empty()) {
        why = "port is required";
        return std::nullopt;
    }
    // from_chars would accept nothing but digits anyway; check explicitly so
    // "+5432" or " 5432" are rejected rather than half-parsed.
    if (!std::all_of(rest.begin(), rest.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        why = "port \"" + std::string(rest) + "\" is not a number";
        return std::nullopt;
    }
    unsigned long port = 0;
    const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (ec != std::errc{} || ptr != rest.data() + rest.size() || port < 1 || port > 65535) {
        why = "port must be 1..65535";
        return std::nullopt;
    }
    return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

/// True for "localhost", 127.0.0.0/8 and ::1 (also the v4-mapped 127/8):
/// the admin API may run without a token only where no one else can reach it.
bool is_loopback(const std::string& host)
{
    if (host == "localhost")
        return true;
    in_addr a4{};
    if (inet_pton(AF_INET, host.c_str(), &a4) == 1) {
        const auto* b = reinterpret_cast<const unsigned char*>(&a4.s_addr);
        return b[0] == 127;
    }
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.c_str(), &a6) == 1) {
        const unsigned char* b = a6.s6_addr;
        static constexpr unsigned char loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        if (std::memcmp(b, loop6, 16) == 0)
            return true;
        static constexpr unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return std::memcmp(b, mapped, 12) == 0 && b[12] == 127;
    }
    return false;
}

// Enum spellings, in the order the messages list them.
template <class E>
struct EnumName {
    std::string_view name;
    E value;
};

constexpr EnumName<PoolMode> pool_modes[] = {{"session", PoolMode::session}, {"transaction", PoolMode::transaction}};
constexpr EnumName<LoadBalancing> load_balancings[] = {{"round_robin", LoadBalancing::round_robin},
                                                       {"least_connections", LoadBalancing::least_connections},
                                                       {"ip_hash", LoadBalancing::ip_hash}};
constexpr EnumName<ReadYourWrites> read_your_writes_names[] = {
    {"lsn", ReadYourWrites::lsn}, {"session", ReadYourWrites::session}, {"off", ReadYourWrites::off}};
constexpr EnumName<FailoverMode> failover_modes[] = {
    {"auto", FailoverMode::automatic}, {"manual", FailoverMode::manual}, {"external", FailoverMode::external}};
constexpr EnumName<AuthMethod> auth_methods[] = {
    {"scram-sha-256", AuthMethod::scram_sha_256}, {"md5", AuthMethod::md5}, {"password", AuthMethod::password}};

template <class E, std::size_t N>
std::string_view enum_name(const EnumName<E> (&names)[N], E v) noexcept
{
    for (const auto& n : names)
        if (n.value == v)
            return n.name;
    return "?";
}

template <class E, std::size_t N>
std::string allowed_list(const EnumName<E> (&names)[N])
{
    std::string out;
    for (std::size_t i = 0; i < N; ++i) {
        if (i != 0)
            out += ", ";
        out += quoted(names[i].name);
    }
    return out;
}

// ---------------------------------------------------------------------------
// Semantic checks on a built Config (validate()).

class Validator {
public:
    explicit Validator(const Config& c) : c_(c) {}

    std::vector<ConfigError> run()
    {
        check_proxy();
        check_admin();
        check_routing();
        check_health();
        check_failover();
        check_cluster();
        check_backends();
        check_users();
        return std::move(errors_);
    }

private:
    void error(std::string key, std::string message)
    {
        errors_.push_back(ConfigError{c_.source, std::move(key), std::move(message)});
    }
    void at_least(const std::string& key, std::int64_t v, std::int64_t min)
    {
        if (v < min)
            error(key, "must be at least " + std::to_string(min) + ", got " + std::to_string(v));
    }
    void check_endpoint(const std::string& key, const Endpoint& e)
    {
        if (e.host.empty())
            error(key, "host is empty");
        if (e.port == 0)
            error(key, "port must be 1..65535");
    }

    void check_proxy()
    {
        const auto& p = c_.proxy;
        check_endpoint("proxy.listen", p.listen);
        at_least("proxy.workers", p.workers, 0);
        at_least("proxy.max_client_connections", p.max_client_connections, 1);
        at_least("proxy.pool_size", p.pool_size, 1);
        at_least("proxy.query_wait_timeout_ms", p.query_wait_timeout_ms, 1);
        at_least("proxy.connect_timeout_ms", p.connect_timeout_ms, 1);
        at_least("proxy.shutdown_timeout_ms", p.shutdown_timeout_ms, 0);
        at_least("proxy.max_message_bytes", p.max_message_bytes, 1024);
        // A certificate without its key (or the reverse) is a half-done TLS
        // setup; starting without TLS would silently downgrade clients.
        if (!p.tls_cert.empty() && p.tls_key.empty())
            error("proxy.tls_key", "must be set when proxy.tls_cert is set");
        if (p.tls_cert.empty() && !p.tls_key.empty())
            error("proxy.tls_cert", "must be set when proxy.tls_key is set");
    }

    void check_admin()
    {
        const auto& a = c_.admin;
        check_endpoint("admin.listen", a.listen);
        if (!a.listen.host.empty() && !is_loopback(a.listen.host) && a.token.empty())
            error("admin.listen", "refuses to start: non-loopback admin.listen needs admin.token");
    }

    void check_routing()
    {
        const auto& r = c_.routing;
        at_least("routing.max_replica_lag_bytes", r.max_replica_lag_bytes, 0);
        at_least("routing.read_your_writes_wait_ms", r.read_your_writes_wait_ms, 0);
        if (r.read_your_writes_wait_ms > 10000)
            error("routing.read_your_writes_wait_ms", "must be at most 10000 (a read waits that long at most)");
        const auto check_names = [this](const std::string& key, const std::vector<std::string>& v) {
            for (std::size_t i = 0; i < v.size(); ++i)
                if (v[i].empty())
                    error(index_key(key, i), "function name is empty");
        };
        check_names("routing.write_functions", r.write_functions);
        check_names("routing.read_only_functions", r.read_only_functions);
    }

    void check_health()
    {
        const auto& h = c_.health;
        at_least("health.interval_ms", h.interval_ms, 1);
        at_least("health.timeout_ms", h.timeout_ms, 1);
        at_least("health.failure_threshold", h.failure_threshold, 1);
        at_least("health.restart_grace_ms", h.restart_grace_ms, 0);
        if (h.user.empty())
            error("health.user", "must not be empty");
        if (h.database.empty())
            error("health.database", "must not be empty");
    }

    void check_cluster()
    {
        const auto& c = c_.cluster;
        for (std::size_t i = 0; i < c.etcd.size(); ++i) {
            const auto& url = c.etcd[i];
            const auto rest = url.rfind("http://", 0) == 0 ? std::string_view(url).substr(7) : std::string_view{};
            const auto colon = rest.rfind(':');
            if (rest.empty() || colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size() ||
                rest.substr(colon + 1).find_first_not_of("0123456789") != std::string_view::npos)
                error(index_key("cluster.etcd", i),
                      "must be an etcd client URL \"http://host:port\", got \"" + url + "\"");
        }
        if (c.enabled() && (c.prefix.empty() || c.prefix.front() != '/'))
            error("cluster.prefix", "must start with \"/\"");
        if (c.enabled() && c.prefix.size() > 1 && c.prefix.back() == '/')
            error("cluster.prefix", "must not end with \"/\"");
        at_least("cluster.lease_ttl_ms", c.lease_ttl_ms, 1000);
        if (c.name.find('/') != std::string::npos)
            error("cluster.name", "must not contain \"/\"");
    }

    void check_failover() { at_least("failover.wait_for_primary_ms", c_.failover.wait_for_primary_ms, 1); }

    void check_backends()
    {
        if (c_.backends.empty()) {
            error("backends", "at least one [[backends]] entry is required");
            return;
        }
        std::map<std::string, std::size_t> seen;
        for (std::size_t i = 0; i < c_.backends.size(); ++i) {
            const auto& b = c_.backends[i];
            const std::string key = index_key("backends", i);
            if (b.name.empty()) {
                error(key + ".name", "must not be empty");
            } else if (auto [it, fresh] = seen.emplace(b.name, i); !fresh) {
                error(key + ".name", "duplicate backend name " + quoted(b.name) + " (also backends[" +
                                         std::to_string(it->second) + "])");
            }
            if (b.host.empty())
                error(key + ".host", "must not be empty");
            if (b.port == 0)
                error(key + ".port", "must be 1..65535, got 0");
            at_least(key + ".weight", b.weight, 0);
        }
    }

    void check_users()
    {
        if (c_.users.empty()) {
            error("users", "at least one [[users]] entry is required");
            return;
        }
        std::map<std::string, std::size_t> seen;
        for (std::size_t i = 0; i < c_.users.size(); ++i) {
            const auto& u = c_.users[i];
            const std::string key = index_key("users", i);
            if (u.name.empty()) {
                error(key + ".name", "must not be empty");
            } else if (auto [it, fresh] = seen.emplace(u.name, i); !fresh) {
                error(key + ".name",
                      "duplicate user name " + quoted(u.name) + " (also users[" + std::to_string(it->second) + "])");
            }
            if (!u.password && !u.scram_secret) {
                error(key + ".password", "user needs a password or a scram_secret");
            } else if (u.password && u.scram_secret) {
                error(key + ".scram_secret", "set either password or scram_secret, not both");
            } else if (u.auth_method != AuthMethod::scram_sha_256 && !u.password) {
                // md5 and cleartext checks need the plaintext; a SCRAM secret
                // only verifies SCRAM proofs.
                error(key + ".auth_method", "auth_method " + quoted(to_string(u.auth_method)) +
                                                " needs a plaintext password, not a scram_secret");
            }
            // PostgreSQL itself refuses empty passwords, so one here can never log in.
            if (u.password && u.password->empty())
                error(key + ".password", "must not be empty");
            if (u.scram_secret && !u.scram_secret->starts_with(scram_prefix))
                error(key + ".scram_secret", "must start with \"SCRAM-SHA-256$\"");
        }
    }

    const Config& c_;
    std::vector<ConfigError> errors_;
};

// ---------------------------------------------------------------------------
// TOML → Config. Reports syntax-level problems (unknown keys, wrong types,
// unparsable values); range checks are left to Validator so that flags and
// files obey one rule set.

class TomlReader {
public:
    TomlReader(std::string file, Config& c) : file_(std::move(file)), c_(c) {}

    void read(const toml::table& root)
    {
        read_fields(root, "",
                    {{"proxy", section(&TomlReader::read_proxy)},
                     {"admin", section(&TomlReader::read_admin)},
                     {"routing", section(&TomlReader::read_routing)},
                     {"health", section(&TomlReader::read_health)},
                     {"failover", section(&TomlReader::read_failover)},
                     {"cluster", section(&TomlReader::read_cluster)},
                     {"backends", [this](const toml::node& n, const std::string& k) { read_backends(n, k); }},
                     {"users", [this](const toml::node& n, const std::string& k) { read_users(n, k); }}});
    }

    std::vector<ConfigError>& errors() { return errors_; }

private:
    using Reader = std::function<void(const toml::node&, const std::string&)>;
    struct Field {
        std::string_view name;
        Reader read;
    };

    void error(std::string key, std::string message)
    {
        errors_.push_back(ConfigError{file_, std::move(key), std::move(message)});
    }
    void wrong_type(const std::string& key, std::string_view expected, const toml::node& n)
    {
        error(key, "expected " + std::string(expected) + ", got " + std::string(type_name(n.type())));
    }

    /// Dispatches every key of `t` to its field reader; keys with no reader are
    /// reported (listing the allowed ones, since a typo is the usual cause).
    void read_fields(const toml::table& t, const std::string& prefix, std::initializer_list<Field> fields)
    {
        for (const auto& [k, node] : t) {
            const std::string_view name = k.str();
            const std::string key = join_key(prefix, name);
            const auto it = std::find_if(fields.begin(), fields.end(),
                                         [name](const Field& f) { return f.name == name; });
            if (it != fields.end()) {
                it->read(node, key);
                continue;
            }
            std::string allowed;
            for (const auto& f : fields)
                allowed += (allowed.empty() ? "" : ", ") + std::string(f.name);
            error(key, "unknown key (allowed " + std::string(prefix.empty() ? "at top level" : "here") + ": " +
                           allowed + ")");
        }
    }

    /// A top-level section: must be a table, then read by `reader`.
    Reader section(void (TomlReader::*reader)(const toml::table&, const std::string&))
    {
        return [this, reader](const toml::node& n, const std::string& key) {
            if (const auto* t = n.as_table())
                (this->*reader)(*t, key);
            else
                wrong_type(key, "table", n);
        };
    }

    // Typed field readers: each reports a type mismatch and leaves `out` (the
    // default) untouched, so validation of other fields is not disturbed.

    Reader str(std::string& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            if (const auto* v = n.as_string())
                out = v->get();
            else
                wrong_type(key, "string", n);
        };
    }
    Reader opt_str(std::optional<std::string>& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            if (const auto* v = n.as_string())
                out = v->get();
            else
                wrong_type(key, "string", n);
        };
    }
    Reader boolean(bool& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            if (const auto* v = n.as_boolean())
                out = v->get();
            else
                wrong_type(key, "boolean", n);
        };
    }
    Reader int64(std::int64_t& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            if (const auto* v = n.as_integer())
                out = v->get();
            else
                wrong_type(key, "integer", n);
        };
    }
    Reader int32(int& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            const auto* v = n.as_integer();
            if (!v)
                return wrong_type(key, "integer", n);
            const std::int64_t x = v->get();
            if (x < INT_MIN || x > INT_MAX) {
                error(key, "value " + std::to_string(x) + " is out of range (at most " + std::to_string(INT_MAX) + ")");
                return;
            }
            out = static_cast<int>(x);
        };
    }
    Reader port(std::uint16_t& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            const auto* v = n.as_integer();
            if (!v)
                return wrong_type(key, "integer", n);
            const std::int64_t x = v->get();
            if (x < 1 || x > 65535) {
                error(key, "must be 1..65535, got " + std::to_string(x));
                return;
            }
            out = static_cast<std::uint16_t>(x);
        };
    }
    Reader endpoint(Endpoint& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            const auto* v = n.as_string();
            if (!v)
                return wrong_type(key, "string \"host:port\"", n);
            std::string why;
            if (auto e = parse_endpoint_why(v->get(), why))
                out = std::move(*e);
            else
                error(key, "invalid address " + quoted(v->get()) + ": " + why);
        };
    }
    template <class E, std::size_t N>
    Reader enumeration(E& out, const EnumName<E> (&names)[N])
    {
        return [this, &out, &names](const toml::node& n, const std::string& key) {
            const auto* v = n.as_string();
            if (!v)
                return wrong_type(key, "string", n);
            for (const auto& e : names) {
                if (e.name == v->get()) {
                    out = e.value;
                    return;
                }
            }
            error(key, "must be one of " + allowed_list(names) + ", got " + quoted(v->get()));
        };
    }
    Reader string_list(std::vector<std::string>& out)
    {
        return [this, &out](const toml::node& n, const std::string& key) {
            const auto* a = n.as_array();
            if (!a)
                return wrong_type(key, "array of strings", n);
            out.clear();
            for (std::size_t i = 0; i < a->size(); ++i) {
                if (const auto* s = (*a)[i].as_string())
                    out.push_back(s->get());
                else
                    wrong_type(index_key(key, i), "string", (*a)[i]);
            }
        };
    }

    void read_proxy(const toml::table& t, const std::string& key)
    {
        auto& p = c_.proxy;
        read_fields(t, key,
                    {{"listen", endpoint(p.listen)},
                     {"workers", int32(p.workers)},
                     {"max_client_connections", int32(p.max_client_connections)},
                     {"pool_mode", enumeration(p.pool_mode, pool_modes)},
                     {"pool_size", int32(p.pool_size)},
                     {"query_wait_timeout_ms", int32(p.query_wait_timeout_ms)},
                     {"connect_timeout_ms", int32(p.connect_timeout_ms)},
                     {"shutdown_timeout_ms", int32(p.shutdown_timeout_ms)},
                     {"tls_cert", str(p.tls_cert)},
                     {"tls_key", str(p.tls_key)},
                     {"max_message_bytes", int64(p.max_message_bytes)}});
    }

    void read_admin(const toml::table& t, const std::string& key)
    {
        read_fields(t, key, {{"listen", endpoint(c_.admin.listen)}, {"token", str(c_.admin.token)}});
    }

    void read_routing(const toml::table& t, const std::string& key)
    {
        auto& r = c_.routing;
        read_fields(t, key,
                    {{"load_balancing", enumeration(r.load_balancing, load_balancings)},
                     {"primary_reads", boolean(r.primary_reads)},
                     {"max_replica_lag_bytes", int64(r.max_replica_lag_bytes)},
                     {"read_your_writes", enumeration(r.read_your_writes, read_your_writes_names)},
                     {"read_your_writes_wait_ms", int32(r.read_your_writes_wait_ms)},
                     {"write_functions", string_list(r.write_functions)},
                     {"read_only_functions", string_list(r.read_only_functions)}});
    }

    void read_health(const toml::table& t, const std::string& key)
    {
        auto& h = c_.health;
        read_fields(t, key,
                    {{"interval_ms", int32(h.interval_ms)},
                     {"timeout_ms", int32(h.timeout_ms)},
                     {"failure_threshold", int32(h.failure_threshold)},
                     {"restart_grace_ms", int32(h.restart_grace_ms)},
                     {"user", str(h.user)},
                     {"password", str(h.password)},
                     {"database", str(h.database)}});
    }

    void read_cluster(const toml::table& t, const std::string& key)
    {
        auto& c = c_.cluster;
        read_fields(t, key,
                    {{"etcd", string_list(c.etcd)},
                     {"prefix", str(c.prefix)},
                     {"name", str(c.name)},
                     {"lease_ttl_ms", int32(c.lease_ttl_ms)}});
    }

    void read_failover(const toml::table& t, const std::string& key)
    {
        auto& f = c_.failover;
        read_fields(
            t, key,
            {{"mode", enumeration(f.mode, failover_modes)}, {"wait_for_primary_ms", int32(f.wait_for_primary_ms)}});
    }

    /// Reads an array of tables. Entries that are not tables still get a
    /// default-constructed slot so that later indices in messages match the file.
    template <class T, class Fn>
    void read_entries(const toml::node& n, const std::string& key, std::vector<T>& out, Fn&& read_one)
    {
        const auto* a = n.as_array();
        if (!a)
            return wrong_type(key, "array of tables ([[" + key + "]])", n);
        for (std::size_t i = 0; i < a->size(); ++i) {
            const std::string ek = index_key(key, i);
            T& entry = out.emplace_back();
            if (const auto* t = (*a)[i].as_table())
                read_one(*t, ek, entry);
            else
                wrong_type(ek, "table", (*a)[i]);
        }
    }

    void require(const toml::table& t, const std::string& key, std::string_view name)
    {
        if (!t.contains(name))
            error(join_key(key, name), "required key is missing");
    }

    void read_backends(const toml::node& n, const std::string& key)
    {
        read_entries(n, key, c_.backends, [this](const toml::table& t, const std::string& ek, BackendConfig& b) {
            read_fields(
                t, ek,
                {{"name", str(b.name)}, {"host", str(b.host)}, {"port", port(b.port)}, {"weight", int32(b.weight)}});
            require(t, ek, "name");
            require(t, ek, "host");
        });
    }

    void read_users(const toml::node& n, const std::string& key)
    {
        read_entries(n, key, c_.users, [this](const toml::table& t, const std::string& ek, UserConfig& u) {
            read_fields(t, ek,
                        {{"name", str(u.name)},
                         {"password", opt_str(u.password)},
                         {"scram_secret", opt_str(u.scram_secret)},
                         {"auth_method", enumeration(u.auth_method, auth_methods)}});
            require(t, ek, "name");
        });
    }

    std::string file_;
    Config& c_;
    std::vector<ConfigError> errors_;
};

/// True when `key` is `prefix` itself or lies below it ("backends[1]" covers
/// "backends[1].name"). Used to drop follow-on validation errors for a key
/// that already has a parse error: one problem, one message.
/// The line where `key` (a dotted path such as "backends[1].port") or its
/// nearest existing parent is written, so errors can be listed in file order.
/// Keys not in the file at all (e.g. a missing [[users]]) sort last.
std::uint32_t line_of(const toml::table& root, std::string key)
{
    while (!key.empty()) {
        if (const toml::node* n = toml::at_path(root, key).node())
            return n->source().begin.line;
        const auto cut = key.find_last_of(".[");
        if (cut == std::string::npos)
            break;
        key.resize(cut);
    }
    return UINT32_MAX;
}

bool covered_by(const std::string& key, const std::string& prefix)
{
    if (!key.starts_with(prefix))
        return false;
    if (key.size() == prefix.size())
        return true;
    const char next = key[prefix.size()];
    return next == '.' || next == '[';
}

// ---------------------------------------------------------------------------
// Command line.

/// Options that take a value, and the flag-mode ones that make no sense with -c.
struct OptionSpec {
    std::string_view name;
    bool takes_value;
    bool flag_mode_only;
};

constexpr OptionSpec options[] = {
    {"--config", true, false}, {"--check", false, false},  {"--version", false, false}, {"--help", false, false},
    {"--primary", true, true}, {"--replica", true, true},  {"--listen", true, true},    {"--admin-listen", true, true},
    {"--user", true, true},    {"--password", true, true},
};

}  // namespace

// ---------------------------------------------------------------------------
// Public API.

std::string Endpoint::to_string() const
{
    // IPv6 literals need brackets or the port would be ambiguous.
    if (host.find(':') != std::string::npos)
        return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

const UserConfig* Config::find_user(std::string_view name) const noexcept
{
    for (const auto& u : users)
        if (u.name == name)
            return &u;
    return nullptr;
}

std::string ConfigError::to_string() const
{
    std::string out;
    if (!file.empty())
        out += file + ": ";
    if (!key.empty())
        out += key + ": ";
    out += message;
    return out;
}

std::optional<Endpoint> parse_endpoint(std::string_view text)
{
    std::string why;
    return parse_endpoint_why(text, why);
}

std::vector<ConfigError> validate(const Config& c)
{
    return Validator(c).run();
}

LoadResult parse_config(std::string_view toml_text, const std::string& file_name)
{
    LoadResult result;
    toml::table root;
    try {
        root = toml::parse(toml_text, file_name);
    } catch (const toml::parse_error& e) {
        // A syntax error leaves nothing trustworthy to check further.
        const auto& pos = e.source().begin;
        result.errors.push_back(ConfigError{file_name, "",
                                            "line " + std::to_string(pos.line) + ", column " +
                                                std::to_string(pos.column) + ": " + std::string(e.description())});
        return result;
    }

    Config c;
    c.source = file_name;
    TomlReader reader(file_name, c);
    reader.read(root);
    auto& errors = reader.errors();

    // Semantic checks run even after parse errors, so one --check run lists
    // everything; but a key that already failed to parse is not reported twice.
    const std::size_t parse_error_count = errors.size();
    for (auto& v : validate(c)) {
        const bool dup = std::any_of(errors.begin(), errors.begin() + static_cast<std::ptrdiff_t>(parse_error_count),
                                     [&](const ConfigError& e) { return covered_by(v.key, e.key); });
        if (!dup)
            errors.push_back(std::move(v));
    }

    // toml++ tables iterate in key order, not file order; sort so that the
    // list reads top to bottom like the file.
    std::vector<std::pair<std::uint32_t, ConfigError>> ordered;
    ordered.reserve(errors.size());
    for (auto& e : errors)
        ordered.emplace_back(line_of(root, e.key), std::move(e));
    std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [line, e] : ordered)
        result.errors.push_back(std::move(e));

    if (result.errors.empty())
        result.config = std::move(c);
    return result;
}

LoadResult load_config_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        const int err = errno;
        return LoadResult{std::nullopt,
                          {ConfigError{path, "", std::string("cannot read file: ") + std::strerror(err)}}};
    }
    std::ostringstream text;
    text << in.rdbuf();
    // Opening a directory succeeds on Linux; the read is what fails.
    if (in.bad() || text.fail()) {
        return LoadResult{std::nullopt, {ConfigError{path, "", "cannot read file"}}};
    }
    auto result = parse_config(text.str(), path);
    if (result.config)
        result.config->source = path;
    return result;
}

namespace {

/// The command line, one argument at a time: next_option() finds an option
/// and its value, apply() records it, finish() checks what combination it
/// makes. Every problem is collected, none stops the parse.
class CommandLineParser {
public:
    CommandLineParser(int argc, const char* const* argv) : argc_(argc), argv_(argv) {}

    CommandLineResult run()
    {
        for (int i = 1; i < argc_; ++i)
            if (auto opt = next_option(i))
                apply(opt->first, opt->second);
        finish();
        if (errors_.empty())
            return {std::move(cmd_), {}};
        return {std::nullopt, std::move(errors_)};
    }

private:
    /// The option at argv[i] and its value (advancing i past a separate
    /// value); nullopt after reporting a problem with it.
    std::optional<std::pair<std::string_view, std::string>> next_option(int& i)
    {
        const std::string_view arg = argv_[i];
        std::string_view name = arg;
        std::optional<std::string_view> inline_value;
        // Short forms are exactly "-c" and "-h"; "-cFILE" is not accepted.
        if (arg == "-c") {
            name = "--config";
        } else if (arg == "-h") {
            name = "--help";
        } else if (arg.starts_with("--")) {
            if (const auto eq = arg.find('='); eq != std::string_view::npos) {
                name = arg.substr(0, eq);
                inline_value = arg.substr(eq + 1);
            }
        } else {
            return fail("unexpected argument " + quoted(arg) + " (see --help)");
        }
        const auto* spec = std::find_if(std::begin(options), std::end(options),
                                        [&](const OptionSpec& o) { return o.name == name; });
        if (spec == std::end(options))
            return fail("unknown option " + quoted(name) + " (see --help)");
        std::string value;
        if (!spec->takes_value) {
            if (inline_value)
                return fail(std::string(name) + " takes no value");
        } else if (inline_value) {
            value = std::string(*inline_value);
        } else if (i + 1 < argc_) {
            const std::string_view next = argv_[i + 1];
            // "--config --check" is a forgotten value, not a file called
            // "--check". Passwords are taken verbatim: they may start with '-'.
            if (name != "--password" && next.size() > 1 && next.front() == '-')
                return fail(std::string(name) + " needs a value");
            value = std::string(next);
            ++i;
        } else {
            return fail(std::string(name) + " needs a value");
        }
        if (spec->takes_value && value.empty() && name != "--password")
            return fail(std::string(name) + " needs a non-empty value");
        if (spec->flag_mode_only)
            flag_mode_options_.emplace_back(name);
        return std::pair{spec->name, std::move(value)};
    }

    void apply(std::string_view name, const std::string& value)
    {
        const auto once = [&](bool already) {
            if (already)
                errors_.push_back(std::string(name) + " given more than once");
            return !already;
        };
        if (name == "--config") {
            if (once(saw_config_))
                cmd_.config_path = value;
            saw_config_ = true;
        } else if (name == "--check") {
            check_ = true;
        } else if (name == "--version") {
            version_ = true;
        } else if (name == "--help") {
            help_ = true;
        } else if (name == "--primary") {
            if (once(cmd_.primary.has_value()))
                cmd_.primary = endpoint(name, value);
        } else if (name == "--replica") {
            if (auto e = endpoint(name, value))
                cmd_.replicas.push_back(std::move(*e));
        } else if (name == "--listen") {
            if (once(cmd_.listen.has_value()))
                cmd_.listen = endpoint(name, value);
        } else if (name == "--admin-listen") {
            if (once(cmd_.admin_listen.has_value()))
                cmd_.admin_listen = endpoint(name, value);
        } else if (name == "--user") {
            if (once(!cmd_.user.empty()))
                cmd_.user = value;
        } else if (name == "--password") {
            if (once(saw_password_))
                cmd_.password = value;
            saw_password_ = true;
        }
    }

    /// The action, and what the options given together cannot do.
    void finish()
    {
        // --help and --version do nothing else, so they need no -c or --primary.
        if (help_) {
            cmd_.action = CommandLine::Action::help;
            return;
        }
        if (version_) {
            cmd_.action = CommandLine::Action::version;
            return;
        }
        const bool flag_mode = !flag_mode_options_.empty();
        if (check_) {
            cmd_.action = CommandLine::Action::check;
            if (!saw_config_)
                errors_.push_back("--check needs -c FILE");
        }
        if (saw_config_ && flag_mode) {
            errors_.push_back("-c cannot be combined with " + flag_mode_options_.front() +
                              " (use either a config file or the flags)");
        } else if (!check_ && !saw_config_ && !flag_mode) {
            errors_.push_back("nothing to run: give -c FILE or --primary HOST:PORT (see --help)");
        } else if (!saw_config_ && flag_mode && !cmd_.primary && !check_) {
            // Only report when --primary was not given at all; a bad --primary
            // value already produced its own message.
            const bool primary_given = std::find(flag_mode_options_.begin(), flag_mode_options_.end(), "--primary") !=
                                       flag_mode_options_.end();
            if (!primary_given)
                errors_.push_back("flag mode needs --primary HOST:PORT");
        }
    }

    std::optional<Endpoint> endpoint(std::string_view opt, std::string_view value)
    {
        std::string why;
        auto e = parse_endpoint_why(value, why);
        if (!e)
            errors_.push_back(std::string(opt) + ": invalid address " + quoted(value) + ": " + why);
        return e;
    }

    std::nullopt_t fail(std::string message)
    {
        errors_.push_back(std::move(message));
        return std::nullopt;
    }

    int argc_;
    const char* const* argv_;
    CommandLine cmd_;
    std::vector<std::string> errors_;
    bool check_ = false, version_ = false, help_ = false;
    bool saw_config_ = false, saw_password_ = false;
    std::vector<std::string> flag_mode_options_;  // for the "-c plus --primary" message
};

}  // namespace

CommandLineResult parse_command_line(int argc, const char* const* argv)
{
    return CommandLineParser(argc, argv).run();
}

LoadResult config_from_flags(const CommandLine& cmd)
{
    Config c;
    std::vector<ConfigError> errors;
    if (cmd.listen)
        c.proxy.listen = *cmd.listen;
    if (cmd.admin_listen)
        c.admin.listen = *cmd.admin_listen;

    if (cmd.primary)
        c.backends.push_back(BackendConfig{"primary", cmd.primary->host, cmd.primary->port, 1});
    else
        errors.push_back(ConfigError{"", "--primary", "flag mode needs --primary HOST:PORT"});
    for (std::size_t i = 0; i < cmd.replicas.size(); ++i) {
        const auto& r = cmd.replicas[i];
        c.backends.push_back(BackendConfig{"replica" + std::to_string(i + 1), r.host, r.port, 1});
    }

    // The one user logs clients in (SCRAM, which needs the plaintext here) and
    // also runs health checks and promotion.
    const std::string user = cmd.user.empty() ? "postgres" : cmd.user;
    c.health.user = user;
    c.health.password = cmd.password;
    if (cmd.password.empty()) {
        errors.push_back(ConfigError{"", "--password",
                                     "flag mode needs --password (user " + quoted(user) +
                                         " logs clients in and runs health checks)"});
    } else {
        UserConfig u;
        u.name = user;
        u.password = cmd.password;
        c.users.push_back(std::move(u));
    }

    // Name keys as the flags the user actually typed where that is unambiguous.
    for (auto& e : validate(c)) {
        if (e.key == "users" || e.key == "backends")
            continue;  // reported above as flags
        if (e.key == "proxy.listen")
            e.key = "--listen";
        else if (e.key == "admin.listen")
            e.key = "--admin-listen";
        errors.push_back(std::move(e));
    }

    LoadResult result;
    if (errors.empty())
        result.config = std::move(c);
    else
        result.errors = std::move(errors);
    return result;
}

std::string usage_text()
{
    return R"(pgswitch: a PostgreSQL proxy that sends writes to the primary and reads to replicas.

Usage:
  pgswitch -c FILE                 run with a TOML config file
  pgswitch --check -c FILE         validate FILE and exit: 0 if valid, else 1 listing
                                   every problem (file, key, what is wrong)
  pgswitch --primary HOST:PORT [--replica HOST:PORT]... [--listen ADDR:PORT]
           [--admin-listen ADDR:PORT] [--user NAME --password PW]
                                   run without a file; server roles are still
                                   discovered, the flags only list the servers
  pgswitch --version               print the version and exit
  pgswitch --help, -h              print this text and exit

Options:
  -c, --config FILE          config file (TOML)
      --check                only validate the config file (needs -c)
      --primary HOST:PORT    a server, named "primary"
      --replica HOST:PORT    another server, named replica1, replica2, ... (repeatable)
      --listen ADDR:PORT     SQL listener (default 127.0.0.1:6432)
      --admin-listen ADDR:PORT
                             admin HTTP listener (default 127.0.0.1:6480); flag mode
                             has no token, so it must be a loopback address
      --user NAME            the one user in flag mode (default postgres): logs clients
                             in and runs health checks and promotion
      --password PW          that user's password (required in flag mode)

  Values may be given as "--opt value" or "--opt=value". IPv6 addresses are
  bracketed: "[::1]:5432".

Signals:
  SIGHUP                     reload the config file without dropping clients
  SIGTERM, SIGINT            stop accepting, let open transactions finish (up to
                             proxy.shutdown_timeout_ms), then exit 0
)";
}

std::string_view to_string(PoolMode m) noexcept
{
    return enum_name(pool_modes, m);
}
std::string_view to_string(LoadBalancing m) noexcept
{
    return enum_name(load_balancings, m);
}
std::string_view to_string(ReadYourWrites m) noexcept
{
    return enum_name(read_your_writes_names, m);
}
std::string_view to_string(FailoverMode m) noexcept
{
    return enum_name(failover_modes, m);
}
std::string_view to_string(AuthMethod m) noexcept
{
    return enum_name(auth_methods, m);
}

}  // namespace pgswitch::proxy
