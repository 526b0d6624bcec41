#include "routing/result_cache.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace pgswitch::routing;
using namespace std::chrono_literals;

namespace {

const auto t0 = std::chrono::steady_clock::time_point{} + 1h;
/// A snapshot floor past every commit these tests make: the LSN rule does not apply.
constexpr std::uint64_t no_commit_missed = ~std::uint64_t{0};

// Fills `key` with `reply` (reading `tables`) as one miss would; true when stored.
bool fill(ResultCache& cache, const std::string& key, const std::string& reply, std::vector<RelationOid> tables,
          std::chrono::steady_clock::time_point now = t0)
{
    const auto id = cache.begin_fill(key, std::move(tables), no_commit_missed);
    REQUIRE(id.has_value());
    return cache.finish_fill(*id, reply, now);
}

// A fill of `key` served from a server whose snapshot includes `floor`; true when stored.
bool fill_from(ResultCache& cache, const std::string& key, std::vector<RelationOid> tables, std::uint64_t floor)
{
    const auto id = cache.begin_fill(key, std::move(tables), floor);
    REQUIRE(id.has_value());
    return cache.finish_fill(*id, "rows", t0);
}

std::string reply_of(ResultCache& cache, const std::string& key, std::chrono::steady_clock::time_point now = t0)
{
    const auto hit = cache.find(key, now);
    return hit ? *hit->bytes : std::string("<miss>");
}

}  // namespace

TEST_CASE("result cache: a stored reply is found by its key until its TTL passes")
{
    ResultCache cache({.max_bytes = 1 << 20, .max_entry_bytes = 64 << 10, .ttl = 1000ms});
    CHECK(reply_of(cache, "k1") == "<miss>");
    CHECK(fill(cache, "k1", "rows-1", {16384}));
    CHECK(reply_of(cache, "k1") == "rows-1");
    CHECK(reply_of(cache, "k2") == "<miss>");
    CHECK(reply_of(cache, "k1", t0 + 999ms) == "rows-1");
    CHECK(reply_of(cache, "k1", t0 + 1000ms) == "<miss>");
    CHECK(reply_of(cache, "k1", t0) == "<miss>");  // gone, not just hidden

    const auto s = cache.stats();
    CHECK(s.hits == 2);
    CHECK(s.misses == 4);
    CHECK(s.entries == 0);
    CHECK(s.bytes == 0);
    CHECK(s.drops[static_cast<int>(CacheDrop::expired)] == 1);
}

TEST_CASE("result cache: a hint's TTL overrides the configured one")
{
    ResultCache cache({.ttl = 60'000ms});
    const auto id = cache.begin_fill("k", {1}, no_commit_missed, 5000ms);
    REQUIRE(id);
    REQUIRE(cache.finish_fill(*id, "r", t0));
    CHECK(reply_of(cache, "k", t0 + 4999ms) == "r");
    CHECK(reply_of(cache, "k", t0 + 5000ms) == "<miss>");
}

TEST_CASE("result cache: memory stays under max_bytes by dropping the least recently used")
{
    // Entries cost their key and reply plus a fixed overhead: measure one.
    ResultCache probe({.max_bytes = 1 << 20});
    REQUIRE(fill(probe, "k0", std::string(1000, 'x'), {1}));
    const auto one = probe.stats().bytes;
    REQUIRE(one >= 1002);

    ResultCache cache({.max_bytes = 3 * one, .max_entry_bytes = one});
    REQUIRE(fill(cache, "k1", std::string(1000, '1'), {1}));
    REQUIRE(fill(cache, "k2", std::string(1000, '2'), {1}));
    REQUIRE(fill(cache, "k3", std::string(1000, '3'), {1}));
    CHECK(reply_of(cache, "k1") != "<miss>");  // k1 is now the most recently used
    REQUIRE(fill(cache, "k4", std::string(1000, '4'), {1}));
    CHECK(cache.stats().entries == 3);
    CHECK(cache.stats().bytes <= 3 * one);
    CHECK(reply_of(cache, "k2") == "<miss>");  // the least recently used went
    CHECK(reply_of(cache, "k1") != "<miss>");
    CHECK(reply_of(cache, "k3") != "<miss>");
    CHECK(reply_of(cache, "k4") != "<miss>");
    CHECK(cache.stats().drops[static_cast<int>(CacheDrop::evicted)] == 1);

    // A reply over max_entry_bytes is not kept, and evicts nothing.
    CHECK_FALSE(fill(cache, "big", std::string(1001, 'b'), {1}));
    CHECK(cache.stats().entries == 3);
    CHECK(cache.stats().fills_discarded == 1);
}

TEST_CASE("result cache: a change to a table drops exactly the entries that read it")
{
    ResultCache cache;
    REQUIRE(fill(cache, "a", "ra", {100}));
    REQUIRE(fill(cache, "b", "rb", {200}));
    REQUIRE(fill(cache, "ab", "rab", {100, 200}));
    REQUIRE(fill(cache, "c", "rc", {300}));

    const RelationOid changed[] = {200};
    cache.invalidate(changed, CacheDrop::write, 0x100);
    CHECK(reply_of(cache, "a") == "ra");
    CHECK(reply_of(cache, "b") == "<miss>");
    CHECK(reply_of(cache, "ab") == "<miss>");
    CHECK(reply_of(cache, "c") == "rc");
    CHECK(cache.stats().drops[static_cast<int>(CacheDrop::write)] == 2);

    const RelationOid truncated[] = {100, 300, 999};
    cache.invalidate(truncated, CacheDrop::truncate, 0x100);
    CHECK(cache.stats().entries == 0);
    CHECK(cache.stats().bytes == 0);
    CHECK(cache.stats().drops[static_cast<int>(CacheDrop::truncate)] == 2);
}

TEST_CASE("result cache: a reply collected while its table changed is not kept")
{
    ResultCache cache;
    const auto id = cache.begin_fill("k", {100, 200}, no_commit_missed);
    REQUIRE(id);
    const RelationOid other[] = {300};
    cache.invalidate(other, CacheDrop::write, 0x100);  // unrelated: the fill survives
    const RelationOid mine[] = {200};
    cache.invalidate(mine, CacheDrop::write, 0x100);  // the reply may predate this commit
    CHECK_FALSE(cache.finish_fill(*id, "old rows", t0));
    CHECK(reply_of(cache, "k") == "<miss>");
    CHECK(cache.stats().fills_discarded == 1);

    // The next fill, begun after the change, is kept.
    CHECK(fill(cache, "k", "new rows", {100, 200}));
    CHECK(reply_of(cache, "k") == "new rows");

    // A flush spoils fills under way too.
    const auto during = cache.begin_fill("j", {400}, no_commit_missed);
    REQUIRE(during);
    cache.flush();
    CHECK_FALSE(cache.finish_fill(*during, "rows", t0));
    CHECK(cache.stats().entries == 0);
    CHECK(cache.stats().drops[static_cast<int>(CacheDrop::flush)] == 1);
}

TEST_CASE("result cache: a reply from a server that had not yet shown an applied commit is not kept")
{
    ResultCache cache;
    const RelationOid accounts[] = {100};
    cache.invalidate(accounts, CacheDrop::write, 0x500);  // decoded: a commit ending at 0/500

    // A replica last seen at 0/400 may serve the old rows; nothing would drop them later.
    auto lagging = cache.begin_fill("k", {100, 200}, 0x400);
    REQUIRE(lagging);
    CHECK_FALSE(cache.finish_fill(*lagging, "old rows", t0));
    CHECK(reply_of(cache, "k") == "<miss>");
    CHECK(cache.stats().fills_discarded == 1);

    // Other tables are not held back by that commit.
    CHECK(fill_from(cache, "j", {200}, 0x400));
    // A server known to have replayed 0/500 shows the commit: its reply is kept.
    CHECK(fill_from(cache, "k", {100, 200}, 0x500));
    CHECK(reply_of(cache, "k") == "rows");

    // The newest commit per table counts, an older one does not lower it.
    cache.invalidate(accounts, CacheDrop::write, 0x900);
    cache.invalidate(accounts, CacheDrop::write, 0x700);
    CHECK_FALSE(fill_from(cache, "k", {100}, 0x800));
    CHECK(fill_from(cache, "k", {100}, 0x900));
}

TEST_CASE("result cache: concurrent misses of one key fill it once")
{
    ResultCache cache;
    const auto first = cache.begin_fill("k", {1}, no_commit_missed);
    REQUIRE(first);
    CHECK(cache.filling("k"));
    CHECK_FALSE(cache.begin_fill("k", {1}, no_commit_missed).has_value());  // the second miss waits or bypasses
    CHECK(cache.begin_fill("other", {1}, no_commit_missed).has_value());
    CHECK(cache.stats().filling == 2);

    // An abandoned fill (the statement failed) lets the next miss fill.
    cache.abandon_fill(*first);
    CHECK_FALSE(cache.filling("k"));
    CHECK(reply_of(cache, "k") == "<miss>");
    CHECK(fill(cache, "k", "rows", {1}));
    CHECK(reply_of(cache, "k") == "rows");
    CHECK_FALSE(cache.finish_fill(*first, "late", t0));  // unknown by now: ignored
    CHECK(reply_of(cache, "k") == "rows");
}

TEST_CASE("result cache: a newer fill of a key replaces the older entry without double counting")
{
    ResultCache cache;
    REQUIRE(fill(cache, "k", "v1", {1}));
    const auto bytes = cache.stats().bytes;
    REQUIRE(fill(cache, "k", "v2", {1}));
    CHECK(reply_of(cache, "k") == "v2");
    CHECK(cache.stats().entries == 1);
    CHECK(cache.stats().bytes == bytes);
    const RelationOid t[] = {1};
    cache.invalidate(t, CacheDrop::write, 0x100);
    CHECK(cache.stats().entries == 0);
    CHECK(cache.stats().bytes == 0);
}

TEST_CASE("result cache: a hit survives its eviction while it is being sent")
{
    ResultCache probe;
    REQUIRE(fill(probe, "k", "rows", {1}));
    const auto one = probe.stats().bytes;

    ResultCache cache({.max_bytes = one, .max_entry_bytes = one});
    REQUIRE(fill(cache, "k", "rows", {1}));
    const auto hit = cache.find("k", t0);
    REQUIRE(hit);
    REQUIRE(fill(cache, "j", "rows", {2}));  // evicts k
    CHECK(reply_of(cache, "k") == "<miss>");
    CHECK(*hit->bytes == "rows");
}

TEST_CASE("result cache: a hit is fresh only when decoding has passed every replica and the session's write")
{
    const std::uint64_t replicas[] = {1000, 1200};
    CHECK(hit_is_fresh(1200, replicas, 0));
    CHECK(hit_is_fresh(1500, replicas, 1500));
    CHECK_FALSE(hit_is_fresh(1100, replicas, 0));     // replica2 shows commits not yet decoded
    CHECK_FALSE(hit_is_fresh(1300, replicas, 1400));  // the session's own write is not decoded yet
    CHECK(hit_is_fresh(0, {}, 0));
}
