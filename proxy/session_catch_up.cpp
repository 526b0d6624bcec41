// ClientSession's catch-up step: what a server connection lacks of the
// session's state before a request runs there (DISCARD ALL, SET replay, SQL
// PREPAREs, lazily prepared named statements), and the check that a
// statement the client Described looks the same on a server it is new to.
#include <algorithm>

#include "client_session.h"
#include "log.h"
#include "pg_wire/frontend.h"
#include "routing/server_prepared.h"

namespace pgswitch::proxy {

namespace fe = wire::fe;
using Segment = ServerLink::Segment;

namespace {

std::vector<std::int32_t> param_oids(std::string_view raw)
{
    std::vector<std::int32_t> out;
    for (std::size_t i = 0; i + 4 <= raw.size(); i += 4) {
        std::uint32_t v = 0;
        for (std::size_t k = 0; k < 4; ++k)
            v = (v << 8) | static_cast<unsigned char>(raw[i + k]);
        out.push_back(static_cast<std::int32_t>(v));
    }
    return out;
}

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

void append_statement(std::string& script, std::string_view statement)
{
    if (!script.empty())
        script += "; ";
    script += statement;
}

/// Named statements a request uses (Bind, Describe of a statement) that it
/// does not Parse itself before using them.
template <class Fn>
void for_each_used_statement(const wire::Request& request, Fn&& fn)
{
    std::vector<std::string_view> parsed;
    for (const auto& m : request.messages()) {
        std::string_view name;
        if (const auto* p = m.as<fe::Parse>()) {
            parsed.push_back(p->statement);
            continue;
        }
        if (const auto* b = m.as<fe::Bind>())
            name = b->statement;
        else if (const auto* d = m.as<fe::Describe>(); d && d->kind == 'S')
            name = d->name;
        if (name.empty() || std::find(parsed.begin(), parsed.end(), name) != parsed.end())
            continue;
        fn(name);
    }
}

}  // namespace

std::string ClientSession::settings_catch_up_script(routing::LinkState& link_state) const
{
    const auto c = state_.catch_up(link_state);
    std::string script;
    if (c.discard_all)
        script = "DISCARD ALL";
    if (c.settings)
        append_statement(script, *c.settings);
    return script;
}

void ClientSession::hidden_close(ServerLink& link, std::string& out, std::string_view name, bool inline_hidden)
{
    fe::build_close(out, 'S', name);
    link.statements.close_sent(link.replies.segments_sent() + 1, inline_hidden);
}

void ClientSession::replay_parse(ServerLink& link, std::string& out, std::string_view name,
                                 const routing::PreparedStatement& ps, bool close_first, bool inline_hidden)
{
    if (close_first)
        hidden_close(link, out, name, inline_hidden);
    fe::build_parse(out, name, ps.query, param_oids(ps.param_types));
    link.state.statements[std::string(name)] = ps.version;
    link.statements.parse_sent(std::string(name), ps.version, link.replies.segments_sent() + 1, false, inline_hidden);
}

std::vector<std::pair<std::string_view, const routing::PreparedStatement*>>
ClientSession::statements_to_check(const ServerLink& link, const wire::Request& request) const
{
    std::vector<std::pair<std::string_view, const routing::PreparedStatement*>> out;
    // In the middle of an unfinished extended request nothing may be slipped in.
    if (link.unsynced)
        return out;
    for_each_used_statement(request, [&](std::string_view name) {
        const auto* ps = state_.statement(name);
        if (!ps || !ps->shown)
            return;
        auto it = link.state.statements.find(name);
        if (it == link.state.statements.end() || it->second != ps->version)
            out.emplace_back(name, ps);
    });
    return out;
}

bool ClientSession::needs_check(const ServerLink& link, const wire::Request& request) const
{
    return !statements_to_check(link, request).empty();
}

awaitable<bool> ClientSession::check_statements(ServerLink& link, const wire::Request& request)
{
    const auto todo = statements_to_check(link, request);
    if (todo.empty())
        co_return true;
    std::string out;
    // The statements' texts resolve names by the session's search_path.
    if (const auto script = settings_catch_up_script(link.state); !script.empty()) {
        fe::build_query(out, script);
        link.push(Segment::hidden);
    }
    for (const auto& [name, ps] : todo) {
        const bool stale_copy = link.state.statements.contains(name);
        replay_parse(link, out, name, *ps, stale_copy, false);
        fe::build_describe(out, 'S', name);
        link.statements.describe_sent(std::string(name), ps->version, link.replies.segments_sent() + 1, ps->shown);
    }
    fe::build_sync(out);
    const auto n = link.push(Segment::check);
    (void)co_await link.conn->write(out);
    co_await wait_for_segment(link, n);
    if (link.statements.take_check_failure()) {
        log::info("session ", id_, ": a statement the client described differs on ", link.backend,
                  " (its tables changed): answering 0A000");
        co_return false;
    }
    co_return true;
}

void ClientSession::catch_up(ServerLink& link, const wire::Request& request, const routing::RequestFacts& facts)
{
    hidden_.clear();
    // In the middle of an unfinished extended request (the client ended the
    // last one with Flush, as asyncpg's prepare does) no Query or Sync may be
    // slipped in: a Sync would end the implicit transaction and its portals.
    // Statements can still be prepared, their replies cut out one by one.
    const bool inline_hidden = link.unsynced;
    std::string script = inline_hidden ? std::string() : settings_catch_up_script(link.state);

    // SQL PREPAREd statements this request EXECUTEs, and stale names it re-PREPAREs.
    for (const auto& cls : facts.classes) {
        if (!cls || inline_hidden)
            continue;
        for (const auto& st : cls->statements) {
            if (st.execute_name) {
                const auto* sp = state_.sql_prepared(*st.execute_name);
                auto it = link.state.sql_prepared.find(*st.execute_name);
                if (!sp && it != link.state.sql_prepared.end()) {
                    // Another client's (transaction pooling), or the session's
                    // own that it DEALLOCATEd on another server: gone before
                    // this EXECUTE, which the server must refuse (26000).
                    append_statement(script, "DEALLOCATE " + quote_ident(*st.execute_name));
                    link.state.sql_prepared.erase(it);
                }
                if (sp && (it == link.state.sql_prepared.end() || it->second != sp->version)) {
                    if (it != link.state.sql_prepared.end())
                        append_statement(script, "DEALLOCATE " + quote_ident(*st.execute_name));
                    append_statement(script, sp->prepare_text);
                    link.state.sql_prepared[*st.execute_name] = sp->version;
                }
            }
            if (st.prepare_name) {
                auto it = link.state.sql_prepared.find(*st.prepare_name);
                if (it != link.state.sql_prepared.end()) {
                    append_statement(script, "DEALLOCATE " + quote_ident(*st.prepare_name));
                    link.state.sql_prepared.erase(it);
                }
            }
        }
    }
    if (!script.empty()) {
        fe::build_query(hidden_, script);
        link.push(Segment::hidden);
    }

    // Protocol-level named statements: prepared lazily where they are used
    // (not those the request parses itself first, which it may run again
    // when re-sent to another server), also by an SQL EXECUTE.
    bool parsed = false;
    std::vector<std::string_view> defined;
    for (const auto& cls : facts.classes)
        for (const auto& st : cls ? cls->statements : std::vector<routing::StatementInfo>{})
            if (st.execute_name && !state_.sql_prepared(*st.execute_name))
                if (const auto* ps = state_.statement(*st.execute_name)) {
                    auto it = link.state.statements.find(*st.execute_name);
                    if (it == link.state.statements.end() || it->second != ps->version) {
                        replay_parse(link, hidden_, *st.execute_name, *ps, it != link.state.statements.end(),
                                     inline_hidden);
                        parsed = true;
                    }
                }
    for (const auto& m : request.messages()) {
        std::string_view name;
        bool defines = false;
        if (const auto* b = m.as<fe::Bind>()) {
            name = b->statement;
        } else if (const auto* d = m.as<fe::Describe>(); d && d->kind == 'S') {
            name = d->name;
        } else if (const auto* p = m.as<fe::Parse>()) {
            name = p->statement;
            defines = true;
        }
        if (name.empty() || std::find(defined.begin(), defined.end(), name) != defined.end())
            continue;
        auto it = link.state.statements.find(name);
        if (defines) {
            defined.push_back(name);
            // The client defines this name now; a stale copy here would clash.
            if (it != link.state.statements.end()) {
                hidden_close(link, hidden_, name, inline_hidden);
                link.state.statements.erase(it);
                parsed = true;
            }
            continue;
        }
        const auto* ps = state_.statement(name);
        if (!ps && it != link.state.statements.end()) {
            // This client has no statement of that name, but the connection
            // has one: another client's (transaction pooling), or the
            // session's own that it closed or DEALLOCATEd on another server.
            // The server must say it is gone (26000).
            hidden_close(link, hidden_, name, inline_hidden);
            link.state.statements.erase(it);
            parsed = true;
            continue;
        }
        if (!ps || (it != link.state.statements.end() && it->second == ps->version))
            continue;
        replay_parse(link, hidden_, name, *ps, it != link.state.statements.end(), inline_hidden);
        parsed = true;
    }
    if (parsed && !inline_hidden) {
        fe::build_sync(hidden_);
        link.push(Segment::hidden);
    }
}

}  // namespace pgswitch::proxy
