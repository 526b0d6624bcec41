// ResponseTracker and MisrouteGuard: server byte streams cut into frames, each
// answered with an action; a small stand-in for the pump does what the
// actions say with the bytes, so the tests also check what the client gets.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "pg_wire/misroute_guard.h"
#include "pg_wire/response_tracker.h"
#include "support/builders.h"

using namespace pgswitch;
using namespace pgswitch::test;
using wire::SegmentKind;
using Kind = wire::ResponseTracker::Kind;
using Action = wire::ResponseTracker::Action;

namespace {

const char* name_of(Kind k)
{
    switch (k) {
    case Kind::forward:
        return "forward";
    case Kind::hold:
        return "hold";
    case Kind::release:
        return "release";
    case Kind::drop:
        return "drop";
    case Kind::misrouted:
        return "misrouted";
    case Kind::hidden:
        return "hidden";
    case Kind::hidden_done:
        return "hidden_done";
    case Kind::rerun:
        return "rerun";
    case Kind::fatal_idle:
        return "fatal_idle";
    }
    return "?";
}

/// One server connection as the pump sees it: bytes in, actions out, and
/// the bytes each action sends to the client (`client`) or holds back (`held`).
struct Link {
    wire::ResponseTracker tracker;
    wire::FrameDecoder decoder;
    std::string client;
    std::string held;
    std::vector<Action> actions;  ///< every action so far
    bool session_holds_link = false;

    /// Feeds server bytes; returns the kinds of the actions they got, space-separated.
    std::string feed(std::string_view bytes)
    {
        decoder.feed(bytes);
        std::string kinds;
        for (;;) {
            auto f = decoder.next();
            REQUIRE(f);
            if (!*f)
                break;
            auto a = tracker.on_message(**f, session_holds_link);
            apply(a, (**f).raw);
            kinds += (kinds.empty() ? "" : " ") + std::string(name_of(a.kind));
            actions.push_back(std::move(a));
        }
        return kinds;
    }
    void apply(const Action& a, std::string_view raw)
    {
        switch (a.kind) {
        case Kind::release:
            client += std::exchange(held, {});
            [[fallthrough]];
        case Kind::forward:
            client += raw;
            break;
        case Kind::hold:
            held += raw;
            break;
        case Kind::misrouted:
            held.clear();
            break;
        default:
            break;
        }
    }
    [[nodiscard]] const Action& last() const { return actions.back(); }
};

std::string select_reply(std::string_view value)
{
    return concat(be::row_description({be::column("v")}), be::data_row({std::string(value)}),
                  be::command_complete("SELECT 1"), be::ready_for_query());
}

using pgswitch::test::request_of;  // a client request, to keep for a re-run

const std::string read_only_error = be::error_response("ERROR", "25006",
                                                       "cannot execute INSERT in a read-only transaction");

}  // namespace

TEST_CASE("a pipeline of three client segments is forwarded, each ReadyForQuery ending one")
{
    Link link;
    CHECK(link.tracker.push(SegmentKind::client) == 1);
    CHECK(link.tracker.push(SegmentKind::client) == 2);
    CHECK(link.tracker.push(SegmentKind::client) == 3);
    CHECK(link.tracker.pending_client() == 3);
    const auto stream = concat(select_reply("1"), be::command_complete("SET"), be::ready_for_query(),
                               be::empty_query_response(), be::ready_for_query(wire::TxStatus::in_transaction));
    CHECK(link.feed(stream) == "forward forward forward forward forward forward forward forward");
    CHECK(link.client == stream);
    std::vector<std::uint64_t> ended;
    for (const auto& a : link.actions)
        if (a.segment) {
            CHECK(a.segment->kind == SegmentKind::client);
            ended.push_back(a.segment->number);
        }
    CHECK(ended == std::vector<std::uint64_t>{1, 2, 3});
    REQUIRE(link.last().ready);
    CHECK(*link.last().ready == wire::TxStatus::in_transaction);
    CHECK(link.tracker.empty());
    CHECK(link.tracker.pending_client() == 0);
    CHECK(link.tracker.segments_done() == 3);
}

TEST_CASE("an error mid-pipeline: the server skips to Sync, the next segment goes on")
{
    Link link;
    for (int i = 0; i < 3; ++i)
        link.tracker.push(SegmentKind::client);
    const auto first = concat(be::parse_complete(), be::bind_complete(), be::data_row({"1"}),
                              be::command_complete("SELECT 1"), be::ready_for_query());
    const auto failed = concat(be::parse_complete(), be::error_response("ERROR", "22012", "division by zero"),
                               be::ready_for_query());
    const auto third = concat(be::bind_complete(), be::no_data(), be::command_complete("SELECT 0"),
                              be::ready_for_query());
    CHECK(link.feed(first) == "forward forward forward forward forward");
    CHECK(link.feed(failed) == "forward forward forward");
    const auto& error = link.actions[6];
    REQUIRE(error.error);
    CHECK(error.error->sqlstate() == "22012");
    CHECK_FALSE(error.fatal());
    CHECK(link.tracker.pending_client() == 1);
    CHECK(link.feed(third) == "forward forward forward forward");
    CHECK(link.client == first + failed + third);
    CHECK(link.tracker.segments_done() == 3);
    CHECK(link.tracker.empty());
}

TEST_CASE("hidden segments ahead of the client's are cut out, their values read")
{
    Link link;
    link.tracker.push(SegmentKind::hidden);  // SET replay
    link.tracker.push(SegmentKind::replay_wait, 0x3000060);
    link.tracker.push(SegmentKind::client);
    CHECK(link.tracker.awaiting_replay());

    CHECK(link.feed(concat(be::command_complete("SET"), be::parameter_status("TimeZone", "UTC"),
                           be::ready_for_query())) == "hidden hidden hidden_done");
    REQUIRE(link.last().segment);
    CHECK(link.last().segment->kind == SegmentKind::hidden);
    CHECK_FALSE(link.last().value);

    CHECK(link.feed(select_reply("0/3000060")) == "hidden hidden hidden hidden_done");
    REQUIRE(link.last().segment);
    CHECK(link.last().segment->kind == SegmentKind::replay_wait);
    CHECK(link.last().segment->lsn == 0x3000060);
    CHECK(link.last().value == std::optional<std::string>{"0/3000060"});
    CHECK_FALSE(link.tracker.awaiting_replay());
    CHECK(link.client.empty());

    const auto reply = select_reply("42");
    CHECK(link.feed(reply) == "forward forward forward forward");
    CHECK(link.client == reply);
    CHECK(link.tracker.segments_done() == 3);
}

TEST_CASE("a WAL position captured behind a write: the client's reply, then the hidden value")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    link.tracker.push(SegmentKind::capture_lsn, 0, true);
    const auto reply = concat(be::command_complete("INSERT 0 1"), be::ready_for_query());
    CHECK(link.feed(reply + select_reply("0/16B3748")) == "forward forward hidden hidden hidden hidden_done");
    CHECK(link.client == reply);
    const auto& done = link.last();
    REQUIRE(done.segment);
    CHECK(done.segment->kind == SegmentKind::capture_lsn);
    CHECK(done.segment->schema);
    CHECK(done.value == std::optional<std::string>{"0/16B3748"});
    REQUIRE(done.ready);
    CHECK(*done.ready == wire::TxStatus::idle);
}

TEST_CASE("a hidden request that fails is cut out with its error; a NULL row gives no value")
{
    Link link;
    link.tracker.push(SegmentKind::check);
    link.tracker.push(SegmentKind::replay_wait, 5);
    CHECK(link.feed(concat(be::parse_complete(), be::error_response("ERROR", "42P01", "relation does not exist"),
                           be::ready_for_query())) == "hidden hidden hidden_done");
    REQUIRE(link.actions[1].error);
    CHECK(link.actions[1].error->sqlstate() == "42P01");
    REQUIRE(link.actions[1].segment);
    CHECK(link.actions[1].segment->kind == SegmentKind::check);
    // A replay wait on a server that is no replica (any more) returns NULL.
    CHECK(link.feed(concat(be::row_description({be::column("v")}), be::data_row({std::nullopt}),
                           be::command_complete("SELECT 1"), be::ready_for_query())) ==
          "hidden hidden hidden hidden_done");
    CHECK_FALSE(link.last().value);
    CHECK(link.client.empty());
}

TEST_CASE("COPY OUT and COPY IN replies are the client's")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    const auto copy_out = concat(be::copy_response(wire::be::Tag::CopyOutResponse, 0, {0, 0}), be::copy_data("1\ta\n"),
                                 be::copy_data("2\tb\n"), be::copy_done(), be::command_complete("COPY 2"),
                                 be::ready_for_query());
    CHECK(link.feed(copy_out) == "forward forward forward forward forward forward");

    link.tracker.push(SegmentKind::client);
    const auto copy_in = be::copy_response(wire::be::Tag::CopyInResponse, 0, {0});
    CHECK(link.feed(copy_in) == "forward");
    CHECK(link.tracker.pending_client() == 1);  // the client sends its data now
    const auto end = concat(be::command_complete("COPY 3"), be::ready_for_query());
    CHECK(link.feed(end) == "forward forward");
    CHECK(link.client == copy_out + copy_in + end);
    CHECK(link.tracker.empty());
}

TEST_CASE("a kept read's COPY OUT releases what was held")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("COPY t TO STDOUT")));
    const auto notice = be::error_fields({{'S', "NOTICE"}, {'V', "NOTICE"}, {'C', "00000"}, {'M', "hello"}}, true);
    CHECK(link.feed(notice) == "hold");
    CHECK(link.client.empty());
    const auto rest = concat(be::copy_response(wire::be::Tag::CopyOutResponse, 0, {0}), be::copy_done(),
                             be::command_complete("COPY 0"), be::ready_for_query());
    CHECK(link.feed(rest) == "release forward forward forward");
    CHECK(link.client == notice + rest);
}

TEST_CASE("25006: the held start of a read's reply is dropped and the read re-run")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    const auto request = concat(fe::parse("", "SELECT writes()"), fe::bind("", ""), fe::describe('P', ""),
                                fe::execute(""), fe::sync());
    CHECK(link.tracker.keep(request_of(request)).bytes() == request);
    CHECK(link.tracker.can_rerun());
    const auto preamble = concat(be::parse_complete(), be::bind_complete(), be::row_description({be::column("w")}));
    // The start of the reply arrives in one read, the error in the next.
    CHECK(link.feed(preamble) == "hold hold hold");
    CHECK(link.tracker.holding());
    CHECK(link.tracker.can_rerun_unseen());
    CHECK(link.feed(read_only_error) == "misrouted");
    CHECK(link.tracker.swallowing());
    CHECK(link.tracker.awaiting_replay());
    CHECK_FALSE(link.tracker.can_rerun_unseen());
    CHECK(link.feed(be::ready_for_query()) == "rerun");
    REQUIRE(link.last().segment);
    CHECK(link.last().segment->number == 1);
    CHECK(link.client.empty());
    CHECK(link.held.empty());
    CHECK(link.tracker.empty());
    CHECK_FALSE(link.tracker.swallowing());
    CHECK(link.tracker.take_refusal() == read_only_error);
    auto kept = link.tracker.take_kept();
    REQUIRE(kept);
    CHECK(kept->bytes() == request);
    CHECK_FALSE(link.tracker.take_kept());
}

TEST_CASE("a read of an UNLOGGED table on a standby is misrouted too; other 0A000s are not")
{
    for (const bool unlogged : {true, false}) {
        Link link;
        link.tracker.push(SegmentKind::client);
        link.tracker.keep(request_of(fe::query("SELECT * FROM u")));
        const auto error = be::error_response("ERROR", "0A000",
                                              unlogged ? "cannot access temporary or unlogged relations during recovery"
                                                       : "something else");
        CHECK(link.feed(error) == (unlogged ? "misrouted" : "forward"));
        CHECK(link.client == (unlogged ? "" : error));
    }
}

TEST_CASE("once a row reached the client, a 25006 is the client's and nothing is re-run")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("SELECT writes() FROM t")));
    const auto start = concat(be::row_description({be::column("w")}), be::data_row({"1"}));
    CHECK(link.feed(start) == "hold release");
    CHECK(link.client == start);
    CHECK_FALSE(link.tracker.holding());
    CHECK_FALSE(link.tracker.can_rerun_unseen());
    const auto rest = concat(read_only_error, be::ready_for_query());
    CHECK(link.feed(rest) == "forward forward");
    CHECK(link.client == start + rest);
    CHECK(link.tracker.empty());
}

TEST_CASE("a DataRow first: forwarded at once, nothing was held")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("FETCH 1 FROM c")));
    CHECK(link.feed(be::data_row({"1"})) == "forward");
    CHECK(link.feed(read_only_error) == "forward");
    CHECK_FALSE(link.tracker.can_rerun_unseen());
}

TEST_CASE("a request that was not kept is never held")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    CHECK_FALSE(link.tracker.can_rerun());
    CHECK(link.feed(concat(be::row_description({be::column("w")}), read_only_error, be::ready_for_query())) ==
          "forward forward forward");
}

TEST_CASE("a request pipelined behind a kept read ends the hold at the next message")
{
    Link link;
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("SELECT 1")));
    CHECK(link.feed(be::row_description({be::column("v")})) == "hold");
    link.tracker.push(SegmentKind::client);
    CHECK_FALSE(link.tracker.can_rerun());
    CHECK(link.feed(concat(be::data_row({"1"}), be::command_complete("SELECT 1"), be::ready_for_query())) ==
          "release forward forward");
    CHECK(link.held.empty());
}

TEST_CASE("a replay wait that fell short: the read's reply is dropped and the read re-run")
{
    Link link;
    link.tracker.push(SegmentKind::replay_wait, 0x5000000);
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("SELECT 1")));
    CHECK(link.feed(select_reply("0/4000000")) == "hidden hidden hidden hidden_done");
    // The pump compares the value with the segment's lsn: short.
    CHECK(link.tracker.rerun_next_client());
    CHECK(link.tracker.awaiting_replay());
    CHECK(link.feed(select_reply("1")) == "drop drop drop rerun");
    CHECK(link.client.empty());
    CHECK_FALSE(link.tracker.awaiting_replay());
    CHECK(link.tracker.take_refusal().empty());  // not a misroute
    CHECK(link.tracker.take_kept());
}

TEST_CASE("a short replay wait whose read answers with ReadyForQuery alone")
{
    Link link;
    link.tracker.push(SegmentKind::replay_wait, 9);
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("")));
    CHECK(link.feed(select_reply("0/1")) == "hidden hidden hidden hidden_done");
    CHECK(link.tracker.rerun_next_client());
    CHECK(link.feed(be::ready_for_query()) == "rerun");
    CHECK(link.tracker.empty());
}

TEST_CASE("a short replay wait with requests queued behind the read: no re-run")
{
    Link link;
    link.tracker.push(SegmentKind::replay_wait, 9);
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("SELECT 1")));
    link.tracker.push(SegmentKind::client);
    CHECK(link.feed(select_reply("0/1")) == "hidden hidden hidden hidden_done");
    CHECK_FALSE(link.tracker.rerun_next_client());
    CHECK(link.feed(select_reply("1") + select_reply("2")) ==
          "forward forward forward forward forward forward forward forward");
}

TEST_CASE("a replay wait on its own: the caller takes the re-run back")
{
    Link link;
    CHECK(link.tracker.push(SegmentKind::replay_wait, 9) == 1);
    CHECK(link.feed(select_reply("0/1")) == "hidden hidden hidden hidden_done");
    CHECK(link.tracker.segments_done() == 1);
    CHECK(link.tracker.rerun_next_client());
    CHECK(link.tracker.cancel_rerun());
    CHECK_FALSE(link.tracker.cancel_rerun());
    CHECK_FALSE(link.tracker.awaiting_replay());
}

TEST_CASE("a FATAL on a link that owes the client nothing")
{
    const auto fatal = be::error_response("FATAL", "57P01", "terminating connection due to administrator command");
    SUBCASE("nothing owed")
    {
        Link link;
        CHECK(link.feed(fatal) == "fatal_idle");
        REQUIRE(link.last().error);
        CHECK(link.last().fatal());
        CHECK(link.last().error->sqlstate() == "57P01");
        CHECK(link.client.empty());
    }
    SUBCASE("only a hidden segment owed")
    {
        Link link;
        link.tracker.push(SegmentKind::capture_lsn);
        CHECK(link.feed(fatal) == "fatal_idle");
    }
    SUBCASE("the session holds something there: an open transaction")
    {
        Link link;
        link.session_holds_link = true;
        CHECK(link.feed(fatal) == "forward");
        CHECK(link.client == fatal);
    }
    SUBCASE("a reply owed: the client's explanation")
    {
        Link link;
        link.tracker.push(SegmentKind::client);
        CHECK(link.feed(fatal) == "forward");
        CHECK(link.last().fatal());
    }
    SUBCASE("PANIC is as fatal; an ERROR is not")
    {
        Link link;
        CHECK(link.feed(be::error_response("PANIC", "XX000", "boom")) == "fatal_idle");
        Link other;
        CHECK(other.feed(be::error_response("ERROR", "XX000", "boom")) == "forward");
        CHECK_FALSE(other.last().fatal());
    }
}

TEST_CASE("asynchronous messages outside any segment go to the client")
{
    Link link;
    const auto notice = be::error_fields({{'S', "WARNING"}, {'V', "WARNING"}, {'C', "01000"}, {'M', "hm"}}, true);
    const auto stream = concat(notice, be::parameter_status("application_name", "x"),
                               be::notification_response(42, "chan", "payload"));
    CHECK(link.feed(stream) == "forward forward forward");
    CHECK(link.client == stream);
    CHECK(link.tracker.empty());
}

TEST_CASE("asynchronous messages during hidden, swallowed and held replies")
{
    const auto notify = be::notification_response(42, "chan", "payload");
    const auto status = be::parameter_status("TimeZone", "UTC");
    SUBCASE("a hidden reply: only the notification is the client's")
    {
        Link link;
        link.tracker.push(SegmentKind::hidden);
        CHECK(link.feed(concat(status, notify, be::command_complete("SET"), be::ready_for_query())) ==
              "hidden forward hidden hidden_done");
        CHECK(link.client == notify);
    }
    SUBCASE("a reply to re-run: all dropped")
    {
        Link link;
        link.tracker.push(SegmentKind::client);
        link.tracker.keep(request_of(fe::query("SELECT writes()")));
        CHECK(link.feed(concat(read_only_error, notify, status, be::ready_for_query())) == "misrouted drop drop rerun");
        CHECK(link.client.empty());
    }
    SUBCASE("a held start: they keep their place behind it")
    {
        Link link;
        link.tracker.push(SegmentKind::client);
        link.tracker.keep(request_of(fe::query("SELECT 1")));
        const auto stream = concat(be::row_description({be::column("v")}), status, notify, be::data_row({"1"}));
        CHECK(link.feed(stream) == "hold hold hold release");
        CHECK(link.client == stream);
    }
    SUBCASE("before anything was held: forwarded, the reply still fresh")
    {
        Link link;
        link.tracker.push(SegmentKind::client);
        link.tracker.keep(request_of(fe::query("SELECT 1")));
        CHECK(link.feed(concat(notify, status)) == "forward forward");
        CHECK(link.tracker.can_rerun_unseen());
        CHECK(link.feed(read_only_error) == "misrouted");
    }
}

TEST_CASE("clear() forgets what was owed and keeps the request to re-run")
{
    Link link;
    link.tracker.push(SegmentKind::hidden);
    link.tracker.push(SegmentKind::client);
    link.tracker.keep(request_of(fe::query("SELECT 1")));
    link.tracker.push(SegmentKind::capture_lsn);
    link.tracker.push(SegmentKind::client);
    const auto dropped = link.tracker.clear();
    CHECK(dropped.client == 2);
    CHECK(dropped.capture_lsn == 1);
    CHECK(link.tracker.empty());
    CHECK(link.tracker.pending_client() == 0);
    CHECK(link.tracker.segments_sent() == 4);
    CHECK(link.tracker.take_kept());
}

TEST_CASE("MisrouteGuard: preambles are held, a refusal is kept, anything else releases")
{
    wire::MisrouteGuard guard;
    CHECK_FALSE(guard.has_request());
    guard.keep(request_of(fe::query("SELECT 1")), 7);
    CHECK(guard.keeps(7));
    CHECK_FALSE(guard.keeps(6));
    const auto frame = [](std::string_view msg) { return wire::Frame{msg[0], msg.substr(5), msg}; };
    const auto rows = be::row_description({be::column("v")});
    CHECK(guard.judge(frame(rows), nullptr) == wire::MisrouteGuard::Verdict::hold);
    CHECK(guard.holding());
    const auto row = be::data_row({"1"});
    CHECK(guard.judge(frame(row), nullptr) == wire::MisrouteGuard::Verdict::release);
    CHECK(guard.release());
    CHECK_FALSE(guard.release());
    auto fields = wire::be::parse_error_fields(frame(read_only_error).body);
    REQUIRE(fields);
    CHECK(guard.judge(frame(read_only_error), &*fields) == wire::MisrouteGuard::Verdict::misrouted);
    CHECK(guard.refusal() == read_only_error);
    CHECK(guard.take_refusal() == read_only_error);
    CHECK(guard.refusal().empty());
    CHECK(guard.take_request());
    CHECK_FALSE(guard.has_request());
}

TEST_CASE("reply preambles and standby refusals")
{
    using wire::be::Tag;
    for (const auto t : {Tag::ParseComplete, Tag::BindComplete, Tag::CloseComplete, Tag::ParameterDescription,
                         Tag::RowDescription, Tag::NoData, Tag::NoticeResponse})
        CHECK(wire::is_reply_preamble(t));
    for (const auto t : {Tag::DataRow, Tag::CommandComplete, Tag::ErrorResponse, Tag::ReadyForQuery,
                         Tag::CopyOutResponse, Tag::EmptyQueryResponse, Tag::PortalSuspended})
        CHECK_FALSE(wire::is_reply_preamble(t));
    const auto refused = [](std::string_view sqlstate, std::string_view message) {
        const auto msg = be::error_response("ERROR", sqlstate, message);
        auto fields = wire::be::parse_error_fields(std::string_view(msg).substr(5));
        REQUIRE(fields);
        return wire::refused_by_standby(*fields);
    };
    CHECK(refused("25006", "cannot execute UPDATE in a read-only transaction"));
    CHECK(refused("0A000", "cannot use serializable mode in a hot standby"));
    CHECK_FALSE(refused("0A000", "cannot do that"));
    CHECK_FALSE(refused("42501", "permission denied"));
}
