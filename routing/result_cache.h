// The result cache's store (SPEC §7): complete replies of eligible reads by key, bounded in
// bytes with least-recently-used eviction, expiring after a TTL, dropped by the tables they
// read. Pure: times are passed in, nothing here does I/O. Which reads are eligible and what
// the key holds are decided elsewhere (cache_key(), the session); this type only keeps what
// it is given and forgets it exactly when told.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace pgswitch::routing {

using RelationOid = std::uint32_t;

/// Why entries left the cache (GET /cache "invalidations by reason").
enum class CacheDrop {
    write,     ///< a change to a table it read (WAL decoding or a write through pgswitch)
    truncate,  ///< TRUNCATE of a table it read
    ddl,       ///< DDL on a table it read
    flush,     ///< everything: failover, decoding broke, DELETE /cache
    expired,   ///< its TTL passed
    evicted,   ///< least recently used when memory ran out
};
inline constexpr std::size_t cache_drop_kinds = 6;
[[nodiscard]] std::string_view to_string(CacheDrop d) noexcept;

struct ResultCacheLimits {
    std::size_t max_bytes = 64u << 20;       ///< cache.max_memory_mb
    std::size_t max_entry_bytes = 1u << 20;  ///< cache.max_entry_kb
    std::chrono::milliseconds ttl{60'000};   ///< cache.ttl_ms (a hint may ask for less or more)
};

struct ResultCacheStats {
    std::uint64_t hits = 0;
    std::uint64_t misses = 0;
    std::uint64_t fills = 0;            ///< entries stored
    std::uint64_t fills_discarded = 0;  ///< replies not kept: too large, or a table changed meanwhile
    std::uint64_t drops[cache_drop_kinds] = {};
    std::size_t entries = 0;
    std::size_t bytes = 0;
    std::size_t filling = 0;  ///< replies being collected now
};

/// One reply kept: the bytes a server sent for the request, from the first reply message up
/// to (not including) ReadyForQuery, shared so that a hit can be sent after eviction.
struct CachedReply {
    std::shared_ptr<const std::string> bytes;
    std::chrono::steady_clock::time_point filled_at;
};

/// Not thread-safe: one per worker, or lock around it.
class ResultCache {
public:
    using time_point = std::chrono::steady_clock::time_point;
    using FillId = std::uint64_t;

    explicit ResultCache(ResultCacheLimits limits = {});
    ResultCache(const ResultCache&) = delete;
    ResultCache& operator=(const ResultCache&) = delete;

    /// The reply stored under `key` and not expired at `now` (then the most recently used),
    /// or nullopt. Counts a hit or a miss; an expired entry is dropped.
    [[nodiscard]] std::optional<CachedReply> find(std::string_view key, time_point now);

    /// A miss that will run the statement: starts collecting its reply. Nullopt when another
    /// fill of the same key is under way (concurrent misses run the statement once: wait for
    /// that one with `filling()`, or run without filling). `tables` are the relations the
    /// statement reads; `ttl` overrides the limit's (a hint).
    ///
    /// `snapshot_floor`: an LSN the reply's snapshot is known to include (the serving
    /// replica's last known replay position; for the primary, the decoded position). When a
    /// table it reads was changed by a commit after that LSN and the change was applied
    /// already, the reply may predate it and would never be dropped: it is not kept.
    [[nodiscard]] std::optional<FillId> begin_fill(std::string key, std::vector<RelationOid> tables,
                                                   std::uint64_t snapshot_floor,
                                                   std::optional<std::chrono::milliseconds> ttl = {});
    /// Whether a fill of `key` is under way.
    [[nodiscard]] bool filling(std::string_view key) const;
    /// The reply is complete: stores it, unless a table it read changed since begin_fill()
    /// (its reply may predate the change), it exceeds max_entry_bytes, or the fill was
    /// abandoned. True when stored.
    bool finish_fill(FillId id, std::string reply, time_point now);
    /// The statement failed or the session ended: nothing is stored.
    void abandon_fill(FillId id);

    /// A commit ending at `commit_lsn` changed `tables`: drops every entry that read one,
    /// spoils fills under way that read one, and remembers the LSN for later fills whose
    /// snapshot may not include it (begin_fill's `snapshot_floor`).
    void invalidate(std::span<const RelationOid> tables, CacheDrop why, std::uint64_t commit_lsn);
    /// Drops everything and spoils every fill under way.
    void flush(CacheDrop why = CacheDrop::flush);

    [[nodiscard]] ResultCacheStats stats() const;
    [[nodiscard]] const ResultCacheLimits& limits() const noexcept { return limits_; }

private:
    struct Entry {
        std::string key;
        std::shared_ptr<const std::string> reply;
        std::vector<RelationOid> tables;
        time_point filled_at;
        time_point expires_at;
        std::size_t bytes = 0;
    };
    struct Fill {
        std::string key;
        std::vector<RelationOid> tables;
        std::optional<std::chrono::milliseconds> ttl;
        bool spoiled = false;
    };
    using Lru = std::list<Entry>;  // front = most recently used

    /// Removes one entry; `why` is counted (none when a newer reply replaces it).
    void erase(Lru::iterator it, std::optional<CacheDrop> why);
    void make_room(std::size_t bytes);
    void spoil_fills(std::span<const RelationOid> tables);
    [[nodiscard]] bool changed_after(std::span<const RelationOid> tables, std::uint64_t lsn) const;

    ResultCacheLimits limits_;
    Lru lru_;
    std::unordered_map<std::string_view, Lru::iterator> by_key_;  // views into Entry::key
    std::unordered_map<RelationOid, std::unordered_set<const Entry*>> by_table_;
    std::unordered_map<FillId, Fill> fills_;
    std::unordered_set<std::string> filling_keys_;
    /// The end LSN of the newest applied commit that changed each table (one per table
    /// ever changed: bounded by the database's tables).
    std::unordered_map<RelationOid, std::uint64_t> changed_at_;
    FillId next_fill_ = 1;
    std::size_t bytes_ = 0;
    ResultCacheStats counters_;
};

/// Whether a hit may be served (SPEC §7): the decoding of the primary's commits has reached
/// every replica that could have served the read (else a commit the replica already shows may
/// not have invalidated the entry yet) and the session's own last write.
[[nodiscard]] bool hit_is_fresh(std::uint64_t decoded_lsn, std::span<const std::uint64_t> replica_replay_lsns,
                                std::uint64_t session_write_lsn) noexcept;

}  // namespace pgswitch::routing
