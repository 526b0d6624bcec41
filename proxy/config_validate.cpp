// validate(): the rules a built Config obeys, whether it came from a file or
// from the flags. Each key's own rules (range, not empty, unique, form) come
// from its row in config_keys.h; the rules between keys (a TLS certificate
// needs its key, a non-loopback admin listener needs a token, how each user
// can log in) are written here.
#include "proxy/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "proxy/config_keys.h"

namespace pgswitch::proxy {

namespace {

using namespace config_keys;

constexpr std::string_view scram_prefix = "SCRAM-SHA-256$";

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

/// The entries before the one being checked, for Rules::unique.
template <class S>
struct Earlier {
    const Entries<S>* list = nullptr;  ///< nullptr in a [section]
    std::span<const S> entries;
};

/// Checks one section or entry against the rules of its keys' rows.
template <class S>
class KeyChecker {
public:
    KeyChecker(const S& owner, Earlier<S> earlier, Problems& problems)
        : owner_(owner),
          earlier_(earlier),
          problems_(problems)
    {
    }

    void check(const std::string& prefix, std::span<const Key<S>> keys)
    {
        for (const auto& key : keys) {
            const std::string path = dotted(prefix, key.name);
            std::visit(
                [&](const auto& field) {
                    check_value(path, key, field);
                    if (field.check)
                        field.check(owner_, owner_.*field.member, path, problems_);
                },
                key.field);
        }
    }

private:
    /// The rules of `key` that the type of its field gives meaning to.
    template <class T>
    void check_value(const std::string& path, const Key<S>& key, const Field<S, T>& field)
    {
        const T& value = owner_.*field.member;
        if constexpr (std::is_same_v<T, int> || std::is_same_v<T, std::int64_t>) {
            if (auto why = key.rules.range.violation(value))
                problems_.add(path, std::move(*why));
        } else if constexpr (std::is_same_v<T, std::uint16_t>) {
            // Only a Config built in code has port 0: the reader refuses it.
            if (value == 0)
                problems_.add(path, port_violation(0));
        } else if constexpr (std::is_same_v<T, Endpoint>) {
            if (value.host.empty())
                problems_.add(path, "host is empty");
            if (value.port == 0)
                problems_.add(path, "port must be 1..65535");
        } else if constexpr (std::is_same_v<T, std::string>) {
            if (key.rules.not_empty && value.empty())
                problems_.add(path, "must not be empty");
            else if (key.rules.unique)
                check_unique(path, key, field.member);
        }
    }

    /// No earlier entry has the same (non-empty) value.
    void check_unique(const std::string& path, const Key<S>& key, std::string S::*member)
    {
        const std::string& value = owner_.*member;
        if (!earlier_.list || value.empty())
            return;
        for (std::size_t j = 0; j < earlier_.entries.size(); ++j) {
            if (earlier_.entries[j].*member == value) {
                problems_.add(path, "duplicate " + std::string(earlier_.list->noun) + " " + std::string(key.name) +
                                        " " + quoted(value) + " (also " + indexed(std::string(earlier_.list->name), j) +
                                        ")");
                return;
            }
        }
    }

    const S& owner_;
    Earlier<S> earlier_;
    Problems& problems_;
};

// ---------------------------------------------------------------------------
// Rules between keys.

void check_tls_pair(const ProxySettings& p, Problems& problems)
{
    // A certificate without its key (or the reverse) is a half-done TLS
    // setup; starting without TLS would silently downgrade clients.
    if (!p.tls_cert.empty() && p.tls_key.empty())
        problems.add("proxy.tls_key", "must be set when proxy.tls_cert is set");
    if (p.tls_cert.empty() && !p.tls_key.empty())
        problems.add("proxy.tls_cert", "must be set when proxy.tls_key is set");
}

void check_admin_token(const AdminSettings& a, Problems& problems)
{
    if (!a.listen.host.empty() && !is_loopback(a.listen.host) && a.token.empty())
        problems.add("admin.listen", "refuses to start: non-loopback admin.listen needs admin.token");
}

/// How user `u` (at `key`, "users[0]") logs in, and whether its secret can do that.
void check_login(const UserConfig& u, const std::string& key, Problems& problems)
{
    if (!u.password && !u.scram_secret) {
        problems.add(key + ".password", "user needs a password or a scram_secret");
    } else if (u.password && u.scram_secret) {
        problems.add(key + ".scram_secret", "set either password or scram_secret, not both");
    } else if (u.auth_method != AuthMethod::scram_sha_256 && !u.password) {
        // md5 and cleartext checks need the plaintext; a SCRAM secret
        // only verifies SCRAM proofs.
        problems.add(key + ".auth_method", "auth_method " + quoted(to_string(u.auth_method)) +
                                               " needs a plaintext password, not a scram_secret");
    }
    // PostgreSQL itself refuses empty passwords, so one here can never log in.
    if (u.password && u.password->empty())
        problems.add(key + ".password", "must not be empty");
    if (u.scram_secret && !u.scram_secret->starts_with(scram_prefix))
        problems.add(key + ".scram_secret", "must start with \"SCRAM-SHA-256$\"");
}

void check_cache_available(const CacheSettings& cache, Problems& problems)
{
    // The keys are SPEC §2's and parse, so a file written for a later build
    // loads; turning the cache on must not start a proxy that silently
    // caches nothing.
    if (cache.enabled)
        problems.add("cache.enabled", "the result cache (SPEC §7) is not in this build yet: set "
                                      "cache.enabled = false (the default)");
}

// ---------------------------------------------------------------------------

/// Every section in the order of `sections`: its keys' rules, then the rules
/// between them.
class Validator {
public:
    explicit Validator(const Config& c) : c_(c), problems_(c.source) {}

    std::vector<ConfigError> run()
    {
        for_each_section([this](const auto& section) { check(section); });
        return std::move(problems_.list());
    }

private:
    template <class S>
    void check(const Section<S>& section)
    {
        const S& owner = c_.*section.member;
        KeyChecker<S>(owner, {}, problems_).check(std::string(section.name), section.keys);
        if constexpr (std::is_same_v<S, ProxySettings>)
            check_tls_pair(owner, problems_);
        if constexpr (std::is_same_v<S, AdminSettings>)
            check_admin_token(owner, problems_);
        if constexpr (std::is_same_v<S, CacheSettings>)
            check_cache_available(owner, problems_);
    }

    template <class S>
    void check(const Entries<S>& list)
    {
        const std::string name(list.name);
        const std::vector<S>& entries = c_.*list.member;
        if (entries.empty()) {
            problems_.add(name, "at least one [[" + name + "]] entry is required");
            return;
        }
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const std::string key = indexed(name, i);
            const Earlier<S> earlier{&list, std::span<const S>(entries).first(i)};
            KeyChecker<S>(entries[i], earlier, problems_).check(key, list.keys);
            if constexpr (std::is_same_v<S, UserConfig>)
                check_login(entries[i], key, problems_);
        }
    }

    const Config& c_;
    Problems problems_;
};

}  // namespace

std::vector<ConfigError> validate(const Config& c)
{
    return Validator(c).run();
}

}  // namespace pgswitch::proxy
