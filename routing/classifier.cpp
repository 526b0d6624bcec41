// Statement classifier: walks libpg_query's JSON parse tree (nlohmann::json) per statement.
//
// Why JSON and not pg_query_parse_protobuf: on Debian 12's libpg_query 15-4.0.0, protobuf
// output plus protobuf-c unpacking measured slower than JSON output plus nlohmann parsing,
// and it needs libprotobuf-c-dev for one header. Most of an uncached classify() is nlohmann
// building the DOM (about 3x pg_query's own parse); StatementCache hides it for repeated
// texts. TODO(#3): a flat, allocation-free JSON tokenizer if uncached texts dominate.
#include "routing/classifier.h"

#include <pg_query.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <memory>

namespace pgswitch::routing {

namespace {

using json = nlohmann::json;

// Deeper trees than this are not walked further and count as writes: the walk recurses,
// and a statement nested this deep is not a read worth balancing.
constexpr int max_walk_depth = 1000;

// DeclareCursorStmt.options bit for WITH HOLD (PostgreSQL parsenodes.h CURSOR_OPT_HOLD).
constexpr std::int64_t cursor_opt_hold = 0x0020;

/// RAII over pg_query_parse()'s result.
struct ParseResultDeleter {
    void operator()(PgQueryParseResult* r) const noexcept
    {
        pg_query_free_parse_result(*r);
        delete r;
    }
};
using ParseResultPtr = std::unique_ptr<PgQueryParseResult, ParseResultDeleter>;

// --- Non-throwing accessors over the parse tree --------------------------------------------

const json* member(const json& obj, std::string_view key)
{
    if (!obj.is_object())
        return nullptr;
    const auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
}

std::string_view string_member(const json& obj, std::string_view key)
{
    const json* v = member(obj, key);
    return v && v->is_string() ? std::string_view{v->get_ref<const std::string&>()} : std::string_view{};
}

bool bool_member(const json& obj, std::string_view key)
{
    const json* v = member(obj, key);
    return v && v->is_boolean() && v->get<bool>();
}

// libpg_query omits zero and false values, so a missing number is 0.
std::int64_t int_member(const json& obj, std::string_view key)
{
    const json* v = member(obj, key);
    return v && v->is_number_integer() ? v->get<std::int64_t>() : 0;
}

/// The body of a node wrapper {"TypeName": {...}}, or nullptr if `node` is not that type.
const json* node_body(const json& node, std::string_view type)
{
    return member(node, type);
}

/// An array member, or nullptr.
const json* array_member(const json& obj, std::string_view key)
{
    const json* v = member(obj, key);
    return v && v->is_array() ? v : nullptr;
}

/// Calls `f` for every element of an array member, if there is one.
template <class F>
void for_each_element(const json& obj, std::string_view key, F&& f)
{
    if (const json* array = array_member(obj, key)) {
        for (const json& element : *array)
            f(element);
    }
}

std::string to_lower(std::string_view s)
{
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

bool iequals(std::string_view a, std::string_view b) noexcept
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

/// Text of an A_Const body: {"sval":{"sval":"on"}}, {"ival":{"ival":5}}, {"boolval":{}}...
std::optional<std::string> const_text(const json& a_const)
{
    if (const json* s = member(a_const, "sval"))
        return std::string(string_member(*s, "sval"));
    if (const json* i = member(a_const, "ival"))
        return std::to_string(int_member(*i, "ival"));
    if (const json* f = member(a_const, "fval"))
        return std::string(string_member(*f, "fval"));
    if (const json* b = member(a_const, "boolval"))
        return bool_member(*b, "boolval") ? "true" : "false";
    return std::nullopt;
}

/// PostgreSQL's boolean spellings (parse_bool), for option values given as text.
bool text_is_true(std::string_view v) noexcept
{
    return iequals(v, "true") || iequals(v, "t") || iequals(v, "on") || iequals(v, "yes") || iequals(v, "y") ||
           v == "1";
}

/// A RangeVar that names a temporary relation: TEMP/TEMPORARY in the statement, or an
/// explicit pg_temp schema (the parser leaves relpersistence 'p' for `pg_temp.t`).
bool is_temp_relation(const json* range_var)
{
    if (!range_var)
        return false;
    return string_member(*range_var, "relpersistence") == "t" ||
           string_member(*range_var, "schemaname").starts_with("pg_temp");
}

/// A cast of 'now', 'today', 'tomorrow' or 'yesterday' to a date or time type:
/// the value is the clock's when the statement runs, not a constant.
bool is_clock_literal(const json& type_cast)
{
    const json* arg = member(type_cast, "arg");
    const json* a_const = arg ? node_body(*arg, "A_Const") : nullptr;
    const json* sval = a_const ? member(*a_const, "sval") : nullptr;
    if (!sval)
        return false;
    const std::string value = to_lower(string_member(*sval, "sval"));
    if (value != "now" && value != "today" && value != "tomorrow" && value != "yesterday")
        return false;
    std::string_view type;
    if (const json* type_name = member(type_cast, "typeName"))
        for_each_element(*type_name, "names", [&](const json& part) {
            if (const json* s = node_body(part, "String"))
                type = string_member(*s, "sval");
        });
    return type == "date" || type == "time" || type == "timetz" || type == "timestamp" || type == "timestamptz";
}

// --- Tree walk: facts about everything a statement executes ------------------------------

/// What a walk found anywhere in a statement's tree.
struct TreeFacts {
    bool locking = false;       ///< FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE
    bool select_into = false;   ///< SELECT ... INTO
    bool modifying = false;     ///< INSERT / UPDATE / DELETE / MERGE (writable CTEs too)
    bool write_call = false;    ///< a function with side effects
    bool pins_primary = false;  ///< a session advisory lock, or SELECT INTO TEMP
    bool uses_currval = false;
    bool too_deep = false;
    /// pg_backend_pid(), current_setting('transaction_read_only'): the answer
    /// is about the session's own connection (StatementInfo::session_identity).
    bool session_identity = false;
    /// A literal argument decided something (set_config's is_local,
    /// current_setting's name): the classification is not literal-free.
    bool literal_sensitive = false;
    /// Names an UNLOGGED relation (StatementInfo::unlogged).
    bool unlogged = false;
    /// Calls of functions the (complete) catalog does not know.
    std::vector<std::string> unknown_functions;
    std::vector<RelationName> relations;  ///< StatementInfo::relations
    bool nondeterministic = false;        ///< StatementInfo::nondeterministic

    [[nodiscard]] bool writes() const noexcept { return locking || select_into || modifying || write_call || too_deep; }
};

class TreeWalker {
public:
    explicit TreeWalker(const FunctionCatalog* catalog) noexcept : catalog_(catalog) {}

    void walk(const json& node, int depth = 0)
    {
        if (depth > max_walk_depth) {
            facts_.too_deep = true;
            return;
        }
        if (node.is_array()) {
            for (const json& element : node)
                walk(element, depth + 1);
            return;
        }
        if (!node.is_object())
            return;
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::string& key = it.key();
            const json& value = it.value();
            if (key == "FuncCall") {
                on_function_call(value);
            } else if (key == "RangeVar") {
                on_relation(value);
            } else if (key == "lockingClause") {
                facts_.locking = facts_.locking || (value.is_array() && !value.empty());
            } else if (key == "intoClause") {
                facts_.select_into = true;
                facts_.pins_primary = facts_.pins_primary || is_temp_relation(member(value, "rel"));
            } else if (key == "InsertStmt" || key == "UpdateStmt" || key == "DeleteStmt" || key == "MergeStmt") {
                facts_.modifying = true;
            } else if (key == "SQLValueFunction" || key == "RangeTableSample") {
                facts_.nondeterministic = true;  // CURRENT_TIMESTAMP, CURRENT_USER...; TABLESAMPLE
            } else if (key == "TypeCast" && is_clock_literal(value)) {
                facts_.nondeterministic = true;  // 'now'::timestamptz is read when the statement runs
            }
            if (value.is_structured())
                walk(value, depth + 1);
        }
    }

    [[nodiscard]] const TreeFacts& facts() const noexcept { return facts_; }

private:
    void on_function_call(const json& call)
    {
        // funcname is a list of String nodes: [name], [schema, name] or [catalog, schema, name].
        std::string_view schema;
        std::string_view name;
        for_each_element(call, "funcname", [&](const json& part) {
            const json* s = node_body(part, "String");
            schema = name;
            name = s ? string_member(*s, "sval") : std::string_view{};
        });
        if (name.empty())
            return;
        // Quoted identifiers keep their case; the catalog compares lower-case.
        std::string lowered_schema;
        std::string lowered_name;
        if (std::any_of(schema.begin(), schema.end(), [](unsigned char c) { return std::isupper(c); }))
            schema = lowered_schema = to_lower(schema);
        if (std::any_of(name.begin(), name.end(), [](unsigned char c) { return std::isupper(c); }))
            name = lowered_name = to_lower(name);

        FunctionEffect effect = lookup(schema, name);
        if (name == "set_config" && (schema.empty() || schema == "pg_catalog")) {
            effect.write = !third_argument_is_true(call);
            facts_.literal_sensitive = true;
        }
        if (name == "current_setting")
            facts_.literal_sensitive = true;
        facts_.nondeterministic = facts_.nondeterministic || !catalog_ || !catalog_->immutable(schema, name);
        facts_.write_call = facts_.write_call || effect.write;
        facts_.pins_primary = facts_.pins_primary || effect.pins_primary;
        facts_.uses_currval = facts_.uses_currval || effect.uses_currval;
        if (schema.empty() || schema == "pg_catalog") {
            if (name == "pg_backend_pid" ||
                (name == "current_setting" && first_argument_is(call, "transaction_read_only")))
                facts_.session_identity = true;
        }
        if (catalog_ && !catalog_->knows(schema, name)) {
            std::string full = schema.empty() ? std::string(name) : std::string(schema) + "." + std::string(name);
            if (std::find(facts_.unknown_functions.begin(), facts_.unknown_functions.end(), full) ==
                facts_.unknown_functions.end())
                facts_.unknown_functions.push_back(std::move(full));
        }
    }

    void on_relation(const json& range_var)
    {
        RelationName rel{std::string(string_member(range_var, "schemaname")),
                         std::string(string_member(range_var, "relname"))};
        if (!rel.name.empty() &&
            std::find(facts_.relations.begin(), facts_.relations.end(), rel) == facts_.relations.end())
            facts_.relations.push_back(std::move(rel));
        if (!catalog_)
            return;
        std::string schema = to_lower(string_member(range_var, "schemaname"));
        std::string name = to_lower(string_member(range_var, "relname"));
        if (!name.empty() && catalog_->unlogged(schema, name))
            facts_.unlogged = true;
    }

    // current_setting('name' [, missing_ok]) with that name as a literal, or
    // with a name only known at run time ($1, an expression): it may be it.
    static bool first_argument_is(const json& call, std::string_view setting)
    {
        const json* args = array_member(call, "args");
        if (!args || args->empty())
            return false;
        const json* a_const = node_body((*args)[0], "A_Const");
        if (!a_const)
            return true;
        const json* sval = member(*a_const, "sval");
        return sval && iequals(string_member(*sval, "sval"), setting);
    }

    [[nodiscard]] FunctionEffect lookup(std::string_view schema, std::string_view name) const
    {
        if (catalog_)
            return catalog_->lookup(schema, name);
        if (schema.empty() || schema == "pg_catalog")
            return builtin_function_effect(name);
        return {};
    }

    // set_config(name, value, is_local): is_local = true only lasts until the end of the
    // transaction, which a lone statement is; anything else may be a session change.
    static bool third_argument_is_true(const json& call)
    {
        const json* args = array_member(call, "args");
        if (!args || args->size() != 3)
            return false;
        const json* a_const = node_body((*args)[2], "A_Const");
        if (!a_const)
            return false;
        if (const json* b = member(*a_const, "boolval"))
            return bool_member(*b, "boolval");
        if (const json* s = member(*a_const, "sval"))
            return text_is_true(string_member(*s, "sval"));
        return false;
    }

    const FunctionCatalog* catalog_;
    TreeFacts facts_;
};

// --- Per statement type -------------------------------------------------------------------

struct Context {
    const FunctionCatalog* catalog;
};

void classify_node(const json& stmt, const Context& ctx, StatementInfo& out);

/// Walks `tree` and applies its facts: a read unless something in it writes.
void apply_walk(const json* tree, const Context& ctx, StatementInfo& out)
{
    TreeWalker walker(ctx.catalog);
    if (tree)
        walker.walk(*tree);
    const TreeFacts& f = walker.facts();
    out.write = f.writes();
    out.pins_primary = out.pins_primary || f.pins_primary;
    out.uses_currval = out.uses_currval || f.uses_currval;
    out.session_identity = out.session_identity || f.session_identity;
    out.literal_sensitive = out.literal_sensitive || f.literal_sensitive;
    out.unlogged = out.unlogged || f.unlogged;
    out.nondeterministic = out.nondeterministic || f.nondeterministic;
    for (const auto& rel : f.relations)
        if (std::find(out.relations.begin(), out.relations.end(), rel) == out.relations.end())
            out.relations.push_back(rel);
    out.unknown_functions.insert(out.unknown_functions.end(), f.unknown_functions.begin(), f.unknown_functions.end());
}

/// What a nested statement (EXPLAIN ANALYZE's, COPY's query) adds to its container.
void take_inner_facts(const StatementInfo& inner, StatementInfo& out)
{
    out.pins_primary = inner.pins_primary;
    out.uses_currval = inner.uses_currval;
    out.session_identity = inner.session_identity;
    out.literal_sensitive = inner.literal_sensitive;
    out.unlogged = inner.unlogged;
    out.unknown_functions = inner.unknown_functions;
}

/// Classification of a statement nested in another (EXPLAIN, COPY, PREPARE).
StatementInfo classify_inner(const json* stmt, const Context& ctx)
{
    StatementInfo inner;
    if (stmt)
        classify_node(*stmt, ctx, inner);
    return inner;
}

void on_select(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::select;
    apply_walk(&body, ctx, out);
}

void on_dml(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::dml;
    apply_walk(&body, ctx, out);  // for pins and currval in its expressions
    out.write = true;
}

void on_show(const json& body, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::show;
    out.write = false;
    out.set_name = to_lower(string_member(body, "name"));  // SHOW pgswitch.lsn is answered by the proxy
    // A standby says "on" whatever the session set: the session's answer is the primary's.
    out.session_identity = out.set_name == "transaction_read_only";
}

// EXPLAIN without ANALYZE plans but does not execute (ExecutorStart with EXPLAIN_ONLY skips
// the read-only check), so it reads whatever it explains. ANALYZE runs the statement.
void on_explain(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::explain;
    out.write = false;
    bool analyze = false;
    for_each_element(body, "options", [&](const json& option) {
        const json* def = node_body(option, "DefElem");
        if (!def || string_member(*def, "defname") != "analyze")
            return;
        const json* arg = member(*def, "arg");
        if (!arg)
            analyze = true;  // bare ANALYZE
        else if (const json* s = node_body(*arg, "String"))
            analyze = text_is_true(string_member(*s, "sval"));
        else if (const json* i = node_body(*arg, "Integer"))
            analyze = int_member(*i, "ival") != 0;
    });
    if (!analyze)
        return;
    const StatementInfo inner = classify_inner(member(body, "query"), ctx);
    out.write = inner.write;
    take_inner_facts(inner, out);
    out.execute_name = inner.execute_name;  // EXPLAIN ANALYZE EXECUTE p runs p
}

// COPY FROM loads rows. COPY TO a server file or program has effects outside the database
// on the server that runs it, so it goes where writes go; COPY TO STDOUT follows its query.
void on_copy(const json& body, const Context& ctx, StatementInfo& out)
{
    if (bool_member(body, "is_from")) {
        out.kind = StatementKind::copy_from;
        out.write = true;
        return;
    }
    out.kind = StatementKind::copy_to;
    const StatementInfo inner = classify_inner(member(body, "query"), ctx);
    out.write = !string_member(body, "filename").empty() || (member(body, "query") && inner.write);
    take_inner_facts(inner, out);
}

/// The value of a `transaction_read_only` DefElem (BEGIN/START/SET TRANSACTION options:
/// READ ONLY is {"ival":1}, READ WRITE an ival of 0, which libpg_query leaves out).
std::optional<bool> read_only_option(const json& option)
{
    const json* def = node_body(option, "DefElem");
    if (!def || string_member(*def, "defname") != "transaction_read_only")
        return std::nullopt;
    const json* arg = member(*def, "arg");
    const json* a_const = arg ? node_body(*arg, "A_Const") : nullptr;
    const json* ival = a_const ? member(*a_const, "ival") : nullptr;
    return ival && int_member(*ival, "ival") != 0;
}

/// The isolation level of a `transaction_isolation` DefElem, lower-case
/// ("serializable", "repeatable read"...), or nullopt for other options.
std::optional<std::string> isolation_option(const json& option)
{
    const json* def = node_body(option, "DefElem");
    if (!def || string_member(*def, "defname") != "transaction_isolation")
        return std::nullopt;
    const json* arg = member(*def, "arg");
    const json* a_const = arg ? node_body(*arg, "A_Const") : nullptr;
    auto text = a_const ? const_text(*a_const) : std::nullopt;
    return text ? std::optional<std::string>(to_lower(*text)) : std::nullopt;
}

void on_transaction(const json& body, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::transaction;
    out.write = false;
    out.tx_chain = bool_member(body, "chain");
    const std::string_view kind = string_member(body, "kind");
    if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") {
        // Options apply in order, so the last transaction_read_only wins.
        bool read_only = false;
        for_each_element(body, "options", [&](const json& option) {
            if (const auto value = read_only_option(option))
                read_only = *value;
            if (const auto level = isolation_option(option))
                out.serializable = *level == "serializable";
        });
        out.tx = read_only ? Tx::begin_read_only : Tx::begin;
    } else if (kind == "TRANS_STMT_COMMIT") {
        out.tx = Tx::commit;
    } else if (kind == "TRANS_STMT_ROLLBACK") {
        out.tx = Tx::rollback;
    } else if (kind == "TRANS_STMT_SAVEPOINT" || kind == "TRANS_STMT_RELEASE" || kind == "TRANS_STMT_ROLLBACK_TO") {
        out.tx = Tx::savepoint_or_release;
    } else if (kind == "TRANS_STMT_PREPARE") {
        out.tx = Tx::prepare_transaction;
    } else {
        // COMMIT PREPARED / ROLLBACK PREPARED: outside any block, on the primary that
        // holds the prepared transaction.
        out.write = true;
    }
}

/// "on"/"off" from SET SESSION CHARACTERISTICS / SET TRANSACTION's DefElem list, and the
/// GUC it stands for.
void on_transaction_characteristics(const json& body, StatementInfo& out)
{
    out.set_name = "default_transaction_isolation";
    for_each_element(body, "args", [&](const json& option) {
        if (const auto value = read_only_option(option)) {
            out.set_name = "default_transaction_read_only";
            out.set_value = *value ? "on" : "off";
        } else if (const auto level = isolation_option(option)) {
            out.set_value = *level;
        }
    });
}

void on_variable_set(const json& body, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::session;
    out.write = false;
    const std::string_view kind = string_member(body, "kind");
    const std::string_view name = string_member(body, "name");
    if (kind == "VAR_SET_MULTI") {
        if (name == "SESSION CHARACTERISTICS") {
            out.session = SessionEffect::set;
            on_transaction_characteristics(body, out);
        } else {
            // SET TRANSACTION ..., SET TRANSACTION SNAPSHOT
            out.session = SessionEffect::set_transaction_scoped;
            out.set_name = to_lower(name);
        }
        return;
    }
    out.set_name = to_lower(name);
    if (kind == "VAR_RESET_ALL") {
        out.session = SessionEffect::reset_all;
    } else if (kind == "VAR_RESET" || kind == "VAR_SET_DEFAULT") {
        out.session = SessionEffect::reset;
    } else {
        out.session = SessionEffect::set;  // VAR_SET_VALUE, VAR_SET_CURRENT
        for_each_element(body, "args", [&](const json& arg) {
            const json* a_const = node_body(arg, "A_Const");
            const std::optional<std::string> text = a_const ? const_text(*a_const) : std::nullopt;
            if (!text)
                return;
            if (!out.set_value.empty())
                out.set_value += ", ";
            out.set_value += *text;
        });
    }
    if (bool_member(body, "is_local"))
        out.session = SessionEffect::set_transaction_scoped;
}

void on_discard(const json& body, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::session;
    out.write = false;
    out.session = string_member(body, "target") == "DISCARD_ALL" ? SessionEffect::discard_all
                                                                 : SessionEffect::discard_other;
}

// PREPARE runs nothing: the router keeps its text to replay wherever a later EXECUTE goes,
// and needs the inner statement's class to place that EXECUTE.
void on_prepare(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::prepare;
    out.write = false;
    out.prepare_name = std::string(string_member(body, "name"));
    const StatementInfo inner = classify_inner(member(body, "query"), ctx);
    out.prepared_statement_is_write = inner.write;
    out.unknown_functions = inner.unknown_functions;  // looked up now, so the EXECUTEs route right
}

// EXECUTE's own arguments may call functions: EXECUTE p(nextval('s')).
void on_execute(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::execute;
    out.execute_name = std::string(string_member(body, "name"));
    apply_walk(member(body, "params"), ctx, out);
}

void on_deallocate(const json& body, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::deallocate;
    out.write = false;
    const std::string_view name = string_member(body, "name");
    if (name.empty())
        out.deallocate_all = true;  // DEALLOCATE ALL has no name
    else
        out.deallocate_name = std::string(name);
}

void on_declare_cursor(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::cursor;
    apply_walk(member(body, "query"), ctx, out);
    out.pins_primary = out.pins_primary || (int_member(body, "options") & cursor_opt_hold) != 0;
}

// FETCH, MOVE and CLOSE touch a cursor that exists only inside the current transaction
// (already on one server) or WITH HOLD (session pinned to the primary), so they follow
// the session and need no placement of their own.
void on_cursor_use(const json&, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::cursor;
    out.write = false;
}

void on_listen(const json&, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::listen;
    out.pins_primary = true;
}

void on_unlisten(const json&, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::listen;
    out.unlisten = true;
}

void on_notify(const json&, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::listen;
}

void on_call(const json& body, const Context& ctx, StatementInfo& out)
{
    out.kind = StatementKind::call;
    apply_walk(&body, ctx, out);  // pins and currval in the arguments
    out.write = true;
}

void on_do(const json&, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::call;
}

// DDL that creates a temporary object pins the session: the object exists on one server.
void on_create_relation(std::string_view field, const json& body, StatementInfo& out)
{
    out.kind = StatementKind::other;
    out.pins_primary = is_temp_relation(member(body, field));
}

void on_create_table(const json& body, const Context&, StatementInfo& out)
{
    on_create_relation("relation", body, out);
}

void on_create_sequence(const json& body, const Context&, StatementInfo& out)
{
    on_create_relation("sequence", body, out);
}

void on_create_view(const json& body, const Context&, StatementInfo& out)
{
    on_create_relation("view", body, out);
}

// CREATE TABLE AS runs its query (WITH DATA), which may take locks or call functions.
void on_create_table_as(const json& body, const Context& ctx, StatementInfo& out)
{
    const json* into = member(body, "into");
    if (!bool_member(into ? *into : body, "skipData"))
        apply_walk(member(body, "query"), ctx, out);
    out.kind = StatementKind::other;
    out.write = true;
    out.pins_primary = out.pins_primary || is_temp_relation(into ? member(*into, "rel") : nullptr);
}

void on_create_function(const json& body, const Context&, StatementInfo& out)
{
    out.kind = StatementKind::other;
    const json* name = array_member(body, "funcname");
    if (name && name->size() >= 2) {
        const json* schema = node_body((*name)[name->size() - 2], "String");
        out.pins_primary = schema && string_member(*schema, "sval").starts_with("pg_temp");
    }
}

using Handler = void (*)(const json& body, const Context& ctx, StatementInfo& out);

struct NodeHandler {
    std::string_view node;
    Handler handler;
};

// Node types with something to say; every other statement is a write of kind `other`.
constexpr std::array node_handlers{
    NodeHandler{"SelectStmt", on_select},
    NodeHandler{"InsertStmt", on_dml},
    NodeHandler{"UpdateStmt", on_dml},
    NodeHandler{"DeleteStmt", on_dml},
    NodeHandler{"MergeStmt", on_dml},
    NodeHandler{"VariableShowStmt", on_show},
    NodeHandler{"ExplainStmt", on_explain},
    NodeHandler{"CopyStmt", on_copy},
    NodeHandler{"TransactionStmt", on_transaction},
    NodeHandler{"VariableSetStmt", on_variable_set},
    NodeHandler{"DiscardStmt", on_discard},
    NodeHandler{"PrepareStmt", on_prepare},
    NodeHandler{"ExecuteStmt", on_execute},
    NodeHandler{"DeallocateStmt", on_deallocate},
    NodeHandler{"DeclareCursorStmt", on_declare_cursor},
    NodeHandler{"FetchStmt", on_cursor_use},  // FETCH and MOVE
    NodeHandler{"ClosePortalStmt", on_cursor_use},
    NodeHandler{"ListenStmt", on_listen},
    NodeHandler{"UnlistenStmt", on_unlisten},
    NodeHandler{"NotifyStmt", on_notify},
    NodeHandler{"CallStmt", on_call},
    NodeHandler{"DoStmt", on_do},
    NodeHandler{"CreateStmt", on_create_table},
    NodeHandler{"CreateSeqStmt", on_create_sequence},
    NodeHandler{"ViewStmt", on_create_view},
    NodeHandler{"CreateTableAsStmt", on_create_table_as},
    NodeHandler{"CreateFunctionStmt", on_create_function},
};

/// `stmt` is a node wrapper {"SelectStmt": {...}}; `out` starts as a default write.
/// Statements that change the catalog (what exists, its shape, who may use
/// it): a replica that has not replayed one fails later statements outright.
bool changes_schema(std::string_view node)
{
    if (node.starts_with("Create") || node.starts_with("Alter") || node.starts_with("Drop"))
        return node != "CreatedbStmt" && node != "DropdbStmt" && node != "AlterSystemStmt";
    for (std::string_view n :
         {"RenameStmt", "ViewStmt", "IndexStmt", "DefineStmt", "CompositeTypeStmt", "CommentStmt", "GrantStmt",
          "GrantRoleStmt", "RuleStmt", "AlterObjectSchemaStmt", "SecLabelStmt", "ReassignOwnedStmt"})
        if (node == n)
            return true;
    return false;
}

void classify_node(const json& stmt, const Context& ctx, StatementInfo& out)
{
    if (!stmt.is_object() || stmt.empty())
        return;
    const auto first = stmt.begin();
    out.changes_schema = changes_schema(first.key());
    for (const NodeHandler& h : node_handlers) {
        if (first.key() == h.node) {
            h.handler(first.value(), ctx, out);
            return;
        }
    }
    out.kind = StatementKind::other;
}

StatementInfo unparseable(std::string_view sql)
{
    StatementInfo info;
    info.kind = StatementKind::invalid;
    info.write = true;
    info.parse_error = true;
    info.hint = parse_hint(sql);
    info.length = sql.size();
    return info;
}

Classification summarize(std::vector<StatementInfo> statements, Hint hint)
{
    Classification c;
    c.hint = hint;
    for (const StatementInfo& s : statements) {
        c.write = c.write || s.write;
        c.parse_error = c.parse_error || s.parse_error;
        c.pins_primary = c.pins_primary || s.pins_primary;
        c.uses_currval = c.uses_currval || s.uses_currval;
        c.has_tx_control = c.has_tx_control || s.tx != Tx::none;
        c.has_session_effect = c.has_session_effect || s.session != SessionEffect::none;
        c.has_session_bookkeeping = c.has_session_bookkeeping || s.prepare_name || s.execute_name ||
                                    s.deallocate_name || s.deallocate_all || s.unlisten;
        c.session_identity = c.session_identity || s.session_identity;
        c.literal_sensitive = c.literal_sensitive || s.literal_sensitive;
        c.unlogged = c.unlogged || s.unlogged;
        for (const auto& f : s.unknown_functions)
            if (std::find(c.unknown_functions.begin(), c.unknown_functions.end(), f) == c.unknown_functions.end())
                c.unknown_functions.push_back(f);
    }
    c.statements = std::move(statements);
    return c;
}

}  // namespace

Hint parse_hint(std::string_view sql) noexcept
{
    const auto start = sql.find_first_not_of(" \t\r\n\f\v");
    if (start == std::string_view::npos || sql.substr(start, 2) != "/*")
        return Hint::none;
    const auto end = sql.find("*/", start + 2);
    if (end == std::string_view::npos)
        return Hint::none;
    std::string_view inner = sql.substr(start + 2, end - start - 2);
    const auto first = inner.find_first_not_of(" \t\r\n\f\v");
    if (first == std::string_view::npos)
        return Hint::none;
    inner = inner.substr(first, inner.find_last_not_of(" \t\r\n\f\v") - first + 1);
    if (iequals(inner, "pgswitch:primary"))
        return Hint::primary;
    if (iequals(inner, "pgswitch:replica"))
        return Hint::replica;
    return Hint::none;
}

Classification classify(std::string_view sql, const FunctionCatalog* catalog)
{
    const Hint hint = parse_hint(sql);
    // libpg_query reads a C string; an embedded NUL would silently cut the text short.
    if (sql.find('\0') != std::string_view::npos)
        return summarize({unparseable(sql)}, hint);

    const std::string text(sql);
    ParseResultPtr result{new PgQueryParseResult(pg_query_parse(text.c_str()))};
    if (result->error || !result->parse_tree)
        return summarize({unparseable(sql)}, hint);
    const json tree = json::parse(result->parse_tree, nullptr, /*allow_exceptions=*/false);
    const json* stmts = member(tree, "stmts");
    if (!stmts || !stmts->is_array())
        return summarize({unparseable(sql)}, hint);

    const Context ctx{catalog};
    std::vector<StatementInfo> statements;
    statements.reserve(stmts->size());
    for (const json& raw : *stmts) {
        StatementInfo info;
        // Byte offsets into the text; a missing (zero) stmt_len means "to the end".
        const auto location = static_cast<std::size_t>(std::max<std::int64_t>(0, int_member(raw, "stmt_location")));
        const auto len = static_cast<std::size_t>(std::max<std::int64_t>(0, int_member(raw, "stmt_len")));
        info.offset = std::min(location, sql.size());
        info.length = len == 0 ? sql.size() - info.offset : std::min(len, sql.size() - info.offset);
        info.hint = parse_hint(sql.substr(info.offset, info.length));
        if (const json* stmt = member(raw, "stmt"))
            classify_node(*stmt, ctx, info);
        statements.push_back(std::move(info));
    }
    return summarize(std::move(statements), hint);
}

std::string_view to_string(StatementKind k) noexcept
{
    switch (k) {
    case StatementKind::select:
        return "select";
    case StatementKind::show:
        return "show";
    case StatementKind::explain:
        return "explain";
    case StatementKind::dml:
        return "dml";
    case StatementKind::copy_to:
        return "copy_to";
    case StatementKind::copy_from:
        return "copy_from";
    case StatementKind::transaction:
        return "transaction";
    case StatementKind::session:
        return "session";
    case StatementKind::prepare:
        return "prepare";
    case StatementKind::execute:
        return "execute";
    case StatementKind::deallocate:
        return "deallocate";
    case StatementKind::cursor:
        return "cursor";
    case StatementKind::listen:
        return "listen";
    case StatementKind::call:
        return "call";
    case StatementKind::other:
        return "other";
    case StatementKind::invalid:
        return "invalid";
    }
    return "?";
}

std::string_view to_string(Tx t) noexcept
{
    switch (t) {
    case Tx::none:
        return "none";
    case Tx::begin:
        return "begin";
    case Tx::begin_read_only:
        return "begin_read_only";
    case Tx::commit:
        return "commit";
    case Tx::rollback:
        return "rollback";
    case Tx::savepoint_or_release:
        return "savepoint_or_release";
    case Tx::prepare_transaction:
        return "prepare_transaction";
    }
    return "?";
}

std::string_view to_string(SessionEffect e) noexcept
{
    switch (e) {
    case SessionEffect::none:
        return "none";
    case SessionEffect::set:
        return "set";
    case SessionEffect::reset:
        return "reset";
    case SessionEffect::reset_all:
        return "reset_all";
    case SessionEffect::discard_all:
        return "discard_all";
    case SessionEffect::discard_other:
        return "discard_other";
    case SessionEffect::set_transaction_scoped:
        return "set_transaction_scoped";
    }
    return "?";
}

std::string_view to_string(Hint h) noexcept
{
    switch (h) {
    case Hint::none:
        return "none";
    case Hint::primary:
        return "primary";
    case Hint::replica:
        return "replica";
    }
    return "?";
}

}  // namespace pgswitch::routing
