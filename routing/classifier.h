// Statement classifier: SQL text -> what each statement means for routing (SPEC §3).
// Pure: libpg_query parses, nothing here does I/O, keeps state or throws.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "routing/function_catalog.h"

namespace pgswitch::routing {

/// Broad statement kind, for the router's special cases and for logs.
enum class StatementKind {
    select,       ///< SELECT, VALUES, TABLE
    show,         ///< SHOW
    explain,      ///< EXPLAIN [ANALYZE]
    dml,          ///< INSERT, UPDATE, DELETE, MERGE
    copy_to,      ///< COPY ... TO
    copy_from,    ///< COPY ... FROM (the client then sends CopyData)
    transaction,  ///< BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION...
    session,      ///< SET, RESET, DISCARD
    prepare,      ///< SQL PREPARE
    execute,      ///< SQL EXECUTE
    deallocate,   ///< SQL DEALLOCATE
    cursor,       ///< DECLARE, FETCH, MOVE, CLOSE
    listen,       ///< LISTEN, UNLISTEN, NOTIFY
    call,         ///< CALL, DO
    other,        ///< DDL, LOCK, VACUUM, GRANT, ... (always writes)
    invalid,      ///< did not parse
};

[[nodiscard]] std::string_view to_string(StatementKind k) noexcept;

/// Transaction control done by one statement.
enum class Tx {
    none,
    begin,                 ///< BEGIN / START TRANSACTION [READ WRITE]
    begin_read_only,       ///< BEGIN / START TRANSACTION ... READ ONLY: may run on a replica
    commit,                ///< COMMIT / END (see StatementInfo::tx_chain)
    rollback,              ///< ROLLBACK / ABORT (see StatementInfo::tx_chain)
    savepoint_or_release,  ///< SAVEPOINT, RELEASE, ROLLBACK TO: stays inside the transaction
    prepare_transaction,   ///< PREPARE TRANSACTION: ends the transaction block (two-phase commit)
};

[[nodiscard]] std::string_view to_string(Tx t) noexcept;

/// Session state a statement changes; the router replays these on every server the
/// session uses (SPEC §3 "Session state follows the session").
enum class SessionEffect {
    none,
    set,                     ///< SET x / SET SESSION x / SET SESSION CHARACTERISTICS
    reset,                   ///< RESET x, SET x TO DEFAULT
    reset_all,               ///< RESET ALL
    discard_all,             ///< DISCARD ALL: also ends pins and drops prepared statements
    discard_other,           ///< DISCARD PLANS / SEQUENCES / TEMP
    set_transaction_scoped,  ///< SET LOCAL, SET TRANSACTION: dies with the transaction
};

[[nodiscard]] std::string_view to_string(SessionEffect e) noexcept;

/// Routing hint from a leading `/* pgswitch:primary */` or `/* pgswitch:replica */`.
enum class Hint { none, primary, replica };

[[nodiscard]] std::string_view to_string(Hint h) noexcept;

/// A relation a statement names, as the parser gives it (unquoted names folded to
/// lower case, quoted ones kept); `schema` is empty when unqualified. It may be a
/// CTE's name: resolving it to a table is the caller's job.
struct RelationName {
    std::string schema;
    std::string name;
    friend bool operator==(const RelationName&, const RelationName&) = default;
};

/// One statement of a query string.
struct StatementInfo {
    StatementKind kind = StatementKind::other;
    /// Must run on the primary. False for transaction control, SET/RESET/DISCARD, PREPARE,
    /// FETCH/MOVE/CLOSE: the router places those by session state, not by this flag.
    bool write = true;
    Tx tx = Tx::none;
    /// COMMIT AND CHAIN / ROLLBACK AND CHAIN: a new transaction with the same
    /// characteristics (read-only or not) starts at once.
    bool tx_chain = false;
    /// BEGIN / START TRANSACTION ISOLATION LEVEL SERIALIZABLE: a hot standby
    /// refuses those, read-only or not.
    bool serializable = false;
    SessionEffect session = SessionEffect::none;
    /// GUC name for SET/RESET/SHOW, lower-case ("search_path", "default_transaction_read_only").
    /// SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY/WRITE is reported as
    /// "default_transaction_read_only", its other forms as "default_transaction_isolation".
    std::string set_name;
    /// SET's value as written, several values joined with ", " ("on", "a, public"); empty
    /// for RESET and DEFAULT. Enough to tell whether default_transaction_read_only turns on.
    std::string set_value;
    /// Keeps the session on the primary from now on (SPEC §3): temporary tables, sequences,
    /// views or functions; session advisory locks; LISTEN; DECLARE ... WITH HOLD.
    bool pins_primary = false;
    bool unlisten = false;                       ///< UNLISTEN (one channel or *)
    std::optional<std::string> prepare_name;     ///< SQL PREPARE name AS ...
    bool prepared_statement_is_write = false;    ///< class of PREPARE's inner statement
    std::optional<std::string> execute_name;     ///< SQL EXECUTE name; `write` covers only its arguments
    std::optional<std::string> deallocate_name;  ///< DEALLOCATE [PREPARE] name
    bool deallocate_all = false;                 ///< DEALLOCATE [PREPARE] ALL
    /// Calls currval()/lastval(): the answer lives on the server that ran the session's
    /// nextval(), so the router should follow the session's sequence use.
    bool uses_currval = false;
    Hint hint = Hint::none;  ///< leading comment of this statement's text
    /// Answers about the session's own connection rather than the data:
    /// pg_backend_pid() (the pid the client was given is its primary
    /// connection's), SHOW / current_setting('transaction_read_only') (on on
    /// every standby). Such a read runs on the primary.
    bool session_identity = false;
    /// A literal value decided part of this (set_config's is_local,
    /// current_setting's name): not to be cached under a literal-free key.
    bool literal_sensitive = false;
    /// DDL: CREATE/ALTER/DROP/COMMENT/GRANT... (not TRUNCATE, VACUUM, LOCK):
    /// it changes what later statements may name.
    bool changes_schema = false;
    /// Names an UNLOGGED relation the catalog lists: a standby cannot read
    /// it, so even a read runs on the primary.
    bool unlogged = false;
    /// The relations it names (FROM, JOIN, subqueries, CTEs), each once: what a
    /// cached result of it depends on.
    std::vector<RelationName> relations;
    /// Its result may change with no table changing: a VOLATILE or STABLE
    /// function (or one the catalog cannot vouch for), CURRENT_TIMESTAMP /
    /// CURRENT_USER and the like, TABLESAMPLE. Never served from the result cache.
    bool nondeterministic = false;
    /// Functions it calls that the catalog does not know ("name" or
    /// "schema.name", lower-case): created behind pgswitch's back, to be looked
    /// up before routing. Empty without a complete catalog.
    std::vector<std::string> unknown_functions;
    bool parse_error = false;  ///< the text did not parse; then write is true
    /// This statement's bytes in the classified text, for replaying SET or PREPARE on
    /// another server. Covers the whole text for a parse error.
    std::size_t offset = 0;
    std::size_t length = 0;
};

/// Every statement of one query string, plus what the router asks most.
struct Classification {
    std::vector<StatementInfo> statements;  ///< in text order; empty for an empty query
    bool write = false;                     ///< any statement writes, or the text did not parse
    Hint hint = Hint::none;                 ///< leading comment of the whole text
    bool parse_error = false;
    bool pins_primary = false;        ///< any statement pins
    bool uses_currval = false;        ///< any statement calls currval()/lastval()
    bool has_tx_control = false;      ///< any statement has tx != Tx::none
    bool has_session_effect = false;  ///< any statement has session != SessionEffect::none
    /// Any PREPARE, EXECUTE, DEALLOCATE or UNLISTEN: session bookkeeping for the router.
    bool has_session_bookkeeping = false;
    bool session_identity = false;               ///< any statement has session_identity
    bool literal_sensitive = false;              ///< any statement has literal_sensitive
    bool unlogged = false;                       ///< any statement has unlogged
    std::vector<std::string> unknown_functions;  ///< of every statement, once each

    /// A plain read the router may send anywhere: no write, no transaction or session
    /// effect, no pin, no currval, no prepared-statement bookkeeping.
    [[nodiscard]] bool is_plain_read() const noexcept
    {
        return !write && !pins_primary && !uses_currval && !has_tx_control && !has_session_effect &&
               !has_session_bookkeeping && !session_identity;
    }
};

/// Classifies every statement of `sql` (a simple Query's text, or a Parse's).
///
/// `catalog` lists the database's volatile user functions and config overrides; with
/// nullptr only built-in functions count as writes. Never fails: text that does not parse
/// comes back as one statement with parse_error and write set. Parses once; put a
/// StatementCache in front of it for repeated texts (statement_cache.h).
[[nodiscard]] Classification classify(std::string_view sql, const FunctionCatalog* catalog);

/// The hint of a text whose first token is `/* pgswitch:primary */` or
/// `/* pgswitch:replica */` (spaces inside the comment optional, case-insensitive).
[[nodiscard]] Hint parse_hint(std::string_view sql) noexcept;

}  // namespace pgswitch::routing
