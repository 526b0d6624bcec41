// The fallback when no publication can be created: the test_decoding plugin's
// text lines (contrib/test_decoding), one per XLogData, reduced to what the
// result cache needs: which tables a committed transaction changed. Tables come
// as names, not OIDs; test_decoding has no Relation message to map them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "errc.h"
#include "replication.h"

namespace pgswitch::wire::test_decoding {

/// A table name as test_decoding prints it, unquoted: "My Schema"."t x" is
/// {"My Schema", "t x"}.
struct TableName {
    std::string schema;
    std::string name;
    friend bool operator==(const TableName&, const TableName&) = default;
    friend auto operator<=>(const TableName&, const TableName&) = default;
};

enum class LineKind { begin, commit, change, message };

/// One line: BEGIN / COMMIT (xid when include-xids is on, the default),
/// "table s.t: INSERT|UPDATE|DELETE: ..." or "table a, b: TRUNCATE: ...",
/// and "message: ..." (no table).
struct Line {
    LineKind kind = LineKind::message;
    std::optional<std::uint32_t> xid;
    std::vector<TableName> tables;
};

/// Anything else (a different plugin, a changed format) is bad_value.
[[nodiscard]] result<Line> parse_line(std::string_view text);

struct CommittedTables {
    std::optional<std::uint32_t> xid;
    Lsn end_lsn = 0;
    std::vector<TableName> tables;  ///< sorted, unique
};

/// ChangeTracker for test_decoding. The walsender sends a COMMIT line with
/// XLogData::wal_start at the end of the commit record, so that is the LSN
/// decoding has reached once it is applied.
class TableChangeTracker {
public:
    /// `wal_start`: the XLogData's, which test_decoding itself does not print.
    [[nodiscard]] result<std::optional<CommittedTables>> feed(const Line& line, Lsn wal_start);
    void keepalive(Lsn wal_end) noexcept;
    [[nodiscard]] Lsn decoded_up_to() const noexcept { return decoded_up_to_; }
    [[nodiscard]] bool in_transaction() const noexcept { return open_; }

private:
    bool open_ = false;
    std::optional<std::uint32_t> xid_;
    std::vector<TableName> changed_;
    Lsn decoded_up_to_ = 0;
};

/// One server CopyData applied to a tracker.
struct StreamStep {
    std::optional<CommittedTables> committed;
    bool reply_requested = false;  ///< a keepalive asked for a StandbyStatusUpdate now
};
/// Parses a server CopyData body (XLogData or keepalive), then its
/// test_decoding line, into `tracker`.
[[nodiscard]] result<StreamStep> apply_copy_data(TableChangeTracker& tracker, std::string_view copy_data);

}  // namespace pgswitch::wire::test_decoding
