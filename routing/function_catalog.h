// Which SQL functions have side effects: the built-in ones pgswitch knows by name, and a
// per-database catalog of user functions (pg_proc volatility plus config overrides).
// Pure data and lookups: the proxy fills a catalog from its pg_proc query and config.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

namespace pgswitch::routing {

/// What calling one function does to routing.
struct FunctionEffect {
    bool write = false;         ///< must run on the primary
    bool pins_primary = false;  ///< leaves session state on the server (session advisory locks)
    bool uses_currval = false;  ///< reads the session's sequence state (currval, lastval)

    friend bool operator==(const FunctionEffect&, const FunctionEffect&) = default;
};

/// Effect of a built-in function called as `name(...)` or `pg_catalog.name(...)`.
/// `name` must already be lower-case. Functions not listed return a default (read) effect.
/// set_config() is not listed: whether it writes depends on its third argument, which
/// only the classifier sees.
[[nodiscard]] FunctionEffect builtin_function_effect(std::string_view name) noexcept;

/// User functions of one database that must run on the primary.
///
/// Filled once (from `pg_proc` rows with provolatile = 'v' outside pg_catalog and
/// information_schema, plus the `write_functions` / `read_only_functions` config lists), then
/// shared read-only, e.g. as `std::shared_ptr<const FunctionCatalog>`. Const member functions
/// are safe to call from several threads at once.
///
/// Names are compared lower-case. A catalog entry "schema.name" also answers for the bare
/// name, because without the session's search_path a bare call may resolve to it; a config
/// entry without a schema answers for that name in every schema.
class FunctionCatalog {
public:
    /// `generation` identifies this content: cached classifications made with another
    /// generation are stale. Use a value > 0 (0 is what classify_cached() uses for "no catalog")
    /// and a new one after every refresh.
    explicit FunctionCatalog(std::uint64_t generation = 1) noexcept : generation_(generation) {}

    /// A VOLATILE function from pg_proc.
    void add_volatile(std::string_view schema, std::string_view name);
    /// A config `write_functions` entry, "name" or "schema.name".
    void add_write_function(std::string_view name);
    /// A config `read_only_functions` entry: overrides VOLATILE, not `write_functions` and
    /// not the built-in list (those fail or misbehave on a hot standby).
    void add_read_only_function(std::string_view name);
    /// A function that exists (any volatility, any schema, pg_catalog included).
    /// A catalog given at least one is complete: calls of names it does not
    /// know are reported by the classifier (Classification::unknown_functions)
    /// so that the proxy can look them up before routing.
    void add_known(std::string_view schema, std::string_view name);
    /// An UNLOGGED table or index (pg_class.relpersistence = 'u'): a standby
    /// cannot read it ("cannot access temporary or unlogged relations during
    /// recovery"), so statements that name it run on the primary.
    void add_unlogged(std::string_view schema, std::string_view name);
    /// Whether `schema.name` (schema empty when unqualified) may be an UNLOGGED
    /// relation; lower-case arguments.
    [[nodiscard]] bool unlogged(std::string_view schema, std::string_view name) const;
    /// A function (any schema, pg_catalog included) with an overload that is
    /// VOLATILE or STABLE: its result may change without a table changing, so a
    /// statement that calls it is never served from the result cache.
    void add_non_immutable(std::string_view schema, std::string_view name);
    /// Whether a call of `schema.name` gives the same result for the same
    /// arguments: the catalog is complete, lists it, and none of its overloads
    /// is VOLATILE or STABLE. Lower-case arguments.
    [[nodiscard]] bool immutable(std::string_view schema, std::string_view name) const;
    /// A name that was looked up and does not exist ("name" or "schema.name"):
    /// known as a read until the next refresh, so it is not looked up again.
    void add_missing(std::string_view name);

    /// The catalog lists every function of its database (add_known was used).
    [[nodiscard]] bool complete() const noexcept { return known_count_ > 0; }
    /// Whether `schema.name` (schema empty for an unqualified call) is a
    /// function this catalog knows of, or was told is missing. Always true
    /// for an incomplete catalog. Lower-case arguments.
    [[nodiscard]] bool knows(std::string_view schema, std::string_view name) const;

    /// Effect of calling `schema.name(...)`; `schema` is empty for an unqualified call.
    /// Both must already be lower-case (the parser folds unquoted identifiers).
    /// Unknown functions are reads: the catalog lists every volatile one.
    [[nodiscard]] FunctionEffect lookup(std::string_view schema, std::string_view name) const;

    [[nodiscard]] std::uint64_t generation() const noexcept { return generation_; }
    [[nodiscard]] std::size_t volatile_count() const noexcept { return volatile_count_; }

private:
    // Transparent hashing so lookups by string_view build no std::string.
    struct NameHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    using NameSet = std::unordered_set<std::string, NameHash, std::equal_to<>>;

    /// One list of names, answering for qualified and bare calls.
    struct NameIndex {
        NameSet qualified;   ///< "schema.name" entries
        NameSet any_schema;  ///< entries given without a schema: match in every schema
        NameSet bare;        ///< the name part of every entry, for unqualified calls

        void add(std::string_view entry);
        [[nodiscard]] bool matches(std::string_view schema, std::string_view name) const;
    };

    std::uint64_t generation_;
    std::size_t volatile_count_ = 0;
    std::size_t known_count_ = 0;
    NameIndex known_;     ///< every function of the database, and names known to be missing
    NameIndex unlogged_;  ///< UNLOGGED relations
    bool any_unlogged_ = false;
    NameIndex volatile_;       ///< pg_proc VOLATILE user functions
    NameIndex non_immutable_;  ///< pg_proc VOLATILE or STABLE functions, built-ins too
    NameIndex write_;          ///< config write_functions
    NameIndex read_only_;      ///< config read_only_functions
};

}  // namespace pgswitch::routing
