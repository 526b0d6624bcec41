#include "routing/cache_eligibility.h"

#include <doctest/doctest.h>

#include <set>
#include <string>

#include "routing/classifier.h"
#include "routing/function_catalog.h"

using namespace pgswitch::routing;
using namespace std::chrono_literals;

namespace {

// A complete catalog: count/lower/abs are immutable, now/random/current_setting are not.
FunctionCatalog sample_catalog()
{
    FunctionCatalog catalog(7);
    for (const char* f : {"count", "lower", "abs", "now", "random", "current_setting", "clock_timestamp"})
        catalog.add_known("pg_catalog", f);
    catalog.add_known("public", "price_with_tax");
    catalog.add_known("public", "next_ticket");
    for (const char* f : {"now", "random", "current_setting", "clock_timestamp"})
        catalog.add_non_immutable("pg_catalog", f);
    catalog.add_non_immutable("public", "next_ticket");
    catalog.add_volatile("public", "next_ticket");
    catalog.add_unlogged("public", "scratch");
    return catalog;
}

CacheVerdict verdict(std::string_view sql, CacheSituation situation = {.statements = CacheStatements::all})
{
    static const FunctionCatalog catalog = sample_catalog();
    return decide_caching(classify(sql, &catalog), sql, situation).verdict;
}

}  // namespace

TEST_CASE("cache hints: /* pgswitch:cache */, with a TTL, and /* pgswitch:nocache */")
{
    CHECK(parse_cache_hint("/* pgswitch:cache */ SELECT 1").kind == CacheHint::Kind::cache);
    CHECK_FALSE(parse_cache_hint("/* pgswitch:cache */ SELECT 1").ttl.has_value());
    CHECK(parse_cache_hint("  /*pgswitch:CACHE*/SELECT 1").kind == CacheHint::Kind::cache);
    CHECK(parse_cache_hint("/* pgswitch:cache ttl=5s */ SELECT 1").ttl == 5000ms);
    CHECK(parse_cache_hint("/* pgswitch:cache ttl=250ms */ SELECT 1").ttl == 250ms);
    CHECK(parse_cache_hint("/* pgswitch:cache ttl=2m */ SELECT 1").ttl == 120'000ms);
    CHECK(parse_cache_hint("/* pgswitch:cache ttl=1h */ SELECT 1").ttl == 3'600'000ms);
    CHECK(parse_cache_hint("/* pgswitch:nocache */ SELECT 1").kind == CacheHint::Kind::nocache);
    // Not hints: malformed TTLs, other words, comments later in the text.
    CHECK(parse_cache_hint("/* pgswitch:cache ttl=0s */ SELECT 1").kind == CacheHint::Kind::none);
    CHECK(parse_cache_hint("/* pgswitch:cache ttl=5 parsecs */ SELECT 1").kind == CacheHint::Kind::none);
    CHECK(parse_cache_hint("/* pgswitch:cached */ SELECT 1").kind == CacheHint::Kind::none);
    CHECK(parse_cache_hint("/* pgswitch:nocache please */ SELECT 1").kind == CacheHint::Kind::none);
    CHECK(parse_cache_hint("SELECT 1 /* pgswitch:cache */").kind == CacheHint::Kind::none);
    CHECK(parse_cache_hint("/* pgswitch:cache").kind == CacheHint::Kind::none);
    CHECK(parse_cache_hint("").kind == CacheHint::Kind::none);
}

TEST_CASE("cache eligibility: plain reads of tables with immutable functions are cached")
{
    CHECK(verdict("SELECT * FROM accounts WHERE id = 1") == CacheVerdict::cache);
    CHECK(verdict("SELECT count(*), lower(name) FROM accounts a JOIN owners o ON o.id = a.owner") ==
          CacheVerdict::cache);
    CHECK(verdict("SELECT abs(balance) FROM accounts WHERE id = $1") == CacheVerdict::cache);
    CHECK(verdict("SELECT 1") == CacheVerdict::cache);
    CHECK(verdict("VALUES (1), (2)") == CacheVerdict::cache);
}

TEST_CASE("cache eligibility: what may change with no table changing is never cached")
{
    CHECK(verdict("SELECT now()") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT * FROM t WHERE created > now() - interval '1 day'") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT random()") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT current_setting('work_mem')") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT CURRENT_TIMESTAMP") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT current_user") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT 'now'::timestamptz") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT date 'today'") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT * FROM t TABLESAMPLE BERNOULLI (10)") == CacheVerdict::nondeterministic);
    CHECK(verdict("SELECT price_with_tax(1)") == CacheVerdict::cache);               // listed, immutable
    CHECK(verdict("SELECT mystery_function(1)") == CacheVerdict::nondeterministic);  // unknown
    CHECK(verdict("SELECT '2020-01-01'::date") == CacheVerdict::cache);
    // Without a catalog no function can be vouched for.
    const char* sql = "SELECT lower(name) FROM accounts";
    CHECK(decide_caching(classify(sql, nullptr), sql, {.statements = CacheStatements::all}).verdict ==
          CacheVerdict::nondeterministic);
}

TEST_CASE("cache eligibility: writes, non-SELECTs and session-bound reads are not cached")
{
    CHECK(verdict("SELECT next_ticket()") == CacheVerdict::not_a_read);  // a volatile function: a write
    CHECK(verdict("SELECT * FROM t FOR UPDATE") == CacheVerdict::not_a_read);
    CHECK(verdict("INSERT INTO t VALUES (1)") == CacheVerdict::not_a_read);
    CHECK(verdict("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d") == CacheVerdict::not_a_read);
    CHECK(verdict("SHOW work_mem") == CacheVerdict::not_a_read);
    CHECK(verdict("EXPLAIN SELECT 1") == CacheVerdict::not_a_read);
    CHECK(verdict("SELECT * INTO t2 FROM t") == CacheVerdict::not_a_read);
    CHECK(verdict("SELECT pg_backend_pid()") == CacheVerdict::session_identity);
    CHECK(verdict("SELECT * FROM scratch") == CacheVerdict::unlogged);
    CHECK(verdict("SELECT 1; SELECT 2") == CacheVerdict::several_statements);
    CHECK(verdict("SELEC 1") == CacheVerdict::parse_error);
    CHECK(verdict("") == CacheVerdict::not_a_read);
    CHECK(verdict("SELECT * FROM t", {.statements = CacheStatements::all, .in_read_write_transaction = true}) ==
          CacheVerdict::write_transaction);
    CHECK(verdict("SELECT * FROM t", {.statements = CacheStatements::all, .session_pinned = true}) ==
          CacheVerdict::pinned_session);
}

TEST_CASE("cache eligibility: statements = hinted caches only hinted reads; nocache always bypasses")
{
    const CacheSituation hinted{.statements = CacheStatements::hinted};
    CHECK(verdict("SELECT * FROM t", hinted) == CacheVerdict::not_hinted);
    CHECK(verdict("/* pgswitch:cache */ SELECT * FROM t", hinted) == CacheVerdict::cache);
    CHECK(verdict("/* pgswitch:cache */ SELECT now()", hinted) == CacheVerdict::nondeterministic);
    CHECK(verdict("/* pgswitch:cache */ UPDATE t SET a = 1", hinted) == CacheVerdict::not_a_read);
    CHECK(verdict("/* pgswitch:nocache */ SELECT * FROM t") == CacheVerdict::nocache_hint);
    const FunctionCatalog catalog = sample_catalog();
    const char* sql = "/* pgswitch:cache ttl=5s */ SELECT * FROM t";
    const auto d = decide_caching(classify(sql, &catalog), sql, hinted);
    CHECK(d.cache());
    CHECK(d.ttl == 5000ms);
}

TEST_CASE("classifier: the relations a read names, each once, as the parser spells them")
{
    const FunctionCatalog catalog = sample_catalog();
    const auto c = classify("SELECT * FROM a JOIN s.b ON true, \"Mixed\" WHERE x IN (SELECT y FROM a) "
                            "AND EXISTS (SELECT 1 FROM c)",
                            &catalog);
    REQUIRE(c.statements.size() == 1);
    const auto& rels = c.statements[0].relations;
    std::set<std::pair<std::string, std::string>> got;
    for (const auto& r : rels)
        got.insert({r.schema, r.name});
    CHECK(rels.size() == 4);
    CHECK(got == std::set<std::pair<std::string, std::string>>{{"", "a"}, {"s", "b"}, {"", "Mixed"}, {"", "c"}});
    // A CTE's name is listed too: the caller resolves names, and one that is no table is not cached.
    const auto cte = classify("WITH w AS (SELECT * FROM base) SELECT * FROM w", &catalog);
    CHECK(cte.statements[0].relations.size() == 2);
}

TEST_CASE("cache key: every part counts, and parts cannot run into each other")
{
    CacheKeyParts a{.user = "app", .database = "db", .text = "SELECT 1"};
    const auto base = cache_key(a);
    CHECK(cache_key(a) == base);

    auto other_user = a;
    other_user.user = "bob";
    auto other_db = a;
    other_db.database = "db2";
    auto shifted = a;  // "app"+"db" vs "ap"+"pdb"
    shifted.user = "ap";
    shifted.database = "pdb";
    auto other_zone = a;
    other_zone.settings[3] = "UTC";
    auto extended = a;
    extended.bind_arguments = std::string_view("\0\0\0\0\0\0", 6);
    auto extended_binary = a;
    extended_binary.bind_arguments = std::string_view("\0\0\0\0\0\1\0\1", 8);

    const std::set<std::string> keys{base,
                                     cache_key(other_user),
                                     cache_key(other_db),
                                     cache_key(shifted),
                                     cache_key(other_zone),
                                     cache_key(extended),
                                     cache_key(extended_binary)};
    CHECK(keys.size() == 7);
    CHECK(cache_key_settings[3] == "timezone");
}
