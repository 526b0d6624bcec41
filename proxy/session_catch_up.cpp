// ClientSession's catch-up step: what a server connection lacks of the
// session's state before a request runs there (DISCARD ALL, SET replay, SQL
// PREPAREs, lazily prepared named statements), and the check that a
// statement the client Described looks the same on a server it is new to.
#include <algorithm>

#include <boost/container/small_vector.hpp>

#include "client_session.h"
#include "log.h"
#include "pg_wire/frontend.h"
#include "routing/catch_up_plan.h"
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

/// Named statements a request uses (Bind, Describe of a statement) that it
/// does not Parse itself before using them.
template <class Fn>
void for_each_used_statement(const wire::Request& request, Fn&& fn)
{
    boost::container::small_vector<std::string_view, 4> parsed;
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
    return state_.any_shown() && !statements_to_check(link, request).empty();
}

awaitable<bool> ClientSession::check_statements(ServerLink& link, const wire::Request& request)
{
    const auto todo = statements_to_check(link, request);
    if (todo.empty())
        co_return true;
    std::string out;
    // The statements' texts resolve names by the session's search_path.
    if (const auto script = routing::settings_script_for(state_, link.state); !script.empty()) {
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
    out_.hidden.clear();
    // In the middle of an unfinished extended request (the client ended the
    // last one with Flush, as asyncpg's prepare does) no Query or Sync may be
    // slipped in: a Sync would end the implicit transaction and its portals.
    // Statements can still be prepared, their replies cut out one by one.
    const bool inline_hidden = link.unsynced;
    const auto plan = routing::plan_catch_up(request, facts, state_, link.state, inline_hidden);
    if (!plan.script.empty()) {
        fe::build_query(out_.hidden, plan.script);
        link.push(Segment::hidden);
    }
    for (const auto& step : plan.statements) {
        if (step.kind == routing::StatementStep::Kind::close)
            hidden_close(link, out_.hidden, step.name, inline_hidden);
        else
            replay_parse(link, out_.hidden, step.name, *step.statement, step.close_first, inline_hidden);
    }
    if (!plan.statements.empty() && !inline_hidden) {
        fe::build_sync(out_.hidden);
        link.push(Segment::hidden);
    }
}

}  // namespace pgswitch::proxy
