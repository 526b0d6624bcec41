#include "routing/result_cache.h"

#include <algorithm>

namespace pgswitch::routing {

namespace {

// What an entry costs beyond its key, reply and table list: the list node, the two index
// entries and the allocator's rounding. Counted so that many tiny replies stay bounded too.
constexpr std::size_t entry_overhead = 256;

std::size_t entry_bytes(std::size_t key, std::size_t reply, std::size_t tables)
{
    return entry_overhead + key + reply + tables * sizeof(RelationOid);
}

}  // namespace

std::string_view to_string(CacheDrop d) noexcept
{
    switch (d) {
    case CacheDrop::write:
        return "write";
    case CacheDrop::truncate:
        return "truncate";
    case CacheDrop::ddl:
        return "ddl";
    case CacheDrop::flush:
        return "flush";
    case CacheDrop::expired:
        return "expired";
    case CacheDrop::evicted:
        return "evicted";
    }
    return "unknown";
}

ResultCache::ResultCache(ResultCacheLimits limits) : limits_(limits) {}

std::optional<CachedReply> ResultCache::find(std::string_view key, time_point now)
{
    const auto found = by_key_.find(key);
    if (found == by_key_.end()) {
        ++counters_.misses;
        return std::nullopt;
    }
    const auto it = found->second;
    if (now >= it->expires_at) {
        erase(it, CacheDrop::expired);
        ++counters_.misses;
        return std::nullopt;
    }
    lru_.splice(lru_.begin(), lru_, it);
    ++counters_.hits;
    return CachedReply{it->reply, it->filled_at};
}

std::optional<ResultCache::FillId> ResultCache::begin_fill(std::string key, std::vector<RelationOid> tables,
                                                           std::uint64_t snapshot_floor,
                                                           std::optional<std::chrono::milliseconds> ttl)
{
    if (!filling_keys_.insert(key).second)
        return std::nullopt;
    const FillId id = next_fill_++;
    const bool stale_from_start = changed_after(tables, snapshot_floor);
    fills_.emplace(id, Fill{std::move(key), std::move(tables), ttl, stale_from_start});
    return id;
}

bool ResultCache::filling(std::string_view key) const
{
    return filling_keys_.contains(std::string(key));
}

bool ResultCache::finish_fill(FillId id, std::string reply, time_point now)
{
    const auto found = fills_.find(id);
    if (found == fills_.end())
        return false;
    Fill fill = std::move(found->second);
    fills_.erase(found);
    filling_keys_.erase(fill.key);
    const auto bytes = entry_bytes(fill.key.size(), reply.size(), fill.tables.size());
    if (fill.spoiled || bytes > limits_.max_entry_bytes || bytes > limits_.max_bytes) {
        ++counters_.fills_discarded;
        return false;
    }
    if (const auto old = by_key_.find(fill.key); old != by_key_.end())
        erase(old->second, std::nullopt);  // two misses in turn filled the same key: keep the newer
    make_room(bytes);
    const auto ttl = fill.ttl.value_or(limits_.ttl);
    lru_.push_front(Entry{std::move(fill.key), std::make_shared<const std::string>(std::move(reply)),
                          std::move(fill.tables), now, now + ttl, bytes});
    Entry& entry = lru_.front();
    by_key_.emplace(entry.key, lru_.begin());
    for (const auto oid : entry.tables)
        by_table_[oid].insert(&entry);
    bytes_ += bytes;
    ++counters_.fills;
    return true;
}

void ResultCache::abandon_fill(FillId id)
{
    const auto found = fills_.find(id);
    if (found == fills_.end())
        return;
    filling_keys_.erase(found->second.key);
    fills_.erase(found);
}

void ResultCache::invalidate(std::span<const RelationOid> tables, CacheDrop why, std::uint64_t commit_lsn)
{
    for (const auto oid : tables) {
        auto& at = changed_at_[oid];
        at = std::max(at, commit_lsn);
    }
    spoil_fills(tables);
    for (const auto oid : tables) {
        const auto found = by_table_.find(oid);
        if (found == by_table_.end())
            continue;
        // erase() edits this set: take the entries out first.
        std::vector<const Entry*> victims(found->second.begin(), found->second.end());
        for (const Entry* entry : victims)
            erase(by_key_.at(entry->key), why);
    }
}

void ResultCache::flush(CacheDrop why)
{
    for (auto& [id, fill] : fills_)
        fill.spoiled = true;
    counters_.drops[static_cast<std::size_t>(why)] += lru_.size();
    lru_.clear();
    by_key_.clear();
    by_table_.clear();
    bytes_ = 0;
}

ResultCacheStats ResultCache::stats() const
{
    ResultCacheStats s = counters_;
    s.entries = lru_.size();
    s.bytes = bytes_;
    s.filling = fills_.size();
    return s;
}

void ResultCache::erase(Lru::iterator it, std::optional<CacheDrop> why)
{
    for (const auto oid : it->tables) {
        const auto found = by_table_.find(oid);
        if (found == by_table_.end())
            continue;
        found->second.erase(&*it);
        if (found->second.empty())
            by_table_.erase(found);
    }
    by_key_.erase(it->key);
    bytes_ -= it->bytes;
    if (why)
        ++counters_.drops[static_cast<std::size_t>(*why)];
    lru_.erase(it);
}

void ResultCache::make_room(std::size_t bytes)
{
    while (!lru_.empty() && bytes_ + bytes > limits_.max_bytes)
        erase(std::prev(lru_.end()), CacheDrop::evicted);
}

bool ResultCache::changed_after(std::span<const RelationOid> tables, std::uint64_t lsn) const
{
    return std::any_of(tables.begin(), tables.end(), [&](RelationOid oid) {
        const auto found = changed_at_.find(oid);
        return found != changed_at_.end() && found->second > lsn;
    });
}

void ResultCache::spoil_fills(std::span<const RelationOid> tables)
{
    for (auto& [id, fill] : fills_) {
        const bool reads_one = std::any_of(fill.tables.begin(), fill.tables.end(), [&](RelationOid oid) {
            return std::find(tables.begin(), tables.end(), oid) != tables.end();
        });
        if (reads_one)
            fill.spoiled = true;
    }
}

bool hit_is_fresh(std::uint64_t decoded_lsn, std::span<const std::uint64_t> replica_replay_lsns,
                  std::uint64_t session_write_lsn) noexcept
{
    if (decoded_lsn < session_write_lsn)
        return false;
    return std::all_of(replica_replay_lsns.begin(), replica_replay_lsns.end(),
                       [&](std::uint64_t replayed) { return decoded_lsn >= replayed; });
}

}  // namespace pgswitch::routing
