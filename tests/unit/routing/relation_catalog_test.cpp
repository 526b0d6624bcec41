// Which relations back a cached reply: search_path as the server reads it, names resolved
// through it, and every kind of relation the WAL follower cannot vouch for refused.
#include "routing/relation_catalog.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "routing/classifier.h"

using namespace pgswitch::routing;

namespace {

RelationCatalog sample_catalog()
{
    RelationCatalog c;
    c.add({"public", "accounts"});
    c.add({"public", "orders"});
    c.add({"sales", "orders"});
    c.add({"Mixed Case", "T"});
    c.add({"alice", "notes"});
    c.add({"public", "v_orders", RelationKind::view});
    c.add({"public", "mv_totals", RelationKind::materialized_view});
    c.add({"public", "events", RelationKind::partitioned_table, 'p', true});
    c.add({"public", "events_2026", RelationKind::table});      // a leaf partition
    c.add({"public", "base", RelationKind::table, 'p', true});  // has inheritance children
    c.add({"public", "scratch", RelationKind::table, 'u'});
    c.add({"public", "remote", RelationKind::foreign_table});
    c.add({"pg_catalog", "pg_class"});
    c.add({"information_schema", "tables", RelationKind::view});
    return c;
}

std::vector<RelationName> names_in(const char* sql)
{
    auto c = classify(sql, nullptr);
    REQUIRE(c.statements.size() == 1);
    return c.statements[0].relations;
}

}  // namespace

TEST_CASE("effective_search_path: pg_catalog first, $user, quotes, pg_temp left out")
{
    using P = std::vector<std::string>;
    CHECK(effective_search_path("\"$user\", public", "alice") == P{"pg_catalog", "alice", "public"});
    CHECK(effective_search_path("$user,public", "alice") == P{"pg_catalog", "alice", "public"});
    CHECK(effective_search_path("Sales, \"Mixed Case\"", "u") == P{"pg_catalog", "sales", "Mixed Case"});
    CHECK(effective_search_path("public, pg_catalog", "u") == P{"public", "pg_catalog"});
    CHECK(effective_search_path("pg_temp, public", "u") == P{"pg_catalog", "public"});
    CHECK(effective_search_path("\"a,b\", \"q\"\"x\"", "u") == P{"pg_catalog", "a,b", "q\"x"});
    CHECK(effective_search_path("", "u") == P{"pg_catalog"});
    CHECK(effective_search_path("public, public", "u") == P{"pg_catalog", "public"});
}

TEST_CASE("resolve_cached_tables: names resolve through the path, the first schema that has them wins")
{
    const auto catalog = sample_catalog();
    RelationInterner ids;
    const auto path = effective_search_path("\"$user\", public", "alice");

    const auto r = resolve_cached_tables(names_in("SELECT * FROM orders o JOIN accounts a USING (id)"), path, catalog,
                                         ids);
    REQUIRE(std::holds_alternative<std::vector<RelationId>>(r));
    const auto public_orders = ids.id_of("public", "orders");
    const auto public_accounts = ids.id_of("public", "accounts");
    auto want = std::vector<RelationId>{public_orders, public_accounts};
    std::sort(want.begin(), want.end());
    CHECK(std::get<std::vector<RelationId>>(r) == want);

    // Schema-qualified, and the same table named twice.
    const auto s = resolve_cached_tables(names_in("SELECT * FROM sales.orders, sales.orders x"), path, catalog, ids);
    REQUIRE(std::holds_alternative<std::vector<RelationId>>(s));
    CHECK(std::get<std::vector<RelationId>>(s) == std::vector<RelationId>{ids.id_of("sales", "orders")});
    CHECK(ids.id_of("sales", "orders") != public_orders);

    // "$user" first: alice's own notes table.
    const auto n = resolve_cached_tables(names_in("SELECT * FROM notes"), path, catalog, ids);
    REQUIRE(std::holds_alternative<std::vector<RelationId>>(n));
    CHECK(std::get<std::vector<RelationId>>(n) == std::vector<RelationId>{ids.id_of("alice", "notes")});

    // A path with sales first sends unqualified orders there.
    const auto sales_path = effective_search_path("sales, public", "alice");
    const auto o = resolve_cached_tables(names_in("SELECT * FROM orders"), sales_path, catalog, ids);
    REQUIRE(std::holds_alternative<std::vector<RelationId>>(o));
    CHECK(std::get<std::vector<RelationId>>(o) == std::vector<RelationId>{ids.id_of("sales", "orders")});

    // Quoted identifiers keep their case.
    const auto q = resolve_cached_tables(names_in("SELECT * FROM \"Mixed Case\".\"T\""), path, catalog, ids);
    CHECK(std::holds_alternative<std::vector<RelationId>>(q));
    const auto folded = resolve_cached_tables(names_in("SELECT * FROM \"Mixed Case\".T"), path, catalog, ids);
    REQUIRE(std::holds_alternative<RelationRefused>(folded));
    CHECK(std::get<RelationRefused>(folded).why == RelationRefusal::unknown);
}

TEST_CASE("resolve_cached_tables: what the WAL cannot vouch for is refused, naming the relation")
{
    const auto catalog = sample_catalog();
    RelationInterner ids;
    const auto path = effective_search_path("public", "alice");
    const auto refused = [&](const char* sql) {
        const auto r = resolve_cached_tables(names_in(sql), path, catalog, ids);
        REQUIRE_MESSAGE(std::holds_alternative<RelationRefused>(r), sql);
        return std::get<RelationRefused>(r);
    };
    CHECK(refused("SELECT * FROM accounts, v_orders").why == RelationRefusal::view);
    CHECK(refused("SELECT * FROM accounts, v_orders").relation.name == "v_orders");
    CHECK(refused("SELECT * FROM mv_totals").why == RelationRefusal::view);
    CHECK(refused("SELECT * FROM events").why == RelationRefusal::inheritance);
    CHECK(refused("SELECT * FROM base").why == RelationRefusal::inheritance);
    CHECK(refused("SELECT * FROM scratch").why == RelationRefusal::not_permanent);
    CHECK(refused("SELECT * FROM remote").why == RelationRefusal::foreign_table);
    CHECK(refused("SELECT * FROM pg_class").why == RelationRefusal::system);  // pg_catalog comes first
    CHECK(refused("SELECT * FROM information_schema.tables").why == RelationRefusal::system);
    CHECK(refused("SELECT * FROM missing_table").why == RelationRefusal::unknown);
    CHECK(refused("WITH recent AS (SELECT 1) SELECT * FROM recent").why == RelationRefusal::unknown);
    CHECK(to_string(RelationRefusal::inheritance) == "partitioned or inherited table");

    // A leaf partition read directly is a plain table: its changes are reported under its name.
    CHECK(std::holds_alternative<std::vector<RelationId>>(
        resolve_cached_tables(names_in("SELECT * FROM events_2026"), path, catalog, ids)));
}

TEST_CASE("RelationInterner: one id per qualified name, kept across catalogs")
{
    RelationInterner ids;
    const auto a = ids.id_of("public", "t");
    CHECK(ids.id_of("public", "t") == a);
    CHECK(ids.id_of("other", "t") != a);
    CHECK(ids.id_of("public", "t2") != a);
    CHECK(ids.id_of("publ", "ic") != ids.id_of("pub", "lic"));  // the parts stay apart
    CHECK(ids.size() == 5);
}

TEST_CASE("relation_row_from: a pg_class row, or nothing when it is not one")
{
    using Cols = std::vector<std::optional<std::string>>;
    const Cols good{"public", "events", "p", "p", "t"};
    const auto row = relation_row_from(good);
    REQUIRE(row);
    CHECK(row->schema == "public");
    CHECK(row->name == "events");
    CHECK(row->kind == RelationKind::partitioned_table);
    CHECK(row->persistence == 'p');
    CHECK(row->has_children);
    const Cols unlogged{"s", "t", "r", "u", "f"};
    REQUIRE(relation_row_from(unlogged));
    CHECK(relation_row_from(unlogged)->persistence == 'u');
    CHECK_FALSE(relation_row_from(unlogged)->has_children);
    CHECK(relation_row_from(Cols{"s", "i", "S", "p", "f"})->kind == RelationKind::other);  // a sequence
    CHECK_FALSE(relation_row_from(Cols{"s", "t", "r", "p"}));
    CHECK_FALSE(relation_row_from(Cols{"s", std::nullopt, "r", "p", "f"}));
    CHECK_FALSE(relation_row_from(Cols{"s", "t", "rr", "p", "f"}));
    CHECK_FALSE(relation_row_from(Cols{"s", "t", "r", "x", "f"}));
    CHECK(relation_catalog_query().find("pg_my_temp_schema") != std::string_view::npos);
}
