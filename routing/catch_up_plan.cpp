#include "routing/catch_up_plan.h"

#include <algorithm>

#include <boost/container/small_vector.hpp>

namespace pgswitch::routing {

namespace fe = wire::fe;

std::string quote_ident(std::string_view name)
{
    std::string out = "\"";
    for (char c : name) {
        if (c == '"')
            out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

namespace {

void append_statement(std::string& script, std::string_view statement)
{
    if (!script.empty())
        script += "; ";
    script += statement;
}

/// An SQL EXECUTE of `name`: the connection needs the session's PREPARE of
/// it, in its version, and must not have one the session deallocated.
void plan_sql_execute(const std::string& name, const SessionState& session, LinkState& link, std::string& script)
{
    const auto* sp = session.sql_prepared(name);
    auto it = link.sql_prepared.find(name);
    if (!sp) {
        // Another client's (transaction pooling), or the session's own that it
        // DEALLOCATEd on another server: gone before this EXECUTE, which the
        // server must refuse (26000).
        if (it != link.sql_prepared.end()) {
            append_statement(script, "DEALLOCATE " + quote_ident(name));
            link.sql_prepared.erase(it);
        }
        return;
    }
    if (it != link.sql_prepared.end() && it->second == sp->version)
        return;
    if (it != link.sql_prepared.end())
        append_statement(script, "DEALLOCATE " + quote_ident(name));
    append_statement(script, sp->prepare_text);
    link.sql_prepared[name] = sp->version;
}

/// SQL PREPAREd statements the request EXECUTEs, and stale names it re-PREPAREs.
void plan_sql_prepared(const RequestFacts& facts, const SessionState& session, LinkState& link, std::string& script)
{
    for (const auto& cls : facts.classes) {
        if (!cls)
            continue;
        for (const auto& st : cls->statements) {
            if (st.execute_name)
                plan_sql_execute(*st.execute_name, session, link, script);
            if (st.prepare_name) {
                if (auto it = link.sql_prepared.find(*st.prepare_name); it != link.sql_prepared.end()) {
                    append_statement(script, "DEALLOCATE " + quote_ident(*st.prepare_name));
                    link.sql_prepared.erase(it);
                }
            }
        }
    }
}

/// Plans a Parse of the session's statement `name` unless `link` has its version.
void plan_parse(std::string_view name, const PreparedStatement& ps, LinkState& link, std::vector<StatementStep>& out)
{
    auto it = link.statements.find(name);
    if (it != link.statements.end() && it->second == ps.version)
        return;
    const bool stale = it != link.statements.end();
    out.push_back({StatementStep::Kind::parse, std::string(name), &ps, stale});
    link.statements[std::string(name)] = ps.version;
}

void plan_close(std::string_view name, LinkState& link, std::vector<StatementStep>& out)
{
    out.push_back({StatementStep::Kind::close, std::string(name), nullptr, false});
    link.statements.erase(link.statements.find(name));
}

/// Protocol-level statements an SQL EXECUTE runs (when no SQL PREPARE has the name).
void plan_executed_statements(const RequestFacts& facts, const SessionState& session, LinkState& link,
                              std::vector<StatementStep>& out)
{
    for (const auto& cls : facts.classes) {
        if (!cls)
            continue;
        for (const auto& st : cls->statements)
            if (st.execute_name && !session.sql_prepared(*st.execute_name))
                if (const auto* ps = session.statement(*st.execute_name))
                    plan_parse(*st.execute_name, *ps, link, out);
    }
}

/// The statement a message names, and whether it defines it (a Parse).
std::pair<std::string_view, bool> statement_named(const wire::RequestMessage& m)
{
    if (const auto* b = m.as<fe::Bind>())
        return {b->statement, false};
    if (const auto* d = m.as<fe::Describe>(); d && d->kind == 'S')
        return {d->name, false};
    if (const auto* p = m.as<fe::Parse>())
        return {p->statement, true};
    return {{}, false};
}

/// Named statements the request's messages use or define.
void plan_message_statements(const wire::Request& request, const SessionState& session, LinkState& link,
                             std::vector<StatementStep>& out)
{
    boost::container::small_vector<std::string_view, 4> defined;
    for (const auto& m : request.messages()) {
        const auto [name, defines] = statement_named(m);
        if (name.empty() || std::find(defined.begin(), defined.end(), name) != defined.end())
            continue;
        const bool here = link.statements.find(name) != link.statements.end();
        if (defines) {
            defined.push_back(name);
            // The client defines this name now; a stale copy here would clash.
            if (here)
                plan_close(name, link, out);
            continue;
        }
        const auto* ps = session.statement(name);
        if (ps)
            plan_parse(name, *ps, link, out);
        else if (here)
            // This client has no statement of that name, but the connection
            // has one: another client's (transaction pooling), or the
            // session's own that it closed or DEALLOCATEd on another server.
            // The server must say it is gone (26000).
            plan_close(name, link, out);
    }
}

}  // namespace

std::string settings_script_for(const SessionState& session, LinkState& link)
{
    const auto c = session.catch_up(link);
    std::string script;
    if (c.discard_all)
        script = "DISCARD ALL";
    if (c.settings)
        append_statement(script, *c.settings);
    return script;
}

CatchUpPlan plan_catch_up(const wire::Request& request, const RequestFacts& facts, const SessionState& session,
                          LinkState& link, bool inside_unsynced)
{
    CatchUpPlan plan;
    if (!inside_unsynced) {
        plan.script = settings_script_for(session, link);
        plan_sql_prepared(facts, session, link, plan.script);
    }
    // Prepared lazily where they are used (not those the request parses
    // itself first, which it may run again when re-sent to another server).
    plan_executed_statements(facts, session, link, plan.statements);
    plan_message_statements(request, session, link, plan.statements);
    return plan;
}

}  // namespace pgswitch::routing
