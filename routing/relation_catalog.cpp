#include "relation_catalog.h"

#include <algorithm>
#include <cctype>

namespace pgswitch::routing {

namespace {

std::string qualified_key(std::string_view schema, std::string_view name)
{
    std::string key;
    key.reserve(schema.size() + 1 + name.size());
    key.append(schema).push_back('\0');
    key.append(name);
    return key;
}

std::string_view trim(std::string_view s) noexcept
{
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
        s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
        s.remove_suffix(1);
    return s;
}

/// One element of a search_path list: "quoted" keeps its case ("" is a quote), the rest is
/// lower-cased, as the server's SplitIdentifierString does. `quoted` says which it was.
std::string path_element(std::string_view raw, bool& quoted)
{
    raw = trim(raw);
    quoted = raw.size() >= 2 && raw.front() == '"' && raw.back() == '"';
    std::string out;
    if (quoted) {
        raw = raw.substr(1, raw.size() - 2);
        for (std::size_t i = 0; i < raw.size(); ++i) {
            out += raw[i];
            if (raw[i] == '"' && i + 1 < raw.size() && raw[i + 1] == '"')
                ++i;
        }
        return out;
    }
    for (const char c : raw)
        out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

/// Splits at commas outside double quotes.
std::vector<std::string_view> split_path(std::string_view text)
{
    std::vector<std::string_view> parts;
    bool in_quotes = false;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '"')
            in_quotes = !in_quotes;
        else if (text[i] == ',' && !in_quotes) {
            parts.push_back(text.substr(start, i - start));
            start = i + 1;
        }
    }
    parts.push_back(text.substr(start));
    return parts;
}

std::optional<RelationRefusal> refusal_of(const RelationRow& row) noexcept
{
    if (row.schema == "pg_catalog" || row.schema == "information_schema" || row.schema == "pg_toast")
        return RelationRefusal::system;
    switch (row.kind) {
    case RelationKind::view:
    case RelationKind::materialized_view:
        return RelationRefusal::view;
    case RelationKind::partitioned_table:
        return RelationRefusal::inheritance;
    case RelationKind::foreign_table:
        return RelationRefusal::foreign_table;
    case RelationKind::other:
        return RelationRefusal::unknown;
    case RelationKind::table:
        break;
    }
    if (row.persistence != 'p')
        return RelationRefusal::not_permanent;
    if (row.has_children)
        return RelationRefusal::inheritance;
    return std::nullopt;
}

const RelationRow* resolve(const RelationName& named, std::span<const std::string> path, const RelationCatalog& catalog)
{
    if (!named.schema.empty())
        return catalog.find(named.schema, named.name);
    for (const auto& schema : path)
        if (const auto* row = catalog.find(schema, named.name))
            return row;
    return nullptr;
}

}  // namespace

RelationKind relation_kind_from(char relkind) noexcept
{
    switch (relkind) {
    case 'r':
        return RelationKind::table;
    case 'p':
        return RelationKind::partitioned_table;
    case 'v':
        return RelationKind::view;
    case 'm':
        return RelationKind::materialized_view;
    case 'f':
        return RelationKind::foreign_table;
    default:
        return RelationKind::other;
    }
}

std::string_view relation_catalog_query() noexcept
{
    return "SELECT n.nspname, c.relname, c.relkind, c.relpersistence, c.relhassubclass "
           "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
           "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') "
           "AND (c.relpersistence <> 't' OR n.oid = pg_catalog.pg_my_temp_schema())";
}

std::optional<RelationRow> relation_row_from(std::span<const std::optional<std::string>> columns)
{
    if (columns.size() < 5)
        return std::nullopt;
    for (std::size_t i = 0; i < 5; ++i)
        if (!columns[i])
            return std::nullopt;
    if (columns[2]->size() != 1 || columns[3]->size() != 1)
        return std::nullopt;
    const auto& persistence = *columns[3];
    if (persistence != "p" && persistence != "u" && persistence != "t")
        return std::nullopt;
    return RelationRow{*columns[0], *columns[1], relation_kind_from(columns[2]->front()), persistence.front(),
                       *columns[4] == "t"};
}

RelationId RelationInterner::id_of(std::string_view schema, std::string_view name)
{
    const auto next = static_cast<RelationId>(ids_.size() + 1);
    return ids_.try_emplace(qualified_key(schema, name), next).first->second;
}

void RelationCatalog::add(RelationRow row)
{
    auto key = qualified_key(row.schema, row.name);
    rows_.insert_or_assign(std::move(key), std::move(row));
}

const RelationRow* RelationCatalog::find(std::string_view schema, std::string_view name) const
{
    const auto found = rows_.find(qualified_key(schema, name));
    return found == rows_.end() ? nullptr : &found->second;
}

std::vector<std::string> effective_search_path(std::string_view search_path, std::string_view user)
{
    std::vector<std::string> path;
    for (const auto raw : split_path(search_path)) {
        bool quoted = false;
        auto schema = path_element(raw, quoted);
        if (schema.empty() || schema == "pg_temp" || schema.starts_with("pg_temp_"))
            continue;
        if (schema == "$user")
            schema = std::string(user);
        if (std::find(path.begin(), path.end(), schema) == path.end())
            path.push_back(std::move(schema));
    }
    if (std::find(path.begin(), path.end(), "pg_catalog") == path.end())
        path.insert(path.begin(), "pg_catalog");
    return path;
}

std::string_view to_string(RelationRefusal r) noexcept
{
    switch (r) {
    case RelationRefusal::unknown:
        return "unknown relation";
    case RelationRefusal::system:
        return "system catalog";
    case RelationRefusal::view:
        return "view";
    case RelationRefusal::inheritance:
        return "partitioned or inherited table";
    case RelationRefusal::not_permanent:
        return "temporary or unlogged table";
    case RelationRefusal::foreign_table:
        return "foreign table";
    }
    return "unknown relation";
}

std::variant<std::vector<RelationId>, RelationRefused> resolve_cached_tables(std::span<const RelationName> named,
                                                                             std::span<const std::string> path,
                                                                             const RelationCatalog& catalog,
                                                                             RelationInterner& ids)
{
    std::vector<RelationId> tables;
    tables.reserve(named.size());
    for (const auto& n : named) {
        const auto* row = resolve(n, path, catalog);
        if (!row)
            return RelationRefused{RelationRefusal::unknown, n};
        if (const auto why = refusal_of(*row))
            return RelationRefused{*why, n};
        tables.push_back(ids.id_of(row->schema, row->name));
    }
    std::sort(tables.begin(), tables.end());
    tables.erase(std::unique(tables.begin(), tables.end()), tables.end());
    return tables;
}

}  // namespace pgswitch::routing
