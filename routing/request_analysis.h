// What one client request means for routing (SPEC §3): which of its
// statements write, open or end transactions, change session state or name
// prepared statements, read from the session's state. Pure: the caller
// passes the classifier in; the session, /routing/explain and the tests all
// use this one summary.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/container/small_vector.hpp>

#include "pg_wire/request.h"
#include "routing/classifier.h"
#include "routing/session_state.h"

namespace pgswitch::routing {

/// Classifies one SQL text (a Query's or a Parse's), e.g. classify_cached().
using ClassifyFn = std::function<std::shared_ptr<const Classification>(std::string_view sql)>;

struct RequestFacts {
    /// Classification of each Query and Parse text, in message order (null
    /// for a message that did not parse).
    /// (Inline for the common one or two: no allocation per request.)
    boost::container::small_vector<std::shared_ptr<const Classification>, 2> classes;
    /// Must run on the primary: a write, a pin, currval(), an unknown
    /// statement (the primary answers "does not exist" as the server would),
    /// a fast-path call, a message that did not parse.
    bool must_primary = false;
    /// Executes something that can write: only such a request moves the
    /// session's read-your-writes position (not SET, SHOW, PREPARE, a Parse,
    /// a Describe or a read).
    bool may_write = false;
    bool hint_primary = false;
    bool hint_replica = false;
    bool pins = false;
    bool uses_currval = false;
    /// pg_backend_pid(), SHOW transaction_read_only...: the session's primary
    /// connection answers (Classification::session_identity).
    bool session_identity = false;
    bool tx_begin = false;            ///< opens a transaction that must run on the primary
    bool tx_begin_read_only = false;  ///< opens a read-only (not serializable) transaction
    bool tx_end = false;              ///< COMMIT/ROLLBACK/PREPARE TRANSACTION (no AND CHAIN)
    /// Every statement is SET/RESET/DISCARD/PREPARE/DEALLOCATE or a
    /// transaction end: runs where the session already is.
    bool bookkeeping_only = true;
    /// Uses the unnamed statement (Bind or Describe of "") without parsing it
    /// first: it must go where the last unnamed Parse went.
    bool uses_unnamed_without_parse = false;
    /// Parses the unnamed statement.
    bool parses_unnamed = false;
    bool copy_from = false;  ///< COPY ... FROM STDIN: copy-in mode follows
    /// Runs DDL (StatementInfo::changes_schema): once committed, every
    /// session's reads must see it (a missing table or a changed column
    /// fails statements, where stale rows would only be old).
    bool changes_schema = false;
    bool show_lsn = false;                   ///< SHOW pgswitch.lsn (answered by pgswitch)
    std::optional<std::string> set_min_lsn;  ///< SET pgswitch.min_lsn = '...'
    /// Functions its statements call that the catalog does not know.
    std::vector<std::string> unknown_functions;

    /// One statement the request runs (a Query's, or the one an Execute's
    /// portal was bound to), in order: what record_request() applies to the
    /// session when it is sent.
    struct Executed {
        std::size_t message;  ///< index of the Query or Execute message
        std::shared_ptr<const Classification> cls;
        std::string_view text;  ///< its SQL (in the request, or the session's statement)
    };
    boost::container::small_vector<Executed, 2> executed;

    /// Runs only on the primary as far as routing is concerned.
    [[nodiscard]] bool needs_primary() const noexcept { return must_primary || tx_begin || uses_currval || pins; }
};

/// Summarizes `request` for routing, given what the session knows of its
/// prepared statements and transaction defaults. With `catalog_generation`
/// (the catalog `classify` uses), a named statement classified against that
/// catalog when it was parsed (PreparedStatement::classification) is not
/// classified again.
[[nodiscard]] RequestFacts analyze_request(const wire::Request& request, const SessionState& session,
                                           const ClassifyFn& classify,
                                           std::optional<std::uint64_t> catalog_generation = std::nullopt);

}  // namespace pgswitch::routing
