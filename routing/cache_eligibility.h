// Which reads the result cache may answer, and under what key (SPEC §7). Pure: decided
// from the classification, the statement's leading comment and the session's situation;
// resolving relation names to OIDs and keeping replies are the caller's and ResultCache's.
#pragma once

#include <array>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "routing/classifier.h"

namespace pgswitch::routing {

/// cache.statements
enum class CacheStatements {
    hinted,  ///< only statements that start with /* pgswitch:cache */
    all,     ///< every eligible read
};

/// A leading /* pgswitch:cache */, /* pgswitch:cache ttl=5s */ or /* pgswitch:nocache */.
struct CacheHint {
    enum class Kind { none, cache, nocache };
    Kind kind = Kind::none;
    std::optional<std::chrono::milliseconds> ttl;  ///< ttl=500ms / 5s / 2m / 1h
};
[[nodiscard]] CacheHint parse_cache_hint(std::string_view sql) noexcept;

/// Why a request is, or is not, answered from the cache.
enum class CacheVerdict {
    cache,               ///< eligible: look it up, fill it on a miss
    nocache_hint,        ///< /* pgswitch:nocache */
    not_hinted,          ///< statements = "hinted" and no /* pgswitch:cache */
    not_a_read,          ///< writes, or is not a SELECT (SHOW, EXPLAIN, COPY, SET...)
    several_statements,  ///< a multi-statement query string
    write_transaction,   ///< inside a transaction that is read-write
    pinned_session,      ///< the session has temporary objects or other state on the primary
    nondeterministic,    ///< volatile/stable functions, CURRENT_*, 'now', TABLESAMPLE
    unlogged,            ///< names an UNLOGGED relation
    session_identity,    ///< answers about the connection (pg_backend_pid()...)
    parse_error,
};
[[nodiscard]] std::string_view to_string(CacheVerdict v) noexcept;

struct CacheSituation {
    CacheStatements statements = CacheStatements::hinted;
    bool in_read_write_transaction = false;
    bool session_pinned = false;
};

struct CacheDecision {
    CacheVerdict verdict = CacheVerdict::not_a_read;
    std::optional<std::chrono::milliseconds> ttl;  ///< the hint's, when it gave one
    [[nodiscard]] bool cache() const noexcept { return verdict == CacheVerdict::cache; }
};

/// Whether `sql` (classified as `c`) may be answered from the cache. Every relation it
/// names is in c.statements[0].relations; the caller must still resolve each to a plain
/// table (not a view, temporary, unlogged, partitioned or inherited one) before caching.
[[nodiscard]] CacheDecision decide_caching(const Classification& c, std::string_view sql,
                                           const CacheSituation& situation);

/// The settings that change what a reply looks like (SPEC §7), lower-case.
inline constexpr std::array<std::string_view, 8> cache_key_settings = {
    "search_path",        "datestyle",    "intervalstyle",   "timezone",
    "extra_float_digits", "bytea_output", "client_encoding", "standard_conforming_strings"};

/// What a cached reply is keyed by. `settings` holds the session's value of each of
/// cache_key_settings, in that order (empty for the server default). `bind_arguments` is
/// the Bind message's body after its portal and statement names (parameter formats and
/// values, result formats) for the extended protocol; nullopt for a simple Query.
struct CacheKeyParts {
    std::string_view user;
    std::string_view database;
    std::string_view text;
    std::array<std::string_view, cache_key_settings.size()> settings{};
    std::optional<std::string_view> bind_arguments;
};

/// One byte string per distinct key: every part length-prefixed, so no two different
/// sets of parts give the same key.
[[nodiscard]] std::string cache_key(const CacheKeyParts& parts);

}  // namespace pgswitch::routing
