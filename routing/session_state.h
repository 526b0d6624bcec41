// What a client session has told the database that must hold on every server
// it uses (SPEC §3 "Session state follows the session"): SET values, prepared
// statements (protocol and SQL), pins and read-your-writes position.
// Pure bookkeeping: the proxy asks it what a server connection is missing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "routing/classifier.h"

namespace pgswitch::routing {

/// A prepared statement's description as a server gave it: the bodies of the
/// ParameterDescription and of the RowDescription ("" for NoData) answering
/// a Describe of the statement. Equal bytes mean the same parameter and
/// column types (OIDs are the same on every server of a physical cluster).
struct StatementShape {
    std::string parameters;
    std::string rows;
    bool operator==(const StatementShape&) const = default;
};

/// A protocol-level named prepared statement, as the client Parsed it.
struct PreparedStatement {
    std::string query;
    std::string param_types;  ///< raw Int32 OIDs from the Parse
    std::int16_t param_count = 0;
    bool write = true;          ///< classification of `query`
    std::uint64_t version = 0;  ///< bumps when the name is re-Parsed after a Close
    /// What the client was told of it by a Describe of the statement, when it
    /// asked: a copy on another server must agree before it runs the
    /// client's Bind (a client decodes rows with this description).
    std::optional<StatementShape> shown;
    /// How `query` was classified when it was parsed, and against which
    /// catalog generation (reused while the catalog is the same).
    std::shared_ptr<const Classification> classification;
    std::uint64_t classified_with = 0;
};

/// A statement prepared with SQL PREPARE.
struct SqlPrepared {
    std::string prepare_text;  ///< the whole "PREPARE name AS ..." statement, to replay
    bool write = true;
    std::uint64_t version = 0;
};

/// What one server connection has of the session's state (owned by the proxy,
/// one per connection, compared against SessionState to find what is missing).
struct LinkState {
    std::uint64_t settings_version = 0;
    std::uint64_t discard_epoch = 0;
    std::map<std::string, std::uint64_t, std::less<>> statements;    ///< name → version
    std::map<std::string, std::uint64_t, std::less<>> sql_prepared;  ///< name → version
};

class SessionState {
public:
    // ---- SET / RESET / DISCARD -------------------------------------------------
    /// Records `SET name ...` (the statement's own text, replayed verbatim).
    void record_set(std::string name, std::string statement);
    void record_reset(std::string_view name);
    void record_reset_all();
    /// DISCARD ALL: settings, prepared statements and pins are gone everywhere.
    void record_discard_all();
    [[nodiscard]] std::uint64_t settings_version() const noexcept { return settings_version_; }
    [[nodiscard]] std::uint64_t discard_epoch() const noexcept { return discard_epoch_; }
    /// A simple query that brings a connection's settings up to date:
    /// "RESET ALL; SET ...; SET ..." (RESET ALL returns to the login values,
    /// so the result is the same whatever the connection had before).
    [[nodiscard]] std::string settings_script() const;
    [[nodiscard]] bool has_settings() const noexcept { return !settings_.empty(); }
    /// The value last SET for a name (e.g. default_transaction_read_only).
    [[nodiscard]] std::optional<std::string> setting_value(std::string_view name) const;

    // ---- protocol prepared statements ---------------------------------------
    void record_parse(std::string name, PreparedStatement s);
    void record_close_statement(std::string_view name);
    /// What a Describe of statement `name` showed the client.
    void record_shown(std::string_view name, StatementShape shape);
    [[nodiscard]] const PreparedStatement* statement(std::string_view name) const;
    /// Some statement was Described to the client (then copies elsewhere are checked first).
    [[nodiscard]] bool any_shown() const noexcept { return any_shown_; }
    /// The unnamed statement as last Parsed (a later Bind of "" without a
    /// Parse runs it); a simple Query destroys it on the server.
    void record_unnamed(PreparedStatement s) { unnamed_ = std::move(s); }
    /// The same from a Parse's fields, reusing the last unnamed statement's
    /// storage (drivers re-parse the unnamed statement on every query).
    void record_unnamed(std::string_view query, std::string_view param_types, std::int16_t param_count, bool write)
    {
        if (!unnamed_)
            unnamed_.emplace();
        unnamed_->query.assign(query);
        unnamed_->param_types.assign(param_types);
        unnamed_->param_count = param_count;
        unnamed_->write = write;
        unnamed_->version = 0;
        unnamed_->shown.reset();
    }
    void forget_unnamed() noexcept { unnamed_.reset(); }
    [[nodiscard]] const PreparedStatement* unnamed_statement() const noexcept
    {
        return unnamed_ ? &*unnamed_ : nullptr;
    }

    // ---- SQL PREPARE --------------------------------------------------------
    void record_sql_prepare(std::string name, std::string prepare_text, bool write);
    void record_deallocate(std::string_view name);
    void record_deallocate_all();
    [[nodiscard]] const SqlPrepared* sql_prepared(std::string_view name) const;

    /// Brings a link's view of discards and settings up to date and says
    /// what to send first: a DISCARD ALL when the session discarded since,
    /// then the settings script when the link is behind.
    struct Catchup {
        bool discard_all = false;
        std::optional<std::string> settings;  ///< simple-query text, when behind
    };
    [[nodiscard]] Catchup catch_up(LinkState& link) const;

    /// Records what statement `st` (its own text is `text`) does to the
    /// session, sent on a connection whose state is `link` (which then has it
    /// too); `on_primary` says whether that connection is the primary's (pins
    /// only hold there). True when it may change what the catalog lists
    /// (CREATE/ALTER/DROP FUNCTION or PROCEDURE, UNLOGGED tables): it is stale.
    bool apply_effects(const StatementInfo& st, std::string_view text, LinkState& link, bool on_primary);
    /// The transaction defaults a login started with (startup parameters);
    /// RESET ALL and DISCARD ALL return to them.
    void set_login_defaults(bool read_only, bool serializable) noexcept;

    // ---- transaction defaults (SET default_transaction_*, startup parameters) --
    /// default_transaction_read_only is on: BEGIN opens read-only transactions.
    bool default_read_only = false;
    /// default_transaction_isolation is serializable: a standby refuses those.
    bool default_serializable = false;

    // ---- routing constraints -------------------------------------------------
    bool pinned_to_primary = false;
    bool wrote = false;
    std::optional<std::uint64_t> min_lsn;  ///< read-your-writes position (lsn mode)
    /// Raises min_lsn to at least `lsn` (never lowers it).
    void require_lsn(std::uint64_t lsn) noexcept
    {
        if (!min_lsn || *min_lsn < lsn)
            min_lsn = lsn;
    }

private:
    bool any_shown_ = false;  ///< set by record_shown(), never cleared (a cheap "maybe")
    bool login_read_only_ = false;
    bool login_serializable_ = false;
    // name → SET statement, in first-SET order (replay order matters little,
    // but a stable order keeps scripts comparable in tests and logs).
    std::vector<std::pair<std::string, std::string>> settings_;
    std::uint64_t settings_version_ = 0;
    std::uint64_t discard_epoch_ = 0;
    std::uint64_t next_version_ = 0;
    std::map<std::string, PreparedStatement, std::less<>> statements_;
    std::optional<PreparedStatement> unnamed_;
    std::map<std::string, SqlPrepared, std::less<>> sql_prepared_;
};

}  // namespace pgswitch::routing
