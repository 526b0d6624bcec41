// Bounded LRU of classifications keyed by query text.
#include "routing/statement_cache.h"

#include "routing/literal_key.h"

#include <algorithm>
#include <utility>

namespace pgswitch::routing {

StatementCache::StatementCache(std::size_t capacity, std::size_t max_text_bytes)
    : capacity_(capacity),
      max_text_bytes_(max_text_bytes)
{
    // Buckets up front avoid rehash pauses while warming; a huge capacity grows lazily.
    index_.reserve(std::min<std::size_t>(capacity_, 1 << 16));
}

std::shared_ptr<const Classification> StatementCache::find(std::string_view sql, std::uint64_t generation,
                                                           bool count_miss)
{
    const auto it = index_.find(sql);
    if (it == index_.end() || it->second->generation != generation) {
        if (count_miss)
            ++misses_;
        return nullptr;
    }
    ++hits_;
    lru_.splice(lru_.begin(), lru_, it->second);  // moves the node, iterators stay valid
    return it->second->value;
}

void StatementCache::insert(std::string_view sql, std::uint64_t generation, std::shared_ptr<const Classification> value)
{
    if (capacity_ == 0 || sql.size() > max_text_bytes_)
        return;
    if (const auto it = index_.find(sql); it != index_.end()) {
        it->second->generation = generation;
        it->second->value = std::move(value);
        lru_.splice(lru_.begin(), lru_, it->second);
        return;
    }
    if (index_.size() >= capacity_) {
        index_.erase(std::string_view{lru_.back().text});
        lru_.pop_back();
        ++evictions_;
    }
    lru_.push_front(Entry{std::string(sql), generation, std::move(value)});
    index_.emplace(std::string_view{lru_.front().text}, lru_.begin());
}

void StatementCache::clear() noexcept
{
    index_.clear();
    lru_.clear();
}

bool literal_insensitive(const Classification& c) noexcept
{
    if (c.parse_error || c.has_session_effect || c.has_session_bookkeeping || c.literal_sensitive ||
        c.statements.empty())
        return false;
    for (const auto& st : c.statements) {
        switch (st.kind) {
        case StatementKind::select:
        case StatementKind::dml:
        case StatementKind::explain:
        case StatementKind::copy_to:
        case StatementKind::copy_from:
        case StatementKind::transaction:
            break;
        default:
            return false;
        }
    }
    return true;
}

std::shared_ptr<const Classification> classify_cached(StatementCache& cache, std::string_view sql,
                                                      const FunctionCatalog* catalog)
{
    const std::uint64_t generation = catalog ? catalog->generation() : 0;
    // A miss here is not counted: the literal-free lookup below decides.
    if (auto cached = cache.find(sql, generation, false))
        return cached;
    // Second chance: the same statement with other literal values. Only
    // kinds whose routing cannot depend on a value are shared this way (not
    // SET, PREPARE, DDL...: their text is replayed or inspected).
    const auto key = literal_free_key(sql);
    if (auto shared = cache.find(key, generation))
        return shared;
    auto fresh = std::make_shared<const Classification>(classify(sql, catalog));
    cache.insert(sql, generation, fresh);
    if (literal_insensitive(*fresh))
        cache.insert(key, generation, fresh);
    return fresh;
}

}  // namespace pgswitch::routing
