// Unit tests for proxy/config_keys.h: walking the key tables, every key reads
// back its own default, every range is enforced under the key's name, and the
// tables only state rules their keys' types can have.
#include "proxy/config_keys.h"

#include <doctest/doctest.h>

#include <limits>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

using namespace pgswitch::proxy;
using namespace pgswitch::proxy::config_keys;

namespace {

constexpr const char* minimal_entries = R"(
[[backends]]
name = "pg1"
host = "127.0.0.1"

[[users]]
name = "app"
password = "app"
)";

/// `v` written as a TOML value.
template <class T>
std::string toml_value(const T& v)
{
    if constexpr (std::is_same_v<T, bool>) {
        return v ? "true" : "false";
    } else if constexpr (std::is_integral_v<T>) {
        return std::to_string(v);
    } else if constexpr (std::is_enum_v<T>) {
        return quoted(to_string(v));
    } else if constexpr (std::is_same_v<T, Endpoint>) {
        return quoted(v.to_string());
    } else if constexpr (std::is_same_v<T, std::optional<std::string>>) {
        return quoted(v.value_or(""));
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
        std::string out;
        for (const auto& s : v)
            out += (out.empty() ? "" : ", ") + quoted(s);
        return "[" + out + "]";
    } else {
        return quoted(v);
    }
}

/// A whole file whose [section] or first [[entry]] `list` also has `line`;
/// the key of that section or entry.
std::pair<std::string, std::string> file_with(std::string_view list, const std::string& line)
{
    const std::string backend = "name = \"pg1\"\nhost = \"127.0.0.1\"\n";
    const std::string user = "name = \"app\"\npassword = \"app\"\n";
    if (list == "backends")
        return {"[[backends]]\n" + backend + line + "\n[[users]]\n" + user, "backends[0]"};
    if (list == "users")
        return {"[[backends]]\n" + backend + "[[users]]\n" + user + line + "\n", "users[0]"};
    return {"[" + std::string(list) + "]\n" + line + "\n" + minimal_entries, std::string(list)};
}

template <class S>
bool is_string_key(const Key<S>& key)
{
    return std::holds_alternative<Field<S, std::string>>(key.field);
}

/// The first S of `list` in `c`: the section itself, or the first entry.
template <class S>
const S& first_of(const Config& c, const Section<S>& section)
{
    return c.*section.member;
}
template <class S>
const S& first_of(const Config& c, const Entries<S>& list)
{
    return (c.*list.member).at(0);
}

/// Every [section] key as "section.key", in table order.
std::vector<std::string> section_key_names()
{
    std::vector<std::string> out;
    for_each_section([&](const auto& section) {
        if constexpr (is_section<std::remove_cvref_t<decltype(section)>>)
            for (const auto& key : section.keys)
                out.push_back(dotted(std::string(section.name), key.name));
    });
    return out;
}

}  // namespace

TEST_CASE("key tables: names are unique and the sections are those of SPEC §2")
{
    std::vector<std::string> tops;
    for_each_section([&](const auto& s) { tops.emplace_back(s.name); });
    CHECK(tops == std::vector<std::string>{"proxy", "admin", "routing", "health", "failover", "cluster", "cache",
                                           "backends", "users"});
    const auto names = section_key_names();
    CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
}

TEST_CASE("key tables: writing every key's default reads back the default")
{
    const Config defaults;
    const BackendConfig backend;
    const UserConfig user;
    for_each_section([&](const auto& section) {
        for (const auto& key : section.keys) {
            std::visit(
                [&](const auto& field) {
                    using T = typename std::remove_cvref_t<decltype(field)>::value_type;
                    using S = std::remove_cvref_t<decltype(first_of(defaults, section))>;
                    // An entry's required keys are in file_with()'s entries
                    // already; an unset optional has no TOML form.
                    if (key.rules.required || std::is_same_v<T, std::optional<std::string>>)
                        return;
                    const S* owner_defaults = nullptr;
                    if constexpr (std::is_same_v<S, BackendConfig>)
                        owner_defaults = &backend;
                    else if constexpr (std::is_same_v<S, UserConfig>)
                        owner_defaults = &user;
                    else
                        owner_defaults = &first_of(defaults, section);
                    const T& expected = owner_defaults->*field.member;
                    const auto [text, prefix] = file_with(section.name,
                                                          std::string(key.name) + " = " + toml_value(expected));
                    INFO(text);
                    const auto r = parse_config(text, "t.toml");
                    REQUIRE(r.config.has_value());
                    CHECK(toml_value(first_of(*r.config, section).*field.member) == toml_value(expected));
                },
                key.field);
        }
    });
}

TEST_CASE("key tables: a value just outside a key's range is refused with the range's message")
{
    int ranged = 0;
    for_each_section([&](const auto& section) {
        for (const auto& key : section.keys) {
            const Range& range = key.rules.range;
            if (!range.bounded())
                continue;
            ++ranged;
            INFO(section.name << "." << key.name);
            // A range on anything but an integer would be ignored.
            const bool integer = std::visit(
                [](const auto& field) {
                    using T = typename std::remove_cvref_t<decltype(field)>::value_type;
                    return std::is_same_v<T, int> || std::is_same_v<T, std::int64_t>;
                },
                key.field);
            CHECK(integer);
            std::vector<std::int64_t> outside;
            if (range.min != std::numeric_limits<std::int64_t>::min())
                outside.push_back(range.min - 1);
            if (range.max != std::numeric_limits<std::int64_t>::max())
                outside.push_back(range.max + 1);
            for (const std::int64_t v : outside) {
                const auto [text, prefix] = file_with(section.name, std::string(key.name) + " = " + std::to_string(v));
                INFO(text);
                const auto r = parse_config(text, "t.toml");
                CHECK_FALSE(r.config.has_value());
                REQUIRE(r.errors.size() == 1);
                CHECK(r.errors[0].key == dotted(prefix, key.name));
                CHECK(r.errors[0].message == range.violation(v).value());
            }
        }
    });
    CHECK(ranged >= 15);
}

TEST_CASE("key tables: rules that need a string are on string keys")
{
    for_each_section([&](const auto& section) {
        for (const auto& key : section.keys) {
            INFO(section.name << "." << key.name);
            if (key.rules.not_empty || key.rules.unique)
                CHECK(is_string_key(key));
        }
    });
}

TEST_CASE("key tables: --help shows the defaults of the keys its flags stand for")
{
    CHECK(default_text("proxy.listen") == "127.0.0.1:6432");
    CHECK(default_text("admin.listen") == "127.0.0.1:6480");
    CHECK(default_text("health.user") == "postgres");
    CHECK(default_text("failover.mode") == "auto");
    CHECK(default_text("routing.write_functions") == "");
    CHECK_FALSE(default_text("proxy.nonexistent").has_value());
    CHECK_FALSE(default_text("backends.name").has_value());
    CHECK(usage_text().find('{') == std::string::npos);
}

TEST_CASE("Range messages")
{
    CHECK(at_least(1).violation(0) == "must be at least 1, got 0");
    CHECK_FALSE(at_least(1).violation(1).has_value());
    const Range capped{.min = 0, .max = 10, .max_reason = "why"};
    CHECK(capped.violation(11) == "must be at most 10 (why)");
    CHECK(Range{.max = 10}.violation(11) == "must be at most 10");
    CHECK_FALSE(Range{}.bounded());
    CHECK(port_violation(0) == "must be 1..65535, got 0");
}
