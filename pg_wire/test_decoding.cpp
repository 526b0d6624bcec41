// test_decoding's text format, as PostgreSQL 15's contrib/test_decoding prints it
// with default options: quote_qualified_identifier() names, one line per callback.
#include "test_decoding.h"

#include <algorithm>
#include <charconv>

namespace pgswitch::wire::test_decoding {
namespace {

bool consume(std::string_view& s, std::string_view prefix) noexcept
{
    if (!s.starts_with(prefix))
        return false;
    s.remove_prefix(prefix.size());
    return true;
}

/// A "quoted" identifier ("" is one quote) or a bare one up to '.', ',', ':'
/// or a space: quote_identifier() leaves only [a-z0-9_$] names bare.
result<std::string> identifier(std::string_view& s)
{
    std::string out;
    if (!consume(s, "\"")) {
        const auto end = std::min(s.find_first_of(".,: "), s.size());
        if (end == 0)
            return errc::bad_value;
        out.assign(s.substr(0, end));
        s.remove_prefix(end);
        return out;
    }
    for (;;) {
        const auto quote = s.find('"');
        if (quote == std::string_view::npos)
            return errc::bad_value;
        out.append(s.substr(0, quote));
        s.remove_prefix(quote + 1);
        if (!consume(s, "\""))
            return out;
        out.push_back('"');
    }
}

result<TableName> qualified_name(std::string_view& s)
{
    auto schema = identifier(s);
    if (!schema)
        return schema.error();
    if (!consume(s, "."))
        return errc::bad_value;
    auto name = identifier(s);
    if (!name)
        return name.error();
    return TableName{std::move(*schema), std::move(*name)};
}

/// "table a.b[, c.d...]: ACTION:", the rest (column values) unread.
result<Line> parse_change(std::string_view s)
{
    Line line;
    line.kind = LineKind::change;
    do {
        auto table = qualified_name(s);
        if (!table)
            return table.error();
        line.tables.push_back(std::move(*table));
    } while (consume(s, ", "));
    if (!consume(s, ": "))
        return errc::bad_value;
    // TRUNCATE is the only action that lists several tables.
    const bool truncate = consume(s, "TRUNCATE:");
    if (!truncate && !consume(s, "INSERT:") && !consume(s, "UPDATE:") && !consume(s, "DELETE:"))
        return errc::bad_value;
    if (!truncate && line.tables.size() != 1)
        return errc::bad_value;
    return line;
}

/// "BEGIN" / "COMMIT", then " <xid>" unless include-xids is off, then for a
/// COMMIT " (at <timestamp>)" if include-timestamp is on.
result<Line> parse_boundary(LineKind kind, std::string_view s)
{
    Line line;
    line.kind = kind;
    if (s.empty())
        return line;
    if (!consume(s, " "))
        return errc::bad_value;
    std::uint32_t xid = 0;
    const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), xid);
    if (ec != std::errc{} || ptr == s.data())
        return errc::bad_value;
    s.remove_prefix(static_cast<std::size_t>(ptr - s.data()));
    if (!s.empty() && !(kind == LineKind::commit && s.starts_with(" (at ")))
        return errc::bad_value;
    line.xid = xid;
    return line;
}

}  // namespace

result<Line> parse_line(std::string_view text)
{
    if (consume(text, "table "))
        return parse_change(text);
    if (consume(text, "BEGIN"))
        return parse_boundary(LineKind::begin, text);
    if (consume(text, "COMMIT"))
        return parse_boundary(LineKind::commit, text);
    if (text.starts_with("message:"))
        return Line{LineKind::message, std::nullopt, {}};
    return errc::bad_value;
}

result<std::optional<CommittedTables>> TableChangeTracker::feed(const Line& line, Lsn wal_start)
{
    using Out = std::optional<CommittedTables>;
    switch (line.kind) {
    case LineKind::begin:
        if (open_)
            return errc::unexpected_tag;
        open_ = true;
        xid_ = line.xid;
        return Out{};
    case LineKind::change:
        if (!open_)
            return errc::unexpected_tag;
        changed_.insert(changed_.end(), line.tables.begin(), line.tables.end());
        return Out{};
    case LineKind::commit: {
        if (!open_ || line.xid != xid_)
            return errc::unexpected_tag;
        std::sort(changed_.begin(), changed_.end());
        changed_.erase(std::unique(changed_.begin(), changed_.end()), changed_.end());
        CommittedTables out{xid_, wal_start, std::move(changed_)};
        changed_.clear();
        open_ = false;
        decoded_up_to_ = std::max(decoded_up_to_, wal_start);
        return Out{std::move(out)};
    }
    case LineKind::message:
        return Out{};  // changes no table, in or out of a transaction
    }
    return errc::bad_value;
}

void TableChangeTracker::keepalive(Lsn wal_end) noexcept
{
    if (!open_)
        decoded_up_to_ = std::max(decoded_up_to_, wal_end);
}

result<StreamStep> apply_copy_data(TableChangeTracker& tracker, std::string_view copy_data)
{
    auto msg = repl::parse_server_message(copy_data);
    if (!msg)
        return msg.error();
    if (const auto* k = std::get_if<repl::PrimaryKeepalive>(&*msg)) {
        tracker.keepalive(k->wal_end);
        return StreamStep{std::nullopt, k->reply_requested};
    }
    const auto& x = std::get<repl::XLogData>(*msg);
    auto line = parse_line(x.data);
    if (!line)
        return line.error();
    auto committed = tracker.feed(*line, x.wal_start);
    if (!committed)
        return committed.error();
    return StreamStep{std::move(*committed), false};
}

}  // namespace pgswitch::wire::test_decoding
