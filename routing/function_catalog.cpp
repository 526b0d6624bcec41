// Built-in functions with side effects, and the per-database catalog of user functions.
#include "routing/function_catalog.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace pgswitch::routing {

namespace {

enum class Match { exact, prefix };

struct BuiltinFunction {
    std::string_view name;
    Match match;
    FunctionEffect effect;
};

constexpr FunctionEffect writes{.write = true, .pins_primary = false, .uses_currval = false};
constexpr FunctionEffect writes_pins{.write = true, .pins_primary = true, .uses_currval = false};
constexpr FunctionEffect reads_currval{.write = false, .pins_primary = false, .uses_currval = true};

// First match wins, so the session-level advisory locks (which pin the session to the
// primary) come before the pg_advisory_ / pg_try_advisory_ prefixes that catch the
// transaction-level locks and the unlocks (writes, but nothing outlives the transaction,
// and an unlock must reach the server that holds the lock, i.e. the primary).
constexpr std::array builtin_functions{
    BuiltinFunction{"pg_advisory_lock", Match::exact, writes_pins},
    BuiltinFunction{"pg_advisory_lock_shared", Match::exact, writes_pins},
    BuiltinFunction{"pg_try_advisory_lock", Match::exact, writes_pins},
    BuiltinFunction{"pg_try_advisory_lock_shared", Match::exact, writes_pins},
    BuiltinFunction{"pg_advisory_", Match::prefix, writes},
    BuiltinFunction{"pg_try_advisory_", Match::prefix, writes},
    // Sequences: nextval/setval change state; currval/lastval read the session's last
    // nextval, which only the server that ran it knows (the router follows the session).
    BuiltinFunction{"nextval", Match::exact, writes},
    BuiltinFunction{"setval", Match::exact, writes},
    BuiltinFunction{"currval", Match::exact, reads_currval},
    BuiltinFunction{"lastval", Match::exact, reads_currval},
    BuiltinFunction{"setseed", Match::exact, writes},  // session random() state
    BuiltinFunction{"pg_notify", Match::exact, writes},
    // Assigning a transaction id fails on a hot standby.
    BuiltinFunction{"txid_current", Match::exact, writes},
    BuiltinFunction{"pg_current_xact_id", Match::exact, writes},
    // "recovery is in progress" on a standby: these only answer on the primary.
    BuiltinFunction{"pg_current_wal_", Match::prefix, writes},
    // Large objects: lo_create, lo_import, lo_unlink, lo_open, lo_put, lo_from_bytea,
    // lo_truncate... (lo_get is a read, but rare enough not to special-case).
    BuiltinFunction{"lo_", Match::prefix, writes},
    BuiltinFunction{"lowrite", Match::exact, writes},
    BuiltinFunction{"loread", Match::exact, writes},  // needs a descriptor from lo_open
    // Server administration.
    BuiltinFunction{"pg_terminate_backend", Match::exact, writes},
    BuiltinFunction{"pg_cancel_backend", Match::exact, writes},
    BuiltinFunction{"pg_reload_conf", Match::exact, writes},
    BuiltinFunction{"pg_rotate_logfile", Match::exact, writes},
    BuiltinFunction{"pg_switch_wal", Match::exact, writes},
    BuiltinFunction{"pg_create_restore_point", Match::exact, writes},
    BuiltinFunction{"pg_promote", Match::exact, writes},
    BuiltinFunction{"pg_start_backup", Match::exact, writes},
    BuiltinFunction{"pg_stop_backup", Match::exact, writes},
    BuiltinFunction{"pg_backup_start", Match::exact, writes},
    BuiltinFunction{"pg_backup_stop", Match::exact, writes},
    BuiltinFunction{"pg_import_system_collations", Match::exact, writes},
    BuiltinFunction{"pg_stat_reset", Match::prefix, writes},
    // Replication slots and origins live on the primary.
    BuiltinFunction{"pg_create_physical_replication_slot", Match::exact, writes},
    BuiltinFunction{"pg_create_logical_replication_slot", Match::exact, writes},
    BuiltinFunction{"pg_copy_physical_replication_slot", Match::exact, writes},
    BuiltinFunction{"pg_copy_logical_replication_slot", Match::exact, writes},
    BuiltinFunction{"pg_drop_replication_slot", Match::exact, writes},
    BuiltinFunction{"pg_replication_slot_advance", Match::exact, writes},
    BuiltinFunction{"pg_logical_slot_", Match::prefix, writes},
    BuiltinFunction{"pg_replication_origin_", Match::prefix, writes},
    BuiltinFunction{"pg_logical_emit_message", Match::exact, writes},
    // Extensions whose functions write: dblink, adminpack.
    BuiltinFunction{"dblink_exec", Match::exact, writes},
    BuiltinFunction{"pg_file_write", Match::exact, writes},
    BuiltinFunction{"pg_file_rename", Match::exact, writes},
    BuiltinFunction{"pg_file_unlink", Match::exact, writes},
};

std::string to_lower(std::string_view s)
{
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

}  // namespace

FunctionEffect builtin_function_effect(std::string_view name) noexcept
{
    for (const auto& f : builtin_functions) {
        const bool hit = f.match == Match::exact ? name == f.name : name.starts_with(f.name);
        if (hit)
            return f.effect;
    }
    return {};
}

void FunctionCatalog::NameIndex::add(std::string_view entry)
{
    std::string lower = to_lower(entry);
    const auto dot = lower.rfind('.');
    if (dot == std::string::npos) {
        bare.insert(lower);
        any_schema.insert(std::move(lower));
        return;
    }
    bare.insert(lower.substr(dot + 1));
    qualified.insert(std::move(lower));
}

bool FunctionCatalog::NameIndex::matches(std::string_view schema, std::string_view name) const
{
    if (schema.empty())
        return bare.contains(name);
    if (any_schema.contains(name))
        return true;
    std::string key;
    key.reserve(schema.size() + 1 + name.size());
    key.append(schema).append(1, '.').append(name);
    return qualified.contains(key);
}

void FunctionCatalog::add_volatile(std::string_view schema, std::string_view name)
{
    std::string entry;
    entry.reserve(schema.size() + 1 + name.size());
    entry.append(schema).append(1, '.').append(name);
    volatile_.add(entry);
    ++volatile_count_;
}

void FunctionCatalog::add_known(std::string_view schema, std::string_view name)
{
    std::string entry;
    entry.reserve(schema.size() + 1 + name.size());
    entry.append(schema).append(1, '.').append(name);
    known_.add(entry);
    ++known_count_;
}

void FunctionCatalog::add_non_immutable(std::string_view schema, std::string_view name)
{
    std::string entry;
    entry.reserve(schema.size() + 1 + name.size());
    entry.append(schema).append(1, '.').append(name);
    non_immutable_.add(entry);
}

bool FunctionCatalog::immutable(std::string_view schema, std::string_view name) const
{
    // A bare call resolves through search_path: NameIndex::matches() answers for
    // every schema's function of that name, so one volatile overload anywhere counts.
    return complete() && known_.matches(schema, name) && !non_immutable_.matches(schema, name);
}

void FunctionCatalog::add_missing(std::string_view name)
{
    known_.add(name);
}

void FunctionCatalog::add_unlogged(std::string_view schema, std::string_view name)
{
    std::string entry;
    entry.reserve(schema.size() + 1 + name.size());
    entry.append(schema).append(1, '.').append(name);
    unlogged_.add(entry);
    any_unlogged_ = true;
}

bool FunctionCatalog::unlogged(std::string_view schema, std::string_view name) const
{
    return any_unlogged_ && unlogged_.matches(schema, name);
}

bool FunctionCatalog::knows(std::string_view schema, std::string_view name) const
{
    return !complete() || known_.matches(schema, name);
}

void FunctionCatalog::add_write_function(std::string_view name)
{
    write_.add(name);
}

void FunctionCatalog::add_read_only_function(std::string_view name)
{
    read_only_.add(name);
}

FunctionEffect FunctionCatalog::lookup(std::string_view schema, std::string_view name) const
{
    // Built-ins resolve through pg_catalog, which is searched first unless a session puts
    // it later in search_path explicitly; a user function of the same name in another
    // schema is then shadowed, so the built-in effect is the right one.
    if (schema.empty() || schema == "pg_catalog") {
        const FunctionEffect builtin = builtin_function_effect(name);
        if (builtin.write || builtin.uses_currval)
            return builtin;
    }
    if (write_.matches(schema, name))
        return {.write = true, .pins_primary = false, .uses_currval = false};
    if (read_only_.matches(schema, name))
        return {};
    if (volatile_.matches(schema, name))
        return {.write = true, .pins_primary = false, .uses_currval = false};
    return {};
}

}  // namespace pgswitch::routing
