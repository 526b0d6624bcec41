// StatementCache: LRU order, capacity, counters, generations, and classify_cached().
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "routing/statement_cache.h"

using namespace pgswitch::routing;

namespace {

std::shared_ptr<const Classification> value(bool write)
{
    auto c = std::make_shared<Classification>();
    c->write = write;
    return c;
}

}  // namespace

TEST_CASE("StatementCache: hit and miss counts")
{
    StatementCache cache(4);
    CHECK(cache.find("SELECT 1", 0) == nullptr);
    CHECK(cache.misses() == 1);
    cache.insert("SELECT 1", 0, value(false));
    const auto hit = cache.find("SELECT 1", 0);
    REQUIRE(hit);
    CHECK_FALSE(hit->write);
    CHECK(cache.hits() == 1);
    CHECK(cache.misses() == 1);
    CHECK(cache.size() == 1);
    // Keys are exact texts: case and spacing matter.
    CHECK(cache.find("select 1", 0) == nullptr);
    CHECK(cache.find("SELECT 1 ", 0) == nullptr);
    CHECK(cache.misses() == 3);
}

TEST_CASE("StatementCache: evicts the least recently used entry at capacity")
{
    StatementCache cache(3);
    cache.insert("a", 0, value(false));
    cache.insert("b", 0, value(false));
    cache.insert("c", 0, value(false));
    CHECK(cache.size() == 3);

    SUBCASE("insertion order without lookups")
    {
        cache.insert("d", 0, value(false));
        CHECK(cache.size() == 3);
        CHECK(cache.evictions() == 1);
        CHECK(cache.find("a", 0) == nullptr);
        CHECK(cache.find("b", 0) != nullptr);
        CHECK(cache.find("c", 0) != nullptr);
        CHECK(cache.find("d", 0) != nullptr);
    }
    SUBCASE("a lookup makes an entry recent")
    {
        CHECK(cache.find("a", 0) != nullptr);
        cache.insert("d", 0, value(false));  // evicts b, now the oldest
        CHECK(cache.find("b", 0) == nullptr);
        CHECK(cache.find("a", 0) != nullptr);
        cache.insert("e", 0, value(false));  // c is now the oldest
        CHECK(cache.find("c", 0) == nullptr);
        CHECK(cache.find("d", 0) != nullptr);
        CHECK(cache.find("e", 0) != nullptr);
        CHECK(cache.evictions() == 2);
    }
    SUBCASE("re-inserting replaces the value and refreshes the entry")
    {
        cache.insert("a", 0, value(true));
        CHECK(cache.size() == 3);
        cache.insert("d", 0, value(false));  // evicts b
        const auto a = cache.find("a", 0);
        REQUIRE(a);
        CHECK(a->write);
        CHECK(cache.find("b", 0) == nullptr);
    }
}

TEST_CASE("StatementCache: long chains of evictions keep the index consistent")
{
    StatementCache cache(100);
    for (int i = 0; i < 1000; ++i)
        cache.insert("SELECT " + std::to_string(i), 0, value(i % 2 == 0));
    CHECK(cache.size() == 100);
    CHECK(cache.evictions() == 900);
    CHECK(cache.find("SELECT 899", 0) == nullptr);
    for (int i = 900; i < 1000; ++i)
        CHECK(cache.find("SELECT " + std::to_string(i), 0) != nullptr);
}

TEST_CASE("StatementCache: another catalog generation is a miss")
{
    StatementCache cache(4);
    cache.insert("SELECT f()", 1, value(false));
    CHECK(cache.find("SELECT f()", 1) != nullptr);
    CHECK(cache.find("SELECT f()", 2) == nullptr);
    cache.insert("SELECT f()", 2, value(true));
    CHECK(cache.size() == 1);
    CHECK(cache.find("SELECT f()", 1) == nullptr);
    CHECK(cache.find("SELECT f()", 2)->write);
}

TEST_CASE("StatementCache: limits")
{
    SUBCASE("capacity 0 stores nothing")
    {
        StatementCache cache(0);
        cache.insert("SELECT 1", 0, value(false));
        CHECK(cache.size() == 0);
        CHECK(cache.find("SELECT 1", 0) == nullptr);
    }
    SUBCASE("texts over the byte limit are not stored")
    {
        StatementCache cache(4, 10);
        cache.insert("SELECT 123456", 0, value(false));
        cache.insert("SELECT 1", 0, value(false));
        CHECK(cache.size() == 1);
        CHECK(cache.find("SELECT 1", 0) != nullptr);
    }
    SUBCASE("clear empties but keeps counters")
    {
        StatementCache cache(4);
        cache.insert("SELECT 1", 0, value(false));
        CHECK(cache.find("SELECT 1", 0) != nullptr);
        cache.clear();
        CHECK(cache.size() == 0);
        CHECK(cache.find("SELECT 1", 0) == nullptr);
        CHECK(cache.hits() == 1);
        CHECK(cache.capacity() == 4);
    }
    SUBCASE("an evicted value stays valid for its holder")
    {
        StatementCache cache(1);
        cache.insert("a", 0, value(true));
        const auto held = cache.find("a", 0);
        cache.insert("b", 0, value(false));
        REQUIRE(held);
        CHECK(held->write);
    }
}

TEST_CASE("classify_cached: parses once per text and catalog generation")
{
    StatementCache cache(16);
    FunctionCatalog v1(1);
    const auto first = classify_cached(cache, "SELECT audit(1)", &v1);
    CHECK_FALSE(first->write);
    CHECK(cache.misses() == 1);
    const auto second = classify_cached(cache, "SELECT audit(1)", &v1);
    CHECK(second == first);  // the same shared object: no second parse
    CHECK(cache.hits() == 1);

    // The catalog refresh finds audit() VOLATILE: the cached read must not survive it.
    FunctionCatalog v2(2);
    v2.add_volatile("public", "audit");
    const auto third = classify_cached(cache, "SELECT audit(1)", &v2);
    CHECK(third->write);
    CHECK(cache.misses() == 2);
    CHECK(cache.size() == 2);  // the exact text and its literal-free key

    // Another literal value: the same entry, no parse.
    CHECK(classify_cached(cache, "SELECT audit(42)", &v2) == third);
    CHECK(cache.misses() == 2);

    // No catalog is generation 0, distinct from any real catalog.
    CHECK_FALSE(classify_cached(cache, "SELECT audit(1)", nullptr)->write);
    CHECK(cache.misses() == 3);
}

TEST_CASE("classify_cached: literal-free sharing only where values cannot matter")
{
    StatementCache cache(16);
    (void)classify_cached(cache, "SELECT * FROM t WHERE id = 1 AND name = 'x'", nullptr);
    (void)classify_cached(cache, "SELECT * FROM t WHERE id = 22 AND name = 'it''s'", nullptr);
    CHECK(cache.misses() == 1);
    CHECK(cache.hits() == 1);
    // SET keeps its own entry per value: its text is replayed on other servers.
    const auto a = classify_cached(cache, "SET work_mem = '1MB'", nullptr);
    const auto b = classify_cached(cache, "SET work_mem = '2MB'", nullptr);
    CHECK(a != b);
    CHECK(b->statements.front().set_value == "2MB");
    // A hint comment is part of the key.
    const auto hinted = classify_cached(cache, "/* pgswitch:primary */ SELECT * FROM t WHERE id = 3 AND name = 'y'",
                                        nullptr);
    CHECK(hinted->hint == Hint::primary);
}
