// Streaming replication CopyData, pgoutput protocol version 1, and ChangeTracker.
// Layouts: PostgreSQL 15 docs, Streaming Replication Protocol and Logical
// Replication Message Formats; checked against bytes captured from a server
// (tests/unit/pg_wire/replication_test.cpp).
#include "replication.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "byte_reader.h"
#include "message_writer.h"

namespace pgswitch::wire {
namespace {

result<Lsn> read_lsn(ByteReader& r) noexcept
{
    auto v = r.i64();
    if (!v)
        return v.error();
    return static_cast<Lsn>(*v);
}

result<Oid> read_oid(ByteReader& r) noexcept
{
    auto v = r.i32();
    if (!v)
        return v.error();
    return static_cast<Oid>(*v);
}

/// A Byte1 that is a boolean: only 0 and 1 are meaningful.
result<bool> read_flag(ByteReader& r) noexcept
{
    // result<bool> would also accept an error_code as a bool: name the error side.
    auto v = r.u8();
    if (!v)
        return {boost::system::in_place_error, v.error()};
    if (*v > 1)
        return {boost::system::in_place_error, errc::bad_value};
    return *v == 1;
}

}  // namespace

// ---- streaming replication ------------------------------------------------

namespace repl {
namespace {

result<ServerMessage> parse_xlog_data(ByteReader& r)
{
    XLogData x;
    auto start = read_lsn(r);
    if (!start)
        return start.error();
    auto end = read_lsn(r);
    if (!end)
        return end.error();
    auto time = r.i64();
    if (!time)
        return time.error();
    x.wal_start = *start;
    x.wal_end = *end;
    x.send_time = *time;
    x.data = r.rest();
    return ServerMessage{x};
}

result<ServerMessage> parse_keepalive(ByteReader& r)
{
    auto end = read_lsn(r);
    if (!end)
        return end.error();
    auto time = r.i64();
    if (!time)
        return time.error();
    auto reply = read_flag(r);
    if (!reply)
        return reply.error();
    if (auto ec = r.expect_end())
        return ec;
    return ServerMessage{PrimaryKeepalive{*end, *time, *reply}};
}

void write_status_update(MessageWriter& w, const StandbyStatusUpdate& s)
{
    w.u8(static_cast<std::uint8_t>(Tag::StandbyStatusUpdate))
        .i64(static_cast<std::int64_t>(s.written))
        .i64(static_cast<std::int64_t>(s.flushed))
        .i64(static_cast<std::int64_t>(s.applied))
        .i64(s.send_time)
        .u8(s.reply_requested ? 1 : 0);
}

}  // namespace

result<ServerMessage> parse_server_message(std::string_view copy_data)
{
    ByteReader r(copy_data);
    auto tag = r.u8();
    if (!tag)
        return tag.error();
    switch (static_cast<Tag>(*tag)) {
    case Tag::XLogData:
        return parse_xlog_data(r);
    case Tag::PrimaryKeepalive:
        return parse_keepalive(r);
    default:
        return errc::unexpected_tag;
    }
}

void build_standby_status_update_body(std::string& out, const StandbyStatusUpdate& s)
{
    MessageWriter w(out);
    write_status_update(w, s);
}

void build_standby_status_update(std::string& out, const StandbyStatusUpdate& s)
{
    MessageWriter w(out);
    w.begin(tag_of(fe::Tag::CopyData));
    write_status_update(w, s);
    w.finish();
}

std::string quote_identifier(std::string_view name)
{
    std::string out;
    out.reserve(name.size() + 2);
    out += '"';
    for (const char c : name) {
        if (c == '"')
            out += '"';
        out += c;
    }
    out += '"';
    return out;
}

std::string format_lsn(Lsn lsn)
{
    char buf[24];
    const int n = std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                                static_cast<unsigned>(lsn & 0xFFFF'FFFFu));
    return std::string(buf, static_cast<std::size_t>(n));
}

std::string create_temporary_slot_command(std::string_view slot, std::string_view plugin)
{
    return "CREATE_REPLICATION_SLOT " + quote_identifier(slot) + " TEMPORARY LOGICAL " + quote_identifier(plugin) +
           " NOEXPORT_SNAPSHOT";
}

std::string start_test_decoding_command(std::string_view slot, Lsn start)
{
    return "START_REPLICATION SLOT " + quote_identifier(slot) + " LOGICAL " + format_lsn(start) +
           " (\"include-xids\" '1', \"skip-empty-xacts\" '1')";
}

}  // namespace repl

// ---- pgoutput messages ------------------------------------------------------

namespace pgoutput {
namespace {

/// Checks one TupleData and steps over it. Column values stay undecoded:
/// their types would need the Relation, and the cache does not look at them.
result<Tuple> skip_tuple(ByteReader& r)
{
    const auto start = r.rest();
    auto count = r.count16();
    if (!count)
        return count.error();
    for (std::int16_t i = 0; i < *count; ++i) {
        auto kind = r.u8();
        if (!kind)
            return kind.error();
        switch (static_cast<ColumnKind>(*kind)) {
        case ColumnKind::null:
        case ColumnKind::unchanged_toast:
            break;
        case ColumnKind::text:
        case ColumnKind::binary: {
            // Length then bytes; unlike DataRow, -1 is not NULL here ('n' is).
            auto len = r.i32();
            if (!len)
                return len.error();
            if (*len < 0)
                return errc::bad_value;
            if (auto b = r.bytes(static_cast<std::size_t>(*len)); !b)
                return b.error();
            break;
        }
        default:
            return errc::bad_value;
        }
    }
    return Tuple{*count, start.substr(0, start.size() - r.remaining())};
}

/// A marker byte that must be `expected`, then a TupleData.
result<Tuple> marked_tuple(ByteReader& r, TupleMarker expected)
{
    auto marker = r.u8();
    if (!marker)
        return marker.error();
    if (static_cast<TupleMarker>(*marker) != expected)
        return errc::bad_value;
    return skip_tuple(r);
}

/// The 'K' or 'O' of an Update or Delete; for an Update, 'N' means there is
/// no old tuple and is left unread.
result<OldKind> peek_old_kind(ByteReader& r, bool old_optional)
{
    if (r.empty())
        return errc::truncated;
    const auto marker = static_cast<TupleMarker>(r.rest().front());
    if (marker == TupleMarker::key)
        return OldKind::key;
    if (marker == TupleMarker::old)
        return OldKind::full;
    if (marker == TupleMarker::new_tuple && old_optional)
        return OldKind::none;
    return errc::bad_value;
}

/// Reads the optional (Update) or required (Delete) old tuple.
result<std::pair<OldKind, Tuple>> old_tuple(ByteReader& r, bool old_optional)
{
    auto kind = peek_old_kind(r, old_optional);
    if (!kind)
        return kind.error();
    if (*kind == OldKind::none)
        return std::pair{OldKind::none, Tuple{}};
    auto tuple = marked_tuple(r, static_cast<TupleMarker>(*kind));
    if (!tuple)
        return tuple.error();
    return std::pair{*kind, *tuple};
}

/// Every parser reads through its last field; this wraps the result and
/// rejects leftovers in one place.
template <class T>
result<Message> finished(const ByteReader& r, T&& value)
{
    if (auto ec = r.expect_end())
        return ec;
    return Message{std::forward<T>(value)};
}

result<Message> parse_begin(ByteReader& r)
{
    auto lsn = read_lsn(r);
    if (!lsn)
        return lsn.error();
    auto time = r.i64();
    if (!time)
        return time.error();
    auto xid = r.i32();
    if (!xid)
        return xid.error();
    return finished(r, Begin{*lsn, *time, static_cast<std::uint32_t>(*xid)});
}

result<Message> parse_commit(ByteReader& r)
{
    auto flags = r.u8();
    if (!flags)
        return flags.error();
    auto commit_lsn = read_lsn(r);
    if (!commit_lsn)
        return commit_lsn.error();
    auto end_lsn = read_lsn(r);
    if (!end_lsn)
        return end_lsn.error();
    auto time = r.i64();
    if (!time)
        return time.error();
    return finished(r, Commit{*flags, *commit_lsn, *end_lsn, *time});
}

result<Message> parse_origin(ByteReader& r)
{
    auto lsn = read_lsn(r);
    if (!lsn)
        return lsn.error();
    auto name = r.cstring();
    if (!name)
        return name.error();
    return finished(r, Origin{*lsn, *name});
}

result<RelationColumn> parse_column(ByteReader& r)
{
    auto flags = r.u8();
    if (!flags)
        return flags.error();
    auto name = r.cstring();
    if (!name)
        return name.error();
    auto type = read_oid(r);
    if (!type)
        return type.error();
    auto typmod = r.i32();
    if (!typmod)
        return typmod.error();
    // Bit 1 is the only flag defined ("part of the key"); others are ignored.
    return RelationColumn{(*flags & 1) != 0, *name, *type, *typmod};
}

constexpr bool is_replica_identity(std::uint8_t c) noexcept
{
    return c == 'd' || c == 'n' || c == 'f' || c == 'i';
}

result<Message> parse_relation(ByteReader& r)
{
    Relation rel;
    auto oid = read_oid(r);
    if (!oid)
        return oid.error();
    auto schema = r.cstring();
    if (!schema)
        return schema.error();
    auto name = r.cstring();
    if (!name)
        return name.error();
    auto identity = r.u8();
    if (!identity)
        return identity.error();
    if (!is_replica_identity(*identity))
        return errc::bad_value;
    auto count = r.count16();
    if (!count)
        return count.error();
    rel.oid = *oid;
    rel.schema = *schema;
    rel.name = *name;
    rel.replica_identity = static_cast<char>(*identity);
    // Smallest column: flags, an empty name's NUL, type OID, modifier.
    rel.columns.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 1 + 1 + 4 + 4));
    for (std::int16_t i = 0; i < *count; ++i) {
        auto column = parse_column(r);
        if (!column)
            return column.error();
        rel.columns.push_back(*column);
    }
    return finished(r, std::move(rel));
}

result<Message> parse_type(ByteReader& r)
{
    auto oid = read_oid(r);
    if (!oid)
        return oid.error();
    auto schema = r.cstring();
    if (!schema)
        return schema.error();
    auto name = r.cstring();
    if (!name)
        return name.error();
    return finished(r, Type{*oid, *schema, *name});
}

result<Message> parse_insert(ByteReader& r)
{
    auto oid = read_oid(r);
    if (!oid)
        return oid.error();
    auto tuple = marked_tuple(r, TupleMarker::new_tuple);
    if (!tuple)
        return tuple.error();
    return finished(r, Insert{*oid, *tuple});
}

result<Message> parse_update(ByteReader& r)
{
    auto oid = read_oid(r);
    if (!oid)
        return oid.error();
    auto old = old_tuple(r, true);
    if (!old)
        return old.error();
    auto tuple = marked_tuple(r, TupleMarker::new_tuple);
    if (!tuple)
        return tuple.error();
    return finished(r, Update{*oid, old->first, old->second, *tuple});
}

result<Message> parse_delete(ByteReader& r)
{
    auto oid = read_oid(r);
    if (!oid)
        return oid.error();
    auto old = old_tuple(r, false);
    if (!old)
        return old.error();
    return finished(r, Delete{*oid, old->first, old->second});
}

result<Message> parse_truncate(ByteReader& r)
{
    auto count = r.i32();
    if (!count)
        return count.error();
    if (*count < 0)
        return errc::bad_value;
    // Options are passed on, not checked: unknown bits would not change
    // which relations lost their rows.
    auto options = r.u8();
    if (!options)
        return options.error();
    Truncate t;
    t.options = *options;
    t.relations.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 4));
    for (std::int32_t i = 0; i < *count; ++i) {
        auto oid = read_oid(r);
        if (!oid)
            return oid.error();
        t.relations.push_back(*oid);
    }
    return finished(r, std::move(t));
}

result<Message> parse_decoding_message(ByteReader& r)
{
    auto flags = r.u8();
    if (!flags)
        return flags.error();
    auto lsn = read_lsn(r);
    if (!lsn)
        return lsn.error();
    auto prefix = r.cstring();
    if (!prefix)
        return prefix.error();
    auto content = r.nullable_bytes();
    if (!content)
        return content.error();
    // The server always sends a length; -1 (NULL) is not a valid content.
    if (!*content)
        return errc::bad_value;
    return finished(r, DecodingMessage{(*flags & 1) != 0, *lsn, *prefix, **content});
}

result<Message> parse_by_tag(Tag tag, ByteReader& r)
{
    switch (tag) {
    case Tag::Begin:
        return parse_begin(r);
    case Tag::Commit:
        return parse_commit(r);
    case Tag::Origin:
        return parse_origin(r);
    case Tag::Relation:
        return parse_relation(r);
    case Tag::Type:
        return parse_type(r);
    case Tag::Insert:
        return parse_insert(r);
    case Tag::Update:
        return parse_update(r);
    case Tag::Delete:
        return parse_delete(r);
    case Tag::Truncate:
        return parse_truncate(r);
    case Tag::Message:
        return parse_decoding_message(r);
    }
    // Streaming ('S', 'E', 'c', 'A') and two-phase messages need protocol
    // versions 2 and 3, which pgswitch does not ask for.
    return errc::unexpected_tag;
}

void sort_unique(std::vector<Oid>& v)
{
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

result<Message> parse_message(std::string_view data)
{
    ByteReader r(data);
    auto tag = r.u8();
    if (!tag)
        return tag.error();
    return parse_by_tag(static_cast<Tag>(*tag), r);
}

// ---- ChangeTracker ------------------------------------------------------------

result<std::optional<CommittedChanges>> ChangeTracker::feed(const Message& m)
{
    using Out = result<std::optional<CommittedChanges>>;
    const auto none = [](boost::system::error_code ec) -> Out {
        if (ec)
            return ec;
        return std::optional<CommittedChanges>{};
    };
    if (const auto* b = std::get_if<Begin>(&m)) {
        if (open_)
            return errc::unexpected_tag;
        open_ = *b;
        return none({});
    }
    if (const auto* c = std::get_if<Commit>(&m))
        return commit(*c);
    if (const auto* i = std::get_if<Insert>(&m))
        return none(change(i->relation, false));
    if (const auto* u = std::get_if<Update>(&m))
        return none(change(u->relation, false));
    if (const auto* d = std::get_if<Delete>(&m))
        return none(change(d->relation, false));
    if (const auto* t = std::get_if<Truncate>(&m)) {
        for (const auto oid : t->relations)
            if (auto ec = change(oid, true))
                return ec;
        return none({});
    }
    if (const auto* rel = std::get_if<Relation>(&m)) {
        // pgoutput reports pg_catalog as an empty namespace to save bytes.
        const auto schema = rel->schema.empty() ? std::string_view("pg_catalog") : rel->schema;
        relations_[rel->oid] = RelationName{std::string(schema), std::string(rel->name)};
    }
    // Origin, Type and DecodingMessage change no table.
    return none({});
}

result<std::optional<CommittedChanges>> ChangeTracker::commit(const Commit& c)
{
    if (!open_)
        return errc::unexpected_tag;
    // Begin announces the commit's LSN: a different one means messages were lost.
    if (c.commit_lsn != open_->final_lsn)
        return errc::bad_value;
    CommittedChanges out;
    out.xid = open_->xid;
    out.commit_lsn = c.commit_lsn;
    out.end_lsn = c.end_lsn;
    sort_unique(changed_);
    sort_unique(truncated_);
    out.relations = std::move(changed_);
    out.truncated = std::move(truncated_);
    changed_.clear();
    truncated_.clear();
    open_.reset();
    advance(c.end_lsn);
    return std::optional<CommittedChanges>{std::move(out)};
}

boost::system::error_code ChangeTracker::change(Oid relation, bool truncated)
{
    if (!open_)
        return errc::unexpected_tag;
    changed_.push_back(relation);
    if (truncated)
        truncated_.push_back(relation);
    return {};
}

void ChangeTracker::keepalive(Lsn wal_end) noexcept
{
    if (!open_)
        advance(wal_end);
}

void ChangeTracker::advance(Lsn lsn) noexcept
{
    decoded_up_to_ = std::max(decoded_up_to_, lsn);
}

const RelationName* ChangeTracker::relation(Oid oid) const noexcept
{
    const auto it = relations_.find(oid);
    return it == relations_.end() ? nullptr : &it->second;
}

result<StreamStep> apply_copy_data(ChangeTracker& tracker, std::string_view copy_data)
{
    auto msg = repl::parse_server_message(copy_data);
    if (!msg)
        return msg.error();
    if (const auto* k = std::get_if<repl::PrimaryKeepalive>(&*msg)) {
        tracker.keepalive(k->wal_end);
        return StreamStep{std::nullopt, k->reply_requested};
    }
    auto decoded = parse_message(std::get<repl::XLogData>(*msg).data);
    if (!decoded)
        return decoded.error();
    auto committed = tracker.feed(*decoded);
    if (!committed)
        return committed.error();
    return StreamStep{std::move(*committed), false};
}

}  // namespace pgoutput

}  // namespace pgswitch::wire
