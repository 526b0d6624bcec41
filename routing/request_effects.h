// What a request does to the session's state once it is sent (SPEC §3
// "Session state follows the session"): the SETs, PREPAREs, DISCARDs and pins
// its statements run, the named and unnamed statements it parses and closes,
// and its writes, recorded in SessionState and in the state of the
// connection it went to. Pure: the proxy books the replies it now expects
// from what this returns.
#pragma once

#include <cstdint>

#include <boost/container/small_vector.hpp>

#include "pg_wire/request.h"
#include "routing/request_analysis.h"
#include "routing/session_state.h"

namespace pgswitch::routing {

struct RequestEffects {
    /// Per message of the request: the version of the named statement a
    /// Parse defined or a Describe of a statement asked about, as it was at
    /// that message (no_version for other messages and unknown names).
    static constexpr std::uint64_t no_version = ~std::uint64_t{0};
    boost::container::small_vector<std::uint64_t, 6> versions;
    bool catalog_stale = false;   ///< DDL that may change which functions write (refresh the catalog)
    bool forgot_unnamed = false;  ///< a simple Query destroyed the unnamed statement
};

/// Records `request` (summarized by `facts`) as sent on a connection whose
/// state is `link`; `on_primary`: that connection is the primary's (pins
/// hold only there). `catalog_generation`: the catalog the request's
/// statements were classified with, kept with the statements it parses.
RequestEffects record_effects(const wire::Request& request, const RequestFacts& facts, SessionState& session,
                              LinkState& link, bool on_primary, std::uint64_t catalog_generation);

}  // namespace pgswitch::routing
