// What a server connection lacks of the session's state before a request
// runs there (SPEC §3 "Session state follows the session"): a DISCARD ALL
// and the SET replay, SQL PREPAREs the request EXECUTEs, protocol-level
// named statements it uses (prepared lazily where they are used), and stale
// names on the connection that must go first. Pure: it marks what it plans
// as sent in the connection's LinkState; the proxy turns the plan into
// messages and books their replies.
#pragma once

#include <string>
#include <vector>

#include "pg_wire/request.h"
#include "routing/request_analysis.h"
#include "routing/session_state.h"

namespace pgswitch::routing {

/// One protocol-level step before the request: Close a name, or Parse the
/// session's statement under it.
struct StatementStep {
    enum class Kind : std::uint8_t { close, parse };
    Kind kind = Kind::parse;
    std::string name;
    const PreparedStatement* statement = nullptr;  ///< parse: the session's (lives in SessionState)
    bool close_first = false;                      ///< parse: a stale copy of the name is there
};

struct CatchUpPlan {
    /// A simple query run first: "DISCARD ALL; RESET ALL; SET ...; DEALLOCATE ...;
    /// PREPARE ..." ("" when nothing).
    std::string script;
    std::vector<StatementStep> statements;
};

/// The plan for `request` on a connection whose state is `link` (updated as
/// if the plan ran). `inside_unsynced`: the connection is in the middle of an
/// unfinished extended request, where no Query or Sync may be slipped in:
/// only the statement steps are planned (their replies cut out one by one).
[[nodiscard]] CatchUpPlan plan_catch_up(const wire::Request& request, const RequestFacts& facts,
                                        const SessionState& session, LinkState& link, bool inside_unsynced);

/// The settings part alone: "DISCARD ALL; RESET ALL; SET ..." for what `link`
/// lacks ("" when nothing), marked sent.
[[nodiscard]] std::string settings_script_for(const SessionState& session, LinkState& link);

/// `name` as an SQL identifier, double-quoted.
[[nodiscard]] std::string quote_ident(std::string_view name);

}  // namespace pgswitch::routing
