#include "server_prepared.h"

namespace pgswitch::routing {

namespace {

// Text stored for a statement whose text we cannot name (the session's
// LinkState version no longer matches any statement it knows): no session's
// Parse can equal it, so the next borrower closes it first.
const ServerPrepared::Statement unknown_statement{std::string("\0unknown", 8), {}};

}  // namespace

LinkState borrow_link_state(const ServerPrepared& server, const SessionState& session)
{
    LinkState link;
    // DISCARD ALL of the session's past is not the connection's business: it
    // starts from the session's present epoch.
    link.discard_epoch = session.discard_epoch();
    link.settings_version = (server.settings_dirty || session.has_settings()) ? unknown_settings
                                                                              : session.settings_version();
    for (const auto& [name, st] : server.statements) {
        const auto* mine = session.statement(name);
        const bool same = mine && mine->query == st.query && mine->param_types == st.param_types;
        link.statements[name] = same ? mine->version : foreign_version;
    }
    for (const auto& [name, text] : server.sql_prepared) {
        const auto* mine = session.sql_prepared(name);
        link.sql_prepared[name] = (mine && mine->prepare_text == text) ? mine->version : foreign_version;
    }
    return link;
}

ServerPrepared return_link_state(const LinkState& link, const SessionState& session, const ServerPrepared& before)
{
    ServerPrepared out;
    for (const auto& [name, version] : link.statements) {
        if (version == foreign_version) {
            auto it = before.statements.find(name);
            out.statements[name] = it != before.statements.end() ? it->second : unknown_statement;
            continue;
        }
        const auto* mine = session.statement(name);
        if (mine && mine->version == version)
            out.statements[name] = {mine->query, mine->param_types};
        else
            out.statements[name] = unknown_statement;
    }
    for (const auto& [name, version] : link.sql_prepared) {
        if (version == foreign_version) {
            auto it = before.sql_prepared.find(name);
            out.sql_prepared[name] = it != before.sql_prepared.end() ? it->second : unknown_statement.query;
            continue;
        }
        const auto* mine = session.sql_prepared(name);
        out.sql_prepared[name] = (mine && mine->version == version) ? mine->prepare_text : unknown_statement.query;
    }
    // The session's SETs are on the connection once catch_up() ran
    // (settings_version no longer unknown); before that, what was there stays.
    out.settings_dirty = session.has_settings() || (before.settings_dirty && link.settings_version == unknown_settings);
    return out;
}

}  // namespace pgswitch::routing
