// Follows the primary's commits by logical decoding, for the result cache's
// invalidation = "wal" (SPEC §7): one replication connection, a temporary
// test_decoding slot that the server drops when the connection ends,
// START_REPLICATION, and for every committed transaction the tables it
// changed. The decoding itself is pure (wire::test_decoding); this type is
// its I/O.
//
// Why test_decoding and not pgoutput: pgoutput needs a publication, and a
// publication FOR ALL TABLES that publishes updates and deletes makes the
// primary refuse UPDATE and DELETE on every table without a replica identity
// (no primary key): following commits must not change what users may write.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "asio_common.h"
#include "backend_connection.h"
#include "pg_wire/replication.h"
#include "pg_wire/test_decoding.h"

namespace pgswitch::proxy {

struct WalFollowerSettings {
    std::string host;
    std::uint16_t port = 0;
    /// user, database and credentials; the replication parameter is added.
    ServerStartup startup;
    std::string slot;  ///< unique per connection: the server refuses a name in use
    std::chrono::milliseconds connect_timeout{5'000};
    /// How often the follower reports its position and asks the server for a
    /// keepalive, which carries how far decoding got while nothing commits.
    std::chrono::milliseconds status_interval{1'000};
};

/// What the follower reports, on its executor. Decoded positions only grow.
class WalObserver {
public:
    virtual ~WalObserver() = default;
    /// Decoding starts at `consistent_point`: every commit after it is reported.
    virtual void on_streaming(wire::Lsn consistent_point) = 0;
    virtual void on_commit(const wire::test_decoding::CommittedTables& changes) = 0;
    /// Every commit before `lsn` has been reported (commits and keepalives).
    virtual void on_decoded(wire::Lsn lsn) = 0;
};

/// Why following stopped. A permanent stop (no logical WAL, no permission, no
/// test_decoding plugin) will not go away by
/// reconnecting; the rest (connection lost, the server restarting) may.
struct WalFollowerStop {
    std::string reason;
    bool permanent = false;
};

/// Sorts a failure to start decoding (SQLSTATE, server message) into a stop.
[[nodiscard]] WalFollowerStop classify_follow_error(std::string_view sqlstate, std::string_view message);

class WalFollower {
public:
    WalFollower(asio::any_io_executor ex, WalFollowerSettings settings);

    /// Connects, sets up the slot and streams until the connection ends or
    /// stop() is called; reports to `observer` meanwhile.
    [[nodiscard]] awaitable<WalFollowerStop> run(WalObserver& observer);
    /// Ends run() (the connection closes; the server drops the slot).
    void stop() noexcept;

private:
    [[nodiscard]] awaitable<std::variant<wire::Lsn, WalFollowerStop>> create_slot();
    [[nodiscard]] awaitable<std::optional<WalFollowerStop>> start_streaming(wire::Lsn from);
    [[nodiscard]] awaitable<WalFollowerStop> stream(WalObserver& observer);
    /// Sends a StandbyStatusUpdate every status_interval, and at once when
    /// the server asks (report_now()). The only writer once streaming.
    awaitable<void> report_positions();
    void report_now() noexcept;

    WalFollowerSettings settings_;
    BackendConnection conn_;
    asio::steady_timer report_timer_;
    asio::steady_timer reporter_done_;  ///< cancelled when report_positions() returns
    bool reporter_running_ = false;
    wire::test_decoding::TableChangeTracker tracker_;
    bool stopping_ = false;
    bool streaming_ = false;
};

}  // namespace pgswitch::proxy
