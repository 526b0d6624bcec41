// What is really prepared and SET on one pooled server connection, whichever
// session did it, and its translation to and from a session's LinkState
// (transaction pooling, issue 5). Pure bookkeeping: no I/O.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>

#include "session_state.h"

namespace pgswitch::routing {

/// The server-side state a pooled connection carries between borrowers.
/// Two clients may use the same statement name ("S_1") for different texts:
/// the text decides whether a borrower may use what is there, never the name.
struct ServerPrepared {
    struct Statement {
        std::string query;
        std::string param_types;  ///< raw Int32 OIDs, as in the Parse
        bool operator==(const Statement&) const = default;
    };
    std::map<std::string, Statement, std::less<>> statements;      ///< protocol-level named statements
    std::map<std::string, std::string, std::less<>> sql_prepared;  ///< SQL PREPARE name → its PREPARE text
    /// Some session SET something here that a RESET ALL has not undone.
    bool settings_dirty = false;
};

/// LinkState version meaning "a statement of that name exists on the server,
/// but not (known to be) the session's": catch_up() closes it before use.
/// Sessions number versions from 1, so 0 never matches.
inline constexpr std::uint64_t foreign_version = 0;
/// settings_version meaning "unknown settings": catch_up() sends RESET ALL
/// (and the session's SETs) before the first request.
inline constexpr std::uint64_t unknown_settings = std::numeric_limits<std::uint64_t>::max();

/// The LinkState a session starts with on a borrowed connection: names whose
/// text matches the session's statement get its version, the others are
/// foreign; settings are unknown when the connection or the session has any.
[[nodiscard]] LinkState borrow_link_state(const ServerPrepared& server, const SessionState& session);

/// What is on the connection after the session used it and gives it back.
/// Names the session closed (absent from `link`) are gone; foreign names keep
/// what `before` said; names the session prepared carry its text.
[[nodiscard]] ServerPrepared return_link_state(const LinkState& link, const SessionState& session,
                                               const ServerPrepared& before);

}  // namespace pgswitch::routing
