// What one server connection still owes about prepared statements: Parses
// waiting for their ParseComplete, and Describes of statements waiting for
// their ParameterDescription + RowDescription/NoData. Fed the server's
// replies in order, it tells the session which statements really exist
// (a Parse that failed never created one: a later Parse of the name is no
// 42P05) and what the client was shown of a statement (SessionState's
// PreparedStatement::shown), or whether a copy on this server agrees.
// Pure bookkeeping: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "pg_wire/fifo.h"
#include "routing/session_state.h"

namespace pgswitch::routing {

class StatementReplies {
public:
    /// A Parse of `name` went out; it belongs to the segment that the
    /// `segment`-th ReadyForQuery of this connection ends. `client`: the
    /// client's own Parse (else pgswitch's replay of the session's statement).
    /// `inline_hidden`: pgswitch's replay slipped into the middle of a
    /// client's unfinished extended request (no Sync of its own): its
    /// ParseComplete arrives among the client's replies and must be cut out.
    void parse_sent(std::string name, std::uint64_t version, std::uint64_t segment, bool client,
                    bool inline_hidden = false);
    /// A Close went out (the client's, or pgswitch's: `inline_hidden` as above).
    void close_sent(std::uint64_t segment, bool inline_hidden = false);
    /// A Describe of statement `name` went out. With `expected`, it is a check
    /// of a copy pgswitch prepared here: the reply must match it.
    void describe_sent(std::string name, std::uint64_t version, std::uint64_t segment,
                       std::optional<StatementShape> expected = std::nullopt);

    /// True when that ParseComplete answers an inline hidden Parse (drop it).
    [[nodiscard]] bool on_parse_complete() noexcept;
    /// True when that CloseComplete answers an inline hidden Close (drop it).
    [[nodiscard]] bool on_close_complete() noexcept;
    /// ParameterDescription: only a Describe of a statement produces one.
    void on_parameter_description(std::string_view body);
    /// RowDescription (`rows`) or NoData (nullopt) right after a
    /// ParameterDescription completes that Describe: the client's is recorded
    /// in `session`, a check is compared.
    void on_row_description(std::optional<std::string_view> rows, SessionState& session);
    /// The `segment`-th ReadyForQuery arrived: Parses of that segment or
    /// earlier without a ParseComplete failed (an error skipped them): the
    /// statement does not exist, in `session` (a client Parse) or on `link`.
    /// Returns how many of the client's own Parses failed.
    std::size_t on_segment_done(std::uint64_t segment, SessionState& session, LinkState& link);

    /// A Parse of `name` is sent and not yet confirmed or failed.
    [[nodiscard]] bool parse_pending(std::string_view name) const noexcept;
    /// Some check failed since the last take_check_failure().
    [[nodiscard]] bool take_check_failure() noexcept;
    [[nodiscard]] bool idle() const noexcept { return parses_.empty() && describes_.empty() && closes_.empty(); }
    void clear() noexcept;

private:
    struct Parse {
        std::string name;
        std::uint64_t version;
        std::uint64_t segment;
        bool client;
        bool inline_hidden;
    };
    struct Close {
        std::uint64_t segment;
        bool inline_hidden;
    };
    struct Describe {
        std::string name;
        std::uint64_t version;
        std::uint64_t segment;
        std::optional<StatementShape> expected;
    };
    wire::Fifo<Parse> parses_;
    wire::Fifo<Describe> describes_;
    wire::Fifo<Close> closes_;
    /// The ParameterDescription of the front Describe, until its rows come.
    std::optional<std::string> parameters_;
    bool check_failed_ = false;
};

}  // namespace pgswitch::routing
