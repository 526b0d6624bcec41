// Bounded LRU of classifications keyed by the exact query text, in front of classify():
// parsing is the proxy's biggest CPU cost per new query, and applications repeat texts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "routing/classifier.h"

namespace pgswitch::routing {

/// LRU map from query text to its shared, immutable Classification.
///
/// Each entry remembers the FunctionCatalog generation it was made with; a lookup under
/// another generation is a miss, so refreshing a catalog invalidates without a sweep.
/// Not thread-safe: one cache per thread (or per database on one executor), or lock
/// around it. Returned pointers stay valid after eviction.
class StatementCache {
public:
    /// `capacity` entries at most (0 disables caching); texts longer than `max_text_bytes`
    /// are never stored, so one huge multi-row INSERT cannot hold megabytes.
    explicit StatementCache(std::size_t capacity = 10'000, std::size_t max_text_bytes = 16 * 1024);

    StatementCache(const StatementCache&) = delete;
    StatementCache& operator=(const StatementCache&) = delete;

    /// The cached classification of `sql` made under `generation`, or nullptr. A hit
    /// makes the entry the most recently used. Counts a hit or a miss.
    [[nodiscard]] std::shared_ptr<const Classification> find(std::string_view sql, std::uint64_t generation,
                                                             bool count_miss = true);

    /// Stores (or replaces) `sql`'s entry as the most recently used, evicting the least
    /// recently used one when full. Texts over the size limit are ignored.
    void insert(std::string_view sql, std::uint64_t generation, std::shared_ptr<const Classification> value);

    void clear() noexcept;

    [[nodiscard]] std::size_t size() const noexcept { return index_.size(); }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::uint64_t hits() const noexcept { return hits_; }
    [[nodiscard]] std::uint64_t misses() const noexcept { return misses_; }
    [[nodiscard]] std::uint64_t evictions() const noexcept { return evictions_; }

private:
    struct Entry {
        std::string text;
        std::uint64_t generation;
        std::shared_ptr<const Classification> value;
    };
    using List = std::list<Entry>;  ///< front = most recently used

    std::size_t capacity_;
    std::size_t max_text_bytes_;
    List lru_;
    // Keys are views into the list nodes' text: nodes never move (splice relinks them),
    // and an entry leaves the index before its node is erased.
    std::unordered_map<std::string_view, List::iterator> index_;
    std::uint64_t hits_ = 0;
    std::uint64_t misses_ = 0;
    std::uint64_t evictions_ = 0;
};

/// Whether a classification holds for every literal value of its text (see
/// literal_key.h), so it may be cached under the literal-free key.
[[nodiscard]] bool literal_insensitive(const Classification& c) noexcept;

/// classify() behind `cache`: exact text first, then the literal-free key. The generation is the catalog's, or 0
/// without one.
[[nodiscard]] std::shared_ptr<const Classification> classify_cached(StatementCache& cache, std::string_view sql,
                                                                    const FunctionCatalog* catalog);

}  // namespace pgswitch::routing
