#include "wal_follower.h"

#include <utility>

#include "log.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "routing/cluster_view.h"

namespace pgswitch::proxy {

namespace be = wire::be;
namespace repl = wire::repl;
namespace td = wire::test_decoding;

namespace {

std::int64_t now_pg_timestamp()
{
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    return wire::pg_timestamp_from_unix_us(us);
}

WalFollowerStop transient(std::string reason)
{
    return {std::move(reason), false};
}

/// An ErrorResponse frame as a stop.
WalFollowerStop error_stop(const wire::Frame& f)
{
    auto fields = be::parse_error_fields(f.body);
    if (!fields)
        return transient("malformed ErrorResponse from the primary");
    return classify_follow_error(fields->sqlstate(), fields->message());
}

WalFollowerStop query_stop(const ConnectError& e)
{
    return e.sqlstate.empty() ? transient(e.message) : classify_follow_error(e.sqlstate, e.message);
}

}  // namespace

WalFollowerStop classify_follow_error(std::string_view sqlstate, std::string_view message)
{
    std::string reason(message);
    if (!sqlstate.empty())
        reason += " (SQLSTATE " + std::string(sqlstate) + ")";
    // 55000: wal_level below logical; 53400: every replication slot in use
    // (max_replication_slots); 42501: the user may not replicate;
    // 28000 / 28P01: pg_hba or the password refuses the login; 58P01: no test_decoding library.
    // Reconnecting at once changes none of them.
    const bool permanent = sqlstate == "55000" || sqlstate == "42501" || sqlstate == "28000" || sqlstate == "28P01" ||
                           sqlstate == "58P01" || sqlstate == "53400";
    return {std::move(reason), permanent};
}

WalFollower::WalFollower(asio::any_io_executor ex, WalFollowerSettings settings)
    : settings_(std::move(settings)),
      conn_(ex),
      report_timer_(ex),
      reporter_done_(ex)
{
    settings_.startup.params.emplace_back("replication", "database");
}

void WalFollower::stop() noexcept
{
    stopping_ = true;
    report_timer_.cancel();
    conn_.close();
}

void WalFollower::report_now() noexcept
{
    report_timer_.cancel();
}

awaitable<WalFollowerStop> WalFollower::run(WalObserver& observer)
{
    auto failed = co_await conn_.connect(settings_.host, settings_.port, settings_.startup, settings_.connect_timeout);
    if (failed)
        co_return query_stop(*failed);
    auto slot = co_await create_slot();
    if (auto* stop = std::get_if<WalFollowerStop>(&slot))
        co_return *stop;
    const wire::Lsn consistent_point = std::get<wire::Lsn>(slot);
    if (auto stop = co_await start_streaming(consistent_point))
        co_return *stop;
    tracker_.keepalive(consistent_point);
    observer.on_streaming(consistent_point);
    streaming_ = true;
    reporter_running_ = true;
    asio::co_spawn(conn_.socket().get_executor(), report_positions(), [this](std::exception_ptr) {
        reporter_running_ = false;
        reporter_done_.cancel();
    });
    auto stop = co_await stream(observer);
    streaming_ = false;
    report_timer_.cancel();
    conn_.close();
    while (reporter_running_) {  // it uses this object: wait until it has returned
        reporter_done_.expires_at(asio::steady_timer::time_point::max());
        const auto [ec] = co_await reporter_done_.async_wait(use_nothrow);
        (void)ec;
    }
    co_return stop;
}

awaitable<std::variant<wire::Lsn, WalFollowerStop>> WalFollower::create_slot()
{
    auto made = co_await conn_.simple_query(repl::create_temporary_slot_command(settings_.slot, "test_decoding"));
    if (auto* e = std::get_if<ConnectError>(&made))
        co_return query_stop(*e);
    const auto& rows = std::get<QueryRows>(made).rows;
    if (rows.empty() || rows.front().size() < 2 || !rows.front()[1])
        co_return transient("CREATE_REPLICATION_SLOT returned no consistent point");
    const auto lsn = routing::parse_lsn(*rows.front()[1]);
    if (!lsn)
        co_return transient("CREATE_REPLICATION_SLOT returned a bad consistent point: " + *rows.front()[1]);
    co_return *lsn;
}

awaitable<std::optional<WalFollowerStop>> WalFollower::start_streaming(wire::Lsn from)
{
    std::string out;
    wire::fe::build_query(out, repl::start_test_decoding_command(settings_.slot, from));
    if (auto ec = co_await conn_.write(out))
        co_return transient("could not send START_REPLICATION: " + ec.message());
    for (;;) {
        auto r = co_await conn_.read_frame();
        if (auto* ec = std::get_if<error_code>(&r))
            co_return transient("connection lost starting replication: " + ec->message());
        const auto f = std::get<wire::Frame>(r);
        if (f.backend_tag() == be::Tag::CopyBothResponse)
            co_return std::nullopt;
        if (f.backend_tag() == be::Tag::ErrorResponse)
            co_return error_stop(f);
        // NoticeResponse, ParameterStatus: nothing to do
    }
}

awaitable<WalFollowerStop> WalFollower::stream(WalObserver& observer)
{
    wire::Lsn reported = tracker_.decoded_up_to();
    for (;;) {
        auto r = co_await conn_.read_frame();
        if (auto* ec = std::get_if<error_code>(&r))
            co_return transient(stopping_ ? "stopped" : "replication connection lost: " + ec->message());
        const auto f = std::get<wire::Frame>(r);
        if (f.backend_tag() == be::Tag::ErrorResponse)
            co_return error_stop(f);
        if (f.backend_tag() == be::Tag::CopyDone)
            co_return transient("the primary ended the replication stream");
        if (f.backend_tag() != be::Tag::CopyData)
            continue;  // notices
        auto step = td::apply_copy_data(tracker_, f.body);
        if (!step)
            co_return transient("undecodable replication message: " + step.error().message());
        if (step->committed)
            observer.on_commit(*step->committed);
        if (tracker_.decoded_up_to() > reported) {
            reported = tracker_.decoded_up_to();
            observer.on_decoded(reported);
        }
        if (step->reply_requested)
            report_now();
    }
}

awaitable<void> WalFollower::report_positions()
{
    std::string out;
    while (streaming_ && !stopping_) {
        report_timer_.expires_after(settings_.status_interval);
        const auto [ec] = co_await report_timer_.async_wait(use_nothrow);
        (void)ec;  // cancelled: the server asked for a report now, or stopping
        if (!streaming_ || stopping_)
            break;
        const wire::Lsn at = tracker_.decoded_up_to();
        out.clear();
        // reply_requested: the server answers with a keepalive, whose position moves
        // decoded_up_to() on while nothing commits.
        repl::build_standby_status_update(out, {at, at, at, now_pg_timestamp(), true});
        if (auto werr = co_await conn_.write(out))
            break;  // the reader sees the connection end
    }
}

}  // namespace pgswitch::proxy
