// Reading the TOML file of SPEC §2 into a Config: parse_config() and
// load_config_file(). Which keys exist and what type each takes come from the
// tables of config_keys.h. This file reports what stops a value from being
// stored (an unknown key, a wrong type, a number the field cannot hold, an
// unknown spelling); what a stored value may be is left to validate(), so
// that files and flags obey one rule set.
#include "proxy/config.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include <toml++/toml.h>

#include "proxy/config_keys.h"

namespace pgswitch::proxy {

namespace {

using namespace config_keys;

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

/// Stores one TOML value in a field of the type the key table gives it. On
/// a mismatch it reports and leaves the field (its default) untouched, so
/// that checking the other fields is not disturbed.
class ValueReader {
public:
    explicit ValueReader(Problems& problems) : problems_(problems) {}

    void wrong_type(const std::string& key, std::string_view expected, const toml::node& n)
    {
        problems_.add(key, "expected " + std::string(expected) + ", got " + std::string(type_name(n.type())));
    }

    template <class T>
    void read(const toml::node& n, const std::string& key, T& out)
    {
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::optional<std::string>>) {
            read_scalar<std::string>(n, key, out, "string");
        } else if constexpr (std::is_same_v<T, bool>) {
            read_scalar<bool>(n, key, out, "boolean");
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
            read_scalar<std::int64_t>(n, key, out, "integer");
        } else if constexpr (std::is_enum_v<T>) {
            read_spelling(n, key, out);
        } else {
            read_other(n, key, out);
        }
    }

private:
    /// A value toml++ holds as a `V` (string, boolean, 64-bit integer).
    template <class V, class T>
    void read_scalar(const toml::node& n, const std::string& key, T& out, std::string_view expected)
    {
        if (const auto* v = n.as<V>())
            out = v->get();
        else
            wrong_type(key, expected, n);
    }

    /// A 32-bit integer: larger values are not truncated but refused.
    void read_other(const toml::node& n, const std::string& key, int& out)
    {
        const auto* v = n.as_integer();
        if (!v)
            return wrong_type(key, "integer", n);
        const std::int64_t x = v->get();
        if (x < INT_MIN || x > INT_MAX)
            return problems_.add(key, "value " + std::to_string(x) + " is out of range (at most " +
                                          std::to_string(INT_MAX) + ")");
        out = static_cast<int>(x);
    }

    /// A port: 0 or more than 16 bits cannot be stored, so it is refused here.
    void read_other(const toml::node& n, const std::string& key, std::uint16_t& out)
    {
        const auto* v = n.as_integer();
        if (!v)
            return wrong_type(key, "integer", n);
        const std::int64_t x = v->get();
        if (x < 1 || x > 65535)
            return problems_.add(key, port_violation(x));
        out = static_cast<std::uint16_t>(x);
    }

    void read_other(const toml::node& n, const std::string& key, Endpoint& out)
    {
        const auto* v = n.as_string();
        if (!v)
            return wrong_type(key, "string \"host:port\"", n);
        std::string why;
        if (auto e = config_keys::parse_endpoint(v->get(), why))
            out = std::move(*e);
        else
            problems_.add(key, "invalid address " + quoted(v->get()) + ": " + why);
    }

    void read_other(const toml::node& n, const std::string& key, std::vector<std::string>& out)
    {
        const auto* a = n.as_array();
        if (!a)
            return wrong_type(key, "array of strings", n);
        out.clear();
        for (std::size_t i = 0; i < a->size(); ++i) {
            if (const auto* s = (*a)[i].as_string())
                out.push_back(s->get());
            else
                wrong_type(indexed(key, i), "string", (*a)[i]);
        }
    }

    template <class E>
    void read_spelling(const toml::node& n, const std::string& key, E& out)
    {
        const auto* v = n.as_string();
        if (!v)
            return wrong_type(key, "string", n);
        for (const auto& s : spellings<E>()) {
            if (s.name == v->get()) {
                out = s.value;
                return;
            }
        }
        problems_.add(key, "must be one of " + spelling_list<E>() + ", got " + quoted(v->get()));
    }

    Problems& problems_;
};

/// Walks the file along `sections`: every key to its field, every key the
/// tables do not list reported (with the allowed ones, since a typo is the
/// usual cause).
class TomlReader {
public:
    TomlReader(Config& c, Problems& problems) : c_(c), problems_(problems), values_(problems) {}

    void read(const toml::table& root)
    {
        for (const auto& [k, node] : root) {
            const std::string key = dotted("", k.str());
            bool known = false;
            for_each_section([&](const auto& section) {
                if (section.name == k.str()) {
                    known = true;
                    read_part(node, key, section);
                }
            });
            if (!known)
                unknown_key(key, "at top level", section_names());
        }
    }

private:
    template <class S>
    void read_part(const toml::node& n, const std::string& key, const Section<S>& section)
    {
        if (const auto* t = n.as_table())
            read_keys(*t, key, section.keys, c_.*section.member);
        else
            values_.wrong_type(key, "table", n);
    }

    /// An array of tables. Entries that are not tables still get a
    /// default-constructed slot so that later indices in messages match the file.
    template <class S>
    void read_part(const toml::node& n, const std::string& key, const Entries<S>& entries)
    {
        const auto* a = n.as_array();
        if (!a)
            return values_.wrong_type(key, "array of tables ([[" + key + "]])", n);
        auto& out = c_.*entries.member;
        for (std::size_t i = 0; i < a->size(); ++i) {
            const std::string entry_key = indexed(key, i);
            S& entry = out.emplace_back();
            if (const auto* t = (*a)[i].as_table())
                read_keys(*t, entry_key, entries.keys, entry);
            else
                values_.wrong_type(entry_key, "table", (*a)[i]);
        }
    }

    /// The keys of one table into `out`, then the required ones it lacks.
    template <class S>
    void read_keys(const toml::table& t, const std::string& prefix, std::span<const Key<S>> keys, S& out)
    {
        for (const auto& [k, node] : t) {
            const std::string key = dotted(prefix, k.str());
            const auto it = std::find_if(keys.begin(), keys.end(), [&](const Key<S>& s) { return s.name == k.str(); });
            if (it == keys.end()) {
                unknown_key(key, "here", key_names(keys));
                continue;
            }
            std::visit([&](const auto& field) { values_.read(node, key, out.*field.member); }, it->field);
        }
        for (const auto& spec : keys)
            if (spec.rules.required && !t.contains(spec.name))
                problems_.add(dotted(prefix, spec.name), "required key is missing");
    }

    void unknown_key(const std::string& key, std::string_view where, const std::string& allowed)
    {
        problems_.add(key, "unknown key (allowed " + std::string(where) + ": " + allowed + ")");
    }

    template <class S>
    static std::string key_names(std::span<const Key<S>> keys)
    {
        std::string out;
        for (const auto& k : keys)
            out += (out.empty() ? "" : ", ") + std::string(k.name);
        return out;
    }

    static std::string section_names()
    {
        std::string out;
        for_each_section([&](const auto& s) { out += (out.empty() ? "" : ", ") + std::string(s.name); });
        return out;
    }

    Config& c_;
    Problems& problems_;
    ValueReader values_;
};

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

/// True when `key` is `prefix` itself or lies below it ("backends[1]" covers
/// "backends[1].name"). Used to drop follow-on validation errors for a key
/// that already has a parse error: one problem, one message.
bool covered_by(const std::string& key, const std::string& prefix)
{
    if (!key.starts_with(prefix))
        return false;
    if (key.size() == prefix.size())
        return true;
    const char next = key[prefix.size()];
    return next == '.' || next == '[';
}

/// validate()'s problems after the reader's, less those on keys that already
/// failed to read, all in file order.
std::vector<ConfigError> merge_in_file_order(const toml::table& root, std::vector<ConfigError> read_errors,
                                             std::vector<ConfigError> rule_errors)
{
    std::vector<ConfigError> errors = std::move(read_errors);
    const std::size_t read_count = errors.size();
    for (auto& v : rule_errors) {
        const bool dup = std::any_of(errors.begin(), errors.begin() + static_cast<std::ptrdiff_t>(read_count),
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
    std::vector<ConfigError> out;
    out.reserve(ordered.size());
    for (auto& [line, e] : ordered)
        out.push_back(std::move(e));
    return out;
}

}  // namespace

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
    Problems problems(file_name);
    TomlReader(c, problems).read(root);
    // The rules run even after read errors, so that one --check run lists
    // everything; but a key that already failed to read is not reported twice.
    result.errors = merge_in_file_order(root, std::move(problems.list()), validate(c));
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

}  // namespace pgswitch::proxy
