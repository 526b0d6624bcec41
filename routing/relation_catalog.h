// Which relations a cached reply depends on (SPEC §7): the primary's relations by schema and
// name (from pg_class), how a statement's relation names resolve through the session's
// search_path, and which of them the WAL follower can vouch for. Pure data and lookups: the
// proxy fills a catalog from its pg_class query.
//
// Identity is the schema-qualified name, interned to a number that stays the same for the
// life of the process (RelationId): test_decoding reports changes by schema and name, and
// a statement's relations resolve to schema and name, so both sides meet there even when
// the catalog is re-read (a table dropped and created again keeps its id).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "routing/classifier.h"

namespace pgswitch::routing {

/// pg_class.relkind, reduced to what caching needs to know.
enum class RelationKind { table, partitioned_table, view, materialized_view, foreign_table, other };

/// pg_class.relkind letter ('r', 'p', 'v', 'm', 'f'; the rest are other).
[[nodiscard]] RelationKind relation_kind_from(char relkind) noexcept;

struct RelationRow {
    std::string schema;
    std::string name;
    RelationKind kind = RelationKind::table;
    char persistence = 'p';     ///< relpersistence: 'p' permanent, 'u' unlogged, 't' temporary
    bool has_children = false;  ///< relhassubclass: inheritance children or partitions
};

/// The query that lists the relations of the connected database, one row per relation:
/// schema, name, relkind, relpersistence, relhassubclass ('t'/'f'). Temporary relations of
/// other sessions are left out.
[[nodiscard]] std::string_view relation_catalog_query() noexcept;
/// One row of that query; nullopt when it is not one (a column missing or NULL).
[[nodiscard]] std::optional<RelationRow> relation_row_from(std::span<const std::optional<std::string>> columns);

/// A number per schema-qualified name, the same for the life of the interner.
using RelationId = std::uint32_t;

/// Not thread-safe: one per worker, or lock around it.
class RelationInterner {
public:
    [[nodiscard]] RelationId id_of(std::string_view schema, std::string_view name);
    [[nodiscard]] std::size_t size() const noexcept { return ids_.size(); }

private:
    std::unordered_map<std::string, RelationId> ids_;
};

/// One database's relations. Filled once, then shared read-only.
class RelationCatalog {
public:
    void add(RelationRow row);
    /// nullptr when `schema.name` is not a relation of the catalog.
    [[nodiscard]] const RelationRow* find(std::string_view schema, std::string_view name) const;
    [[nodiscard]] std::size_t size() const noexcept { return rows_.size(); }

private:
    std::unordered_map<std::string, RelationRow> rows_;  // key: schema '\0' name
};

/// The schemas an unqualified name is looked up in, in order, as the server does: pg_catalog
/// first unless the path names it, "$user" as the session's user, pg_temp left out (a session
/// with temporary objects is not cached at all). `search_path` is the setting's text.
[[nodiscard]] std::vector<std::string> effective_search_path(std::string_view search_path, std::string_view user);

/// Why a statement's relations cannot back a cached reply.
enum class RelationRefusal {
    unknown,        ///< not in the catalog (created since it was read, or a CTE's name)
    system,         ///< pg_catalog or information_schema: catalog changes are not decoded
    view,           ///< a view or materialized view: what it reads is not tracked
    inheritance,    ///< a partitioned table or one with children: changes come per child
    not_permanent,  ///< temporary or unlogged
    foreign_table,  ///< its data lives elsewhere
};
[[nodiscard]] std::string_view to_string(RelationRefusal r) noexcept;

struct RelationRefused {
    RelationRefusal why = RelationRefusal::unknown;
    RelationName relation;  ///< the name as the statement wrote it
};

/// The tables a reply of a statement naming `named` depends on, sorted and unique, or the
/// first relation that keeps it out of the cache.
[[nodiscard]] std::variant<std::vector<RelationId>, RelationRefused>
resolve_cached_tables(std::span<const RelationName> named, std::span<const std::string> path,
                      const RelationCatalog& catalog, RelationInterner& ids);

}  // namespace pgswitch::routing
