// Logical replication, sans I/O: the CopyData messages of START_REPLICATION
// (Protocol → Streaming Replication Protocol), the pgoutput plugin's messages
// in protocol version 1 (Protocol → Logical Replication Message Formats), and
// ChangeTracker, which turns them into "these relations changed, decoding has
// reached LSN X" for the result cache. parse_*() return views into the bytes
// given; nothing throws on bad input, every failure is an errc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "errc.h"
#include "tags.h"

namespace pgswitch::wire {

/// A WAL position, as the protocol sends it (Int64). Text form "16/B374D848":
/// routing::parse_lsn() / routing::format_lsn().
using Lsn = std::uint64_t;
/// A relation or type OID (unsigned on the server; sent as Int32).
using Oid = std::uint32_t;
/// A server timestamp: microseconds since 2000-01-01 00:00 UTC.
using PgTimestamp = std::int64_t;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
inline constexpr std::int64_t pg_epoch_offset_us = 946'684'800'000'000;
constexpr PgTimestamp pg_timestamp_from_unix_us(std::int64_t unix_us) noexcept
{
    return unix_us - pg_epoch_offset_us;
}

namespace repl {

/// XLogData: a piece of WAL; for a logical slot, exactly one plugin message.
struct XLogData {
    Lsn wal_start = 0;  ///< where `data` starts (0 for some plugin messages)
    Lsn wal_end = 0;    ///< the server's current end of WAL
    PgTimestamp send_time = 0;
    std::string_view data;
};
/// Primary keepalive: the server's end of WAL; reply_requested asks for a
/// StandbyStatusUpdate now (else wal_sender_timeout ends the connection).
struct PrimaryKeepalive {
    Lsn wal_end = 0;
    PgTimestamp send_time = 0;
    bool reply_requested = false;
};
using ServerMessage = std::variant<XLogData, PrimaryKeepalive>;

/// The client's report. For a logical slot, `flushed` is what the server
/// may forget: WAL before it is not sent again on a restart.
struct StandbyStatusUpdate {
    Lsn written = 0;
    Lsn flushed = 0;
    Lsn applied = 0;
    PgTimestamp send_time = 0;
    bool reply_requested = false;
};

/// The body of one server CopyData: XLogData or PrimaryKeepalive; any other
/// type byte is unexpected_tag.
[[nodiscard]] result<ServerMessage> parse_server_message(std::string_view copy_data);

/// Appends the StandbyStatusUpdate as CopyData contents (no framing).
void build_standby_status_update_body(std::string& out, const StandbyStatusUpdate& s);
/// Appends a whole CopyData message ('d', length, body) carrying it.
void build_standby_status_update(std::string& out, const StandbyStatusUpdate& s);

/// An identifier in double quotes, inner quotes doubled: safe in any command.
[[nodiscard]] std::string quote_identifier(std::string_view name);
/// "16/B374D848", the form replication commands take.
[[nodiscard]] std::string format_lsn(Lsn lsn);

/// CREATE_REPLICATION_SLOT for a temporary logical slot of `plugin` that exports
/// no snapshot (the slot is dropped when the connection ends). Its result row:
/// slot_name, consistent_point, snapshot_name, output_plugin.
[[nodiscard]] std::string create_temporary_slot_command(std::string_view slot, std::string_view plugin);
/// START_REPLICATION for a test_decoding slot: transaction ids on (COMMIT
/// lines must match their BEGIN), transactions without decoded changes skipped.
[[nodiscard]] std::string start_test_decoding_command(std::string_view slot, Lsn start);

}  // namespace repl

namespace pgoutput {

/// A TupleData, checked and skipped, not decoded: the cache needs only the
/// relation of a change. `raw` is the whole TupleData, column count included.
struct Tuple {
    std::int16_t column_count = 0;
    std::string_view raw;
};

struct Begin {
    Lsn final_lsn = 0;  ///< the commit record's LSN
    PgTimestamp commit_time = 0;
    std::uint32_t xid = 0;
};
struct Commit {
    std::uint8_t flags = 0;  ///< unused by the server (always 0)
    Lsn commit_lsn = 0;      ///< equals Begin::final_lsn
    Lsn end_lsn = 0;         ///< end of the commit record: decoding has reached here
    PgTimestamp commit_time = 0;
};
/// The transaction was replicated from elsewhere (a subscriber's origin).
struct Origin {
    Lsn commit_lsn = 0;  ///< on the origin server
    std::string_view name;
};
struct RelationColumn {
    bool key = false;  ///< part of the replica identity
    std::string_view name;
    Oid type_oid = 0;
    std::int32_t type_modifier = 0;
};
/// Sent before the first change to a relation in this session, and again after
/// its definition changes (rename, ALTER TABLE).
struct Relation {
    Oid oid = 0;
    std::string_view schema;  ///< empty for pg_catalog
    std::string_view name;
    char replica_identity = 'd';  ///< 'd' default, 'n' nothing, 'f' full, 'i' index
    std::vector<RelationColumn> columns;
};
/// A column type's name, sent before a Relation that uses a non-builtin type.
struct Type {
    Oid oid = 0;
    std::string_view schema;
    std::string_view name;
};
struct Insert {
    Oid relation = 0;
    Tuple new_tuple;
};
/// Which old tuple an Update or Delete carries.
enum class OldKind : char {
    none = 0,                                    ///< Update only: key unchanged
    key = static_cast<char>(TupleMarker::key),   ///< replica identity columns
    full = static_cast<char>(TupleMarker::old),  ///< REPLICA IDENTITY FULL
};
struct Update {
    Oid relation = 0;
    OldKind old_kind = OldKind::none;
    Tuple old_tuple;  ///< empty when old_kind is none
    Tuple new_tuple;
};
struct Delete {
    Oid relation = 0;
    OldKind old_kind = OldKind::key;
    Tuple old_tuple;
};
struct Truncate {
    static constexpr std::uint8_t cascade = 1;
    static constexpr std::uint8_t restart_identity = 2;
    std::uint8_t options = 0;
    std::vector<Oid> relations;
};
/// pg_logical_emit_message(); no effect on tables.
struct DecodingMessage {
    bool transactional = false;
    Lsn lsn = 0;
    std::string_view prefix;
    std::string_view content;
};

using Message = std::variant<Begin, Commit, Origin, Relation, Type, Insert, Update, Delete, Truncate, DecodingMessage>;

/// One pgoutput message (an XLogData's data). Allocates only for Relation
/// columns and Truncate OIDs, never more than the bytes could hold.
[[nodiscard]] result<Message> parse_message(std::string_view data);

/// What one committed transaction changed.
struct CommittedChanges {
    std::uint32_t xid = 0;
    Lsn commit_lsn = 0;
    Lsn end_lsn = 0;
    std::vector<Oid> relations;  ///< inserted into, updated, deleted from or truncated: sorted, unique
    std::vector<Oid> truncated;  ///< the truncated ones among them: sorted, unique
};

/// Where a relation OID points, from the last Relation message for it.
struct RelationName {
    std::string schema;  ///< "pg_catalog" when the server sent it empty
    std::string name;
};

/// Fed every message in stream order, reports each commit's changed relations
/// and how far decoding has got. Out-of-order input (a change outside a
/// transaction, Begin inside one, Commit without one or for another LSN) is
/// an error: the stream cannot be trusted and the cache must be flushed.
class ChangeTracker {
public:
    /// The transaction's changes on Commit, nullopt for other messages.
    [[nodiscard]] result<std::optional<CommittedChanges>> feed(const Message& m);
    /// A keepalive's wal_end. Outside a transaction every commit before it
    /// has been sent, so decoding has reached it; inside one it has not.
    void keepalive(Lsn wal_end) noexcept;

    /// Every transaction that committed before this LSN has been reported.
    /// Also what to confirm as flushed in StandbyStatusUpdate.
    [[nodiscard]] Lsn decoded_up_to() const noexcept { return decoded_up_to_; }
    [[nodiscard]] bool in_transaction() const noexcept { return open_.has_value(); }
    /// nullptr when no Relation message named this OID yet.
    [[nodiscard]] const RelationName* relation(Oid oid) const noexcept;

private:
    [[nodiscard]] result<std::optional<CommittedChanges>> commit(const Commit& c);
    [[nodiscard]] boost::system::error_code change(Oid relation, bool truncated);
    void advance(Lsn lsn) noexcept;

    std::optional<Begin> open_;
    std::vector<Oid> changed_;
    std::vector<Oid> truncated_;
    std::unordered_map<Oid, RelationName> relations_;
    Lsn decoded_up_to_ = 0;
};

/// One server CopyData applied to a tracker.
struct StreamStep {
    std::optional<CommittedChanges> committed;
    bool reply_requested = false;  ///< a keepalive asked for a StandbyStatusUpdate now
};
/// Parses a server CopyData body, then its pgoutput message, into `tracker`.
[[nodiscard]] result<StreamStep> apply_copy_data(ChangeTracker& tracker, std::string_view copy_data);

}  // namespace pgoutput

}  // namespace pgswitch::wire
