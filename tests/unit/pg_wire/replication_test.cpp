// Logical replication decoding: the streaming CopyData layer byte for byte,
// every pgoutput message type, prefixes of every message rejected, ChangeTracker
// over whole transactions, and a stream captured from PostgreSQL 15.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fixtures/pgoutput_capture.h"
#include "pg_wire/message_writer.h"
#include "pg_wire/replication.h"
#include "support/builders.h"

namespace wire = pgswitch::wire;
namespace repl = pgswitch::wire::repl;
namespace po = pgswitch::wire::pgoutput;
namespace t = pgswitch::test;
namespace capture = pgswitch::test::capture;
using namespace std::string_literals;
using boost::system::error_code;

namespace {

/// Builders for pgoutput messages and replication CopyData bodies, written
/// field by field from the docs so the parser is checked against an
/// independent spelling of each layout.
namespace build {

/// One TupleData column: kind 'n' / 'u' (no value) or 't' / 'b' with a value.
struct Col {
    char kind;
    std::string value;
};

std::string tuple(const std::vector<Col>& cols)
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.i16(static_cast<std::int16_t>(cols.size()));
        for (const auto& c : cols) {
            w.u8(static_cast<std::uint8_t>(c.kind));
            if (c.kind == 't' || c.kind == 'b')
                w.i32(static_cast<std::int32_t>(c.value.size())).bytes(c.value);
        }
    });
}

std::string begin(std::uint64_t final_lsn, std::int64_t time, std::uint32_t xid)
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.u8('B').i64(static_cast<std::int64_t>(final_lsn)).i64(time).i32(static_cast<std::int32_t>(xid));
    });
}

std::string commit(std::uint64_t commit_lsn, std::uint64_t end_lsn, std::int64_t time = 0)
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.u8('C').u8(0).i64(static_cast<std::int64_t>(commit_lsn)).i64(static_cast<std::int64_t>(end_lsn)).i64(time);
    });
}

std::string relation(std::uint32_t oid, std::string_view schema, std::string_view name,
                     const std::vector<std::string>& columns = {"id"})
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.u8('R').i32(static_cast<std::int32_t>(oid)).cstring(schema).cstring(name).u8('d');
        w.i16(static_cast<std::int16_t>(columns.size()));
        for (std::size_t i = 0; i < columns.size(); ++i)
            w.u8(i == 0 ? 1 : 0).cstring(columns[i]).i32(23).i32(-1);
    });
}

std::string insert(std::uint32_t oid, const std::vector<Col>& cols = {{'t', "1"}})
{
    return t::raw_body([&](wire::MessageWriter& w) { w.u8('I').i32(static_cast<std::int32_t>(oid)).u8('N'); }) +
           tuple(cols);
}

/// `old_marker` 0 for no old tuple, else 'K' or 'O' followed by `old`.
std::string update(std::uint32_t oid, char old_marker = 0, const std::vector<Col>& old = {},
                   const std::vector<Col>& cols = {{'t', "2"}})
{
    auto out = t::raw_body([&](wire::MessageWriter& w) { w.u8('U').i32(static_cast<std::int32_t>(oid)); });
    if (old_marker != 0)
        out += std::string(1, old_marker) + tuple(old);
    return out + "N" + tuple(cols);
}

std::string del(std::uint32_t oid, char marker = 'K', const std::vector<Col>& old = {{'t', "1"}})
{
    return t::raw_body([&](wire::MessageWriter& w) { w.u8('D').i32(static_cast<std::int32_t>(oid)); }) +
           std::string(1, marker) + tuple(old);
}

std::string truncate(const std::vector<std::uint32_t>& oids, std::uint8_t options = 0)
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.u8('T').i32(static_cast<std::int32_t>(oids.size())).u8(options);
        for (auto oid : oids)
            w.i32(static_cast<std::int32_t>(oid));
    });
}

std::string origin(std::uint64_t lsn, std::string_view name)
{
    return t::raw_body([&](wire::MessageWriter& w) { w.u8('O').i64(static_cast<std::int64_t>(lsn)).cstring(name); });
}

std::string type(std::uint32_t oid, std::string_view schema, std::string_view name)
{
    return t::raw_body(
        [&](wire::MessageWriter& w) { w.u8('Y').i32(static_cast<std::int32_t>(oid)).cstring(schema).cstring(name); });
}

std::string message(bool transactional, std::uint64_t lsn, std::string_view prefix, std::string_view content)
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.u8(transactional ? 1 : 0).i64(static_cast<std::int64_t>(lsn)).cstring(prefix).nullable_bytes(content);
    });
}

std::string xlog(std::string_view payload, std::uint64_t start = 0x100, std::uint64_t end = 0x200)
{
    return t::raw_body([&](wire::MessageWriter& w) {
        w.u8('w').i64(static_cast<std::int64_t>(start)).i64(static_cast<std::int64_t>(end)).i64(7).bytes(payload);
    });
}

std::string keepalive(std::uint64_t wal_end, bool reply = false)
{
    return t::raw_body(
        [&](wire::MessageWriter& w) { w.u8('k').i64(static_cast<std::int64_t>(wal_end)).i64(9).u8(reply ? 1 : 0); });
}

}  // namespace build

template <class T>
T parsed_as(std::string_view data)
{
    auto m = po::parse_message(data);
    REQUIRE_MESSAGE(m, m.error().message());
    REQUIRE(std::holds_alternative<T>(*m));
    return std::get<T>(*m);
}

/// The error of a result, empty on success (result<T> == error_code would need T ==).
template <class T>
error_code error_of(const wire::result<T>& r)
{
    return r ? error_code{} : r.error();
}

error_code parse_error(std::string_view data)
{
    return error_of(po::parse_message(data));
}

/// Feeds messages to a tracker; returns the commits reported, fails on errors.
std::vector<po::CommittedChanges> feed_all(po::ChangeTracker& tracker, const std::vector<std::string>& msgs)
{
    std::vector<po::CommittedChanges> out;
    for (const auto& data : msgs) {
        auto m = po::parse_message(data);
        REQUIRE_MESSAGE(m, m.error().message());
        auto c = tracker.feed(*m);
        REQUIRE_MESSAGE(c, c.error().message());
        if (*c)
            out.push_back(**c);
    }
    return out;
}

error_code feed_error(po::ChangeTracker& tracker, std::string_view data)
{
    auto m = po::parse_message(data);
    REQUIRE(m);
    auto c = tracker.feed(*m);
    return c ? error_code{} : c.error();
}

using Oids = std::vector<wire::Oid>;

}  // namespace

// ---- streaming replication CopyData ------------------------------------------------

TEST_CASE("StandbyStatusUpdate: byte-exact body and CopyData frame")
{
    repl::StandbyStatusUpdate s{0x16'B374D848, 0x16'B374D800, 0x1, 0x0102030405060708, true};
    std::string body;
    repl::build_standby_status_update_body(body, s);
    CHECK(body == "r\x00\x00\x00\x16\xb3\x74\xd8\x48"
                  "\x00\x00\x00\x16\xb3\x74\xd8\x00"
                  "\x00\x00\x00\x00\x00\x00\x00\x01"
                  "\x01\x02\x03\x04\x05\x06\x07\x08\x01"s);
    std::string frame;
    repl::build_standby_status_update(frame, s);
    // 'd', length 4 + 34, then the same body.
    CHECK(frame == "d\x00\x00\x00\x26"s + body);
    const auto f = t::decode_one(frame);
    CHECK(f.tag == 'd');
    CHECK(f.body == body);
}

TEST_CASE("StandbyStatusUpdate: the frame PostgreSQL 15 accepted")
{
    // The capture script sent this update and the slot's confirmed_flush_lsn moved to it.
    REQUIRE(capture::confirmed_flush_lsn == capture::end_lsn);
    const auto lsn = capture::end_lsn_value;
    std::string frame;
    repl::build_standby_status_update(frame, {lsn, lsn, lsn, 0, true});
    CHECK(frame == capture::status_update);
}

TEST_CASE("pg_timestamp_from_unix_us: 2000-01-01 is zero")
{
    CHECK(wire::pg_timestamp_from_unix_us(946'684'800'000'000) == 0);
    CHECK(wire::pg_timestamp_from_unix_us(946'684'800'000'001) == 1);
}

TEST_CASE("XLogData: positions, send time, payload")
{
    const auto msg = build::xlog("payload\0bytes"s, 0x16'B374D848, 0x17'00000000);  // the views point here
    auto m = repl::parse_server_message(msg);
    REQUIRE(m);
    const auto& x = std::get<repl::XLogData>(*m);
    CHECK(x.wal_start == 0x16'B374D848);
    CHECK(x.wal_end == 0x17'00000000);
    CHECK(x.send_time == 7);
    CHECK(x.data == "payload\0bytes"s);

    const auto empty_msg = build::xlog("");
    auto empty = repl::parse_server_message(empty_msg);
    REQUIRE(empty);
    CHECK(std::get<repl::XLogData>(*empty).data.empty());
}

TEST_CASE("Primary keepalive: wal end, send time, reply requested")
{
    auto m = repl::parse_server_message(build::keepalive(0xFFFF'FFFF'0000'0001, true));
    REQUIRE(m);
    const auto& k = std::get<repl::PrimaryKeepalive>(*m);
    CHECK(k.wal_end == 0xFFFF'FFFF'0000'0001);
    CHECK(k.send_time == 9);
    CHECK(k.reply_requested);
    CHECK_FALSE(std::get<repl::PrimaryKeepalive>(*repl::parse_server_message(build::keepalive(1))).reply_requested);
}

TEST_CASE("server CopyData: rejects unknown types, bad flags, leftovers and every truncation")
{
    CHECK(error_of(repl::parse_server_message("")) == error_code(wire::errc::truncated));
    CHECK(error_of(repl::parse_server_message("r")) == error_code(wire::errc::unexpected_tag));
    auto bad_flag = build::keepalive(1);
    bad_flag.back() = '\x02';
    CHECK(error_of(repl::parse_server_message(bad_flag)) == error_code(wire::errc::bad_value));
    CHECK(error_of(repl::parse_server_message(build::keepalive(1) + "x")) == error_code(wire::errc::trailing_bytes));

    const auto ka = build::keepalive(5, true);
    for (std::size_t n = 0; n < ka.size(); ++n)
        CHECK_MESSAGE(!repl::parse_server_message(ka.substr(0, n)), "keepalive prefix ", n);
    // XLogData's payload is the rest of the body: only its 25-byte header can be cut short.
    const auto x = build::xlog("abc");
    for (std::size_t n = 0; n < 25; ++n)
        CHECK_MESSAGE(!repl::parse_server_message(x.substr(0, n)), "XLogData prefix ", n);
}

// ---- pgoutput messages -----------------------------------------------------------------

TEST_CASE("pgoutput Begin and Commit")
{
    const auto b = parsed_as<po::Begin>(build::begin(0x16'B374D848, 123456789, 0xFFFFFFF0));
    CHECK(b.final_lsn == 0x16'B374D848);
    CHECK(b.commit_time == 123456789);
    CHECK(b.xid == 0xFFFFFFF0u);
    // Byte-exact for Begin: 'B', Int64 LSN, Int64 time, Int32 xid.
    CHECK(build::begin(0x0102, 0x03, 0x04) == "B\0\0\0\0\0\0\x01\x02\0\0\0\0\0\0\0\x03\0\0\0\x04"s);

    const auto c = parsed_as<po::Commit>(build::commit(0x10, 0x18, -5));
    CHECK(c.flags == 0);
    CHECK(c.commit_lsn == 0x10);
    CHECK(c.end_lsn == 0x18);
    CHECK(c.commit_time == -5);
}

TEST_CASE("pgoutput Relation: names, replica identity, columns")
{
    // Parsed views point into the bytes: keep them alive.
    const auto msg = build::relation(3'000'000'000u, "public", "orders", {"id", "total"});
    const auto r = parsed_as<po::Relation>(msg);
    CHECK(r.oid == 3'000'000'000u);
    CHECK(r.schema == "public");
    CHECK(r.name == "orders");
    CHECK(r.replica_identity == 'd');
    REQUIRE(r.columns.size() == 2);
    CHECK(r.columns[0].key);
    CHECK(r.columns[0].name == "id");
    CHECK(r.columns[0].type_oid == 23);
    CHECK(r.columns[0].type_modifier == -1);
    CHECK_FALSE(r.columns[1].key);
    CHECK(r.columns[1].name == "total");

    auto bad_identity = build::relation(1, "s", "t");
    bad_identity[1 + 4 + 2 + 2] = 'x';  // after tag, OID, "s\0", "t\0"
    CHECK(parse_error(bad_identity) == error_code(wire::errc::bad_value));
    CHECK(parsed_as<po::Relation>(build::relation(1, "", "pg_class", {})).columns.empty());
}

TEST_CASE("pgoutput Insert: TupleData with every column kind")
{
    const auto tuple = build::tuple({{'t', "42"}, {'n', ""}, {'u', ""}, {'b', "\x00\x01"s}, {'t', ""}});
    const auto msg = build::insert(77, {{'t', "42"}, {'n', ""}, {'u', ""}, {'b', "\x00\x01"s}, {'t', ""}});
    const auto i = parsed_as<po::Insert>(msg);
    CHECK(i.relation == 77);
    CHECK(i.new_tuple.column_count == 5);
    CHECK(i.new_tuple.raw == tuple);

    // Byte-exact: 'I', OID, 'N', Int16 1, 't', Int32 2, "42".
    CHECK(build::insert(77, {{'t', "42"}}) == "I\0\0\0\x4dN\0\x01t\0\0\0\x02"
                                              "42"s);
}

TEST_CASE("pgoutput Insert: malformed TupleData")
{
    auto bad_kind = build::insert(1, {{'t', "1"}});
    bad_kind[8] = 'x';  // the column kind after 'I', OID, 'N', Int16 count
    CHECK(parse_error(bad_kind) == error_code(wire::errc::bad_value));
    auto negative_len = build::insert(1, {{'t', "1"}});
    negative_len.replace(9, 4, "\xff\xff\xff\xff");
    CHECK(parse_error(negative_len) == error_code(wire::errc::bad_value));
    auto negative_count = build::insert(1, {});
    negative_count.replace(6, 2, "\xff\xff");
    CHECK(parse_error(negative_count) == error_code(wire::errc::bad_value));
    auto wrong_marker = build::insert(1);
    wrong_marker[5] = 'K';
    CHECK(parse_error(wrong_marker) == error_code(wire::errc::bad_value));
    // A length running past the end, and a count promising more columns than sent.
    auto long_len = build::insert(1, {{'t', "1"}});
    long_len.replace(9, 4, "\x00\x00\x00\x09"s);
    CHECK(parse_error(long_len) == error_code(wire::errc::truncated));
    auto big_count = build::insert(1, {{'n', ""}});
    big_count.replace(6, 2, "\x7f\xff");
    CHECK(parse_error(big_count) == error_code(wire::errc::truncated));
}

TEST_CASE("pgoutput Update: without old tuple, with old key ('K'), with old row ('O')")
{
    const auto plain = parsed_as<po::Update>(build::update(5));
    CHECK(plain.relation == 5);
    CHECK(plain.old_kind == po::OldKind::none);
    CHECK(plain.old_tuple.raw.empty());
    CHECK(plain.new_tuple.column_count == 1);

    const auto key_msg = build::update(5, 'K', {{'t', "1"}, {'n', ""}}, {{'t', "10"}, {'t', "x"}});
    const auto key = parsed_as<po::Update>(key_msg);
    CHECK(key.old_kind == po::OldKind::key);
    CHECK(key.old_tuple.column_count == 2);
    CHECK(key.old_tuple.raw == build::tuple({{'t', "1"}, {'n', ""}}));
    CHECK(key.new_tuple.raw == build::tuple({{'t', "10"}, {'t', "x"}}));

    const auto full = parsed_as<po::Update>(build::update(5, 'O', {{'t', "a"}}, {{'t', "b"}}));
    CHECK(full.old_kind == po::OldKind::full);

    // Old tuple but no new one, and an unknown marker.
    CHECK(parse_error(build::update(5, 'K').substr(0, 5 + 1 + 2)) == error_code(wire::errc::truncated));
    auto bad_marker = build::update(5);
    bad_marker[5] = 'X';
    CHECK(parse_error(bad_marker) == error_code(wire::errc::bad_value));
}

TEST_CASE("pgoutput Delete: old key or old row required")
{
    const auto key = parsed_as<po::Delete>(build::del(9));
    CHECK(key.relation == 9);
    CHECK(key.old_kind == po::OldKind::key);
    CHECK(key.old_tuple.column_count == 1);
    CHECK(parsed_as<po::Delete>(build::del(9, 'O')).old_kind == po::OldKind::full);
    CHECK(parse_error(build::del(9, 'N')) == error_code(wire::errc::bad_value));
}

TEST_CASE("pgoutput Truncate: several relations, options")
{
    const auto tr = parsed_as<po::Truncate>(
        build::truncate({10, 20, 4'000'000'000u}, po::Truncate::cascade | po::Truncate::restart_identity));
    CHECK(tr.relations == Oids{10, 20, 4'000'000'000u});
    CHECK(tr.options == 3);
    CHECK(parsed_as<po::Truncate>(build::truncate({})).relations.empty());

    auto negative = build::truncate({});
    negative.replace(1, 4, "\xff\xff\xff\xff");
    CHECK(parse_error(negative) == error_code(wire::errc::bad_value));
    // A count far beyond the body: an error, and no huge reservation on the way.
    auto huge = build::truncate({1});
    huge.replace(1, 4, "\x7f\xff\xff\xff");
    CHECK(parse_error(huge) == error_code(wire::errc::truncated));
}

TEST_CASE("pgoutput Origin, Type, Message")
{
    const auto origin_msg = build::origin(0x1234, "elsewhere");
    const auto o = parsed_as<po::Origin>(origin_msg);
    CHECK(o.commit_lsn == 0x1234);
    CHECK(o.name == "elsewhere");

    const auto type_msg = build::type(16446, "public", "mood");
    const auto y = parsed_as<po::Type>(type_msg);
    CHECK(y.oid == 16446);
    CHECK(y.schema == "public");
    CHECK(y.name == "mood");

    const auto message_msg = "M" + build::message(true, 0x99, "pgswitch", "hi\0there"s);
    const auto m = parsed_as<po::DecodingMessage>(message_msg);
    CHECK(m.transactional);
    CHECK(m.lsn == 0x99);
    CHECK(m.prefix == "pgswitch");
    CHECK(m.content == "hi\0there"s);
    CHECK_FALSE(parsed_as<po::DecodingMessage>("M" + build::message(false, 1, "", "")).transactional);
}

TEST_CASE("pgoutput: unknown types and stream-only types are refused")
{
    CHECK(parse_error("") == error_code(wire::errc::truncated));
    CHECK(parse_error("S\0\0\0\x01\x01"s) == error_code(wire::errc::unexpected_tag));  // Stream Start (v2)
    CHECK(parse_error("Z") == error_code(wire::errc::unexpected_tag));
}

TEST_CASE("pgoutput: every prefix of every message is an error, and so is one byte more")
{
    const std::vector<std::pair<const char*, std::string>> cases = {
        {"Begin", build::begin(1, 2, 3)},
        {"Commit", build::commit(1, 2)},
        {"Origin", build::origin(1, "o")},
        {"Relation", build::relation(1, "public", "t", {"a", "b"})},
        {"Relation no columns", build::relation(1, "", "t", {})},
        {"Type", build::type(1, "public", "mood")},
        {"Insert", build::insert(1, {{'t', "abc"}, {'n', ""}, {'b', "\x01"s}, {'u', ""}})},
        {"Update", build::update(1)},
        {"Update K", build::update(1, 'K', {{'t', "1"}})},
        {"Update O", build::update(1, 'O', {{'t', "1"}, {'t', "2"}})},
        {"Delete", build::del(1)},
        {"Truncate", build::truncate({1, 2, 3}, 1)},
        {"Truncate none", build::truncate({})},
        {"Message", "M" + build::message(true, 1, "p", "content")},
    };
    for (const auto& [name, msg] : cases) {
        CAPTURE(name);
        REQUIRE(po::parse_message(msg));
        for (std::size_t n = 0; n < msg.size(); ++n)
            CHECK_MESSAGE(!po::parse_message(std::string_view(msg).substr(0, n)), "prefix ", n);
        CHECK(parse_error(msg + "x") == error_code(wire::errc::trailing_bytes));
    }
}

// ---- ChangeTracker ---------------------------------------------------------------------

TEST_CASE("ChangeTracker: one transaction's relations and end LSN, relation names")
{
    po::ChangeTracker tracker;
    const auto commits = feed_all(tracker, {
                                               build::begin(0x500, 0, 700),
                                               build::relation(30, "public", "orders"),
                                               build::insert(30),
                                               build::relation(20, "", "pg_class"),
                                               build::insert(20),
                                               build::insert(30),
                                               build::del(30),
                                           });
    CHECK(commits.empty());
    CHECK(tracker.in_transaction());
    CHECK(tracker.decoded_up_to() == 0);

    auto c = tracker.feed(*po::parse_message(build::commit(0x500, 0x528)));
    REQUIRE(c);
    REQUIRE(*c);
    CHECK((*c)->xid == 700);
    CHECK((*c)->commit_lsn == 0x500);
    CHECK((*c)->end_lsn == 0x528);
    CHECK((*c)->relations == Oids{20, 30});
    CHECK((*c)->truncated.empty());
    CHECK_FALSE(tracker.in_transaction());
    CHECK(tracker.decoded_up_to() == 0x528);

    REQUIRE(tracker.relation(30));
    CHECK(tracker.relation(30)->schema == "public");
    CHECK(tracker.relation(30)->name == "orders");
    CHECK(tracker.relation(20)->schema == "pg_catalog");
    CHECK(tracker.relation(99) == nullptr);
}

TEST_CASE("ChangeTracker: update with old key tuple counts its relation")
{
    po::ChangeTracker tracker;
    const auto commits = feed_all(
        tracker, {build::begin(0x10, 0, 1), build::update(8, 'K', {{'t', "1"}}), build::commit(0x10, 0x40)});
    REQUIRE(commits.size() == 1);
    CHECK(commits[0].relations == Oids{8});
}

TEST_CASE("ChangeTracker: truncate of several relations, beside other changes")
{
    po::ChangeTracker tracker;
    const auto commits = feed_all(tracker, {build::begin(0x10, 0, 1), build::insert(5), build::truncate({7, 5, 6}),
                                            build::truncate({7}), build::commit(0x10, 0x40)});
    REQUIRE(commits.size() == 1);
    CHECK(commits[0].relations == Oids{5, 6, 7});
    CHECK(commits[0].truncated == Oids{5, 6, 7});
}

TEST_CASE("ChangeTracker: keepalive advances only with no transaction open")
{
    po::ChangeTracker tracker;
    tracker.keepalive(0x100);
    CHECK(tracker.decoded_up_to() == 0x100);
    tracker.keepalive(0x80);  // never backwards
    CHECK(tracker.decoded_up_to() == 0x100);

    (void)feed_all(tracker, {build::begin(0x300, 0, 2), build::insert(1)});
    // The server's end of WAL is past this transaction's commit, which is not decoded yet.
    tracker.keepalive(0x400);
    CHECK(tracker.decoded_up_to() == 0x100);
    (void)feed_all(tracker, {build::commit(0x300, 0x330)});
    CHECK(tracker.decoded_up_to() == 0x330);
    tracker.keepalive(0x400);
    CHECK(tracker.decoded_up_to() == 0x400);
}

TEST_CASE("ChangeTracker: a transaction with no table changes still reports its commit")
{
    po::ChangeTracker tracker;
    const auto commits = feed_all(tracker,
                                  {build::begin(0x10, 0, 1), "M" + build::message(true, 0x10, "p", "x"),
                                   build::origin(1, "o"), build::type(9, "s", "t"), build::commit(0x10, 0x20)});
    REQUIRE(commits.size() == 1);
    CHECK(commits[0].relations.empty());
    CHECK(tracker.decoded_up_to() == 0x20);
}

TEST_CASE("ChangeTracker: out-of-order streams are errors")
{
    const auto unexpected = error_code(wire::errc::unexpected_tag);
    {
        po::ChangeTracker tracker;
        CHECK(feed_error(tracker, build::insert(1)) == unexpected);
        CHECK(feed_error(tracker, build::update(1)) == unexpected);
        CHECK(feed_error(tracker, build::del(1)) == unexpected);
        CHECK(feed_error(tracker, build::truncate({1})) == unexpected);
        CHECK(feed_error(tracker, build::commit(1, 2)) == unexpected);
        // Relation, Type and non-transactional messages may come between transactions.
        CHECK(feed_error(tracker, build::relation(1, "s", "t")) == error_code{});
        CHECK(feed_error(tracker, "M" + build::message(false, 1, "p", "")) == error_code{});
    }
    {
        po::ChangeTracker tracker;
        CHECK(feed_error(tracker, build::begin(0x10, 0, 1)) == error_code{});
        CHECK(feed_error(tracker, build::begin(0x20, 0, 2)) == unexpected);
    }
    {
        po::ChangeTracker tracker;
        CHECK(feed_error(tracker, build::begin(0x10, 0, 1)) == error_code{});
        CHECK(feed_error(tracker, build::commit(0x11, 0x20)) == error_code(wire::errc::bad_value));
    }
}

TEST_CASE("apply_copy_data: XLogData into the tracker, keepalives and their reply flag")
{
    po::ChangeTracker tracker;
    auto step = po::apply_copy_data(tracker, build::keepalive(0x50, true));
    REQUIRE(step);
    CHECK(step->reply_requested);
    CHECK(tracker.decoded_up_to() == 0x50);

    REQUIRE(po::apply_copy_data(tracker, build::xlog(build::begin(0x60, 0, 3))));
    REQUIRE(po::apply_copy_data(tracker, build::xlog(build::insert(4))));
    step = po::apply_copy_data(tracker, build::xlog(build::commit(0x60, 0x70)));
    REQUIRE(step);
    REQUIRE(step->committed);
    CHECK(step->committed->relations == Oids{4});
    CHECK_FALSE(step->reply_requested);

    CHECK(error_of(po::apply_copy_data(tracker, build::xlog("Z"))) == error_code(wire::errc::unexpected_tag));
    CHECK(error_of(po::apply_copy_data(tracker, "h")) == error_code(wire::errc::unexpected_tag));
}

// ---- a stream captured from PostgreSQL 15 ---------------------------------------------------

namespace {

std::vector<std::string> captured_bodies()
{
    auto d = t::decode_all(capture::stream);
    REQUIRE_FALSE(d.error);
    REQUIRE(d.buffered == 0);
    std::vector<std::string> out;
    for (const auto& f : d.frames) {
        REQUIRE(f.tag == 'd');
        out.push_back(f.body);
    }
    return out;
}

/// The pgoutput payloads of the captured XLogData frames.
std::vector<std::string> captured_payloads()
{
    std::vector<std::string> out;
    for (const auto& body : captured_bodies()) {
        auto m = repl::parse_server_message(body);
        REQUIRE(m);
        if (const auto* x = std::get_if<repl::XLogData>(&*m))
            out.emplace_back(x->data);
    }
    return out;
}

}  // namespace

TEST_CASE("capture: every frame decodes, commits carry the workload's relations")
{
    po::ChangeTracker tracker;
    std::vector<Oids> changed;
    std::vector<Oids> truncated;
    for (const auto& body : captured_bodies()) {
        auto step = po::apply_copy_data(tracker, body);
        REQUIRE_MESSAGE(step, step.error().message());
        if (step->committed) {
            changed.push_back(step->committed->relations);
            truncated.push_back(step->committed->truncated);
            CHECK(step->committed->end_lsn > step->committed->commit_lsn);
        }
    }
    const auto t1 = capture::t1_oid, t2 = capture::t2_oid, t3 = capture::t3_oid, t4 = capture::t4_oid;
    // INSERT, UPDATE, UPDATE key, INSERT t2, UPDATE t2, DELETE t2, DELETE, INSERT big, UPDATE
    // (toast unchanged), BEGIN ... COMMIT over t1 and t3, TRUNCATE t1, t3, INSERT t4, a
    // transactional message, then (after a non-transactional one) an insert from an origin.
    const std::vector<Oids> expected = {{t1}, {t1}, {t1},     {t2},     {t2}, {t2}, {t1},
                                        {t1}, {t1}, {t1, t3}, {t1, t3}, {t4}, {},   {t3}};
    auto sorted = [](Oids v) {
        std::sort(v.begin(), v.end());
        return v;
    };
    REQUIRE(changed.size() == expected.size());
    for (std::size_t i = 0; i < expected.size(); ++i)
        CHECK_MESSAGE(changed[i] == sorted(expected[i]), "transaction ", i);
    CHECK(truncated[10] == sorted({t1, t3}));
    CHECK(tracker.decoded_up_to() >= capture::end_lsn_value);
    for (const auto oid : {t1, t2, t3, t4}) {
        REQUIRE(tracker.relation(oid));
        CHECK(tracker.relation(oid)->schema == "public");
    }
    CHECK(tracker.relation(t2)->name == "t2");
}

TEST_CASE("capture: old tuples, unchanged TOAST, Type, Origin and Message as the server sent them")
{
    std::vector<po::Update> updates;
    std::vector<po::Delete> deletes;
    std::optional<po::Type> type;
    std::optional<po::Origin> origin;
    std::vector<po::DecodingMessage> messages;
    const auto payloads = captured_payloads();  // the views below point into these
    for (const auto& data : payloads) {
        auto m = po::parse_message(data);
        REQUIRE(m);
        if (auto* u = std::get_if<po::Update>(&*m))
            updates.push_back(*u);
        if (auto* d = std::get_if<po::Delete>(&*m))
            deletes.push_back(*d);
        if (auto* y = std::get_if<po::Type>(&*m))
            type = *y;
        if (auto* o = std::get_if<po::Origin>(&*m))
            origin = *o;
        if (auto* msg = std::get_if<po::DecodingMessage>(&*m))
            messages.push_back(*msg);
    }
    REQUIRE(updates.size() == 4);
    CHECK(updates[0].old_kind == po::OldKind::none);  // SET n: key unchanged
    CHECK(updates[1].old_kind == po::OldKind::key);   // SET id: the old key
    CHECK(updates[1].old_tuple.column_count == 3);    // all columns, only the key's filled
    CHECK(updates[2].old_kind == po::OldKind::full);  // t2 has REPLICA IDENTITY FULL
    // The 2400-byte value stored out of line is not resent: 'u', and the tuple stays small.
    CHECK(updates[3].new_tuple.raw.find('u') != std::string_view::npos);
    CHECK(updates[3].new_tuple.raw.size() < 100);
    REQUIRE(deletes.size() == 2);
    CHECK(deletes[0].old_kind == po::OldKind::full);
    CHECK(deletes[1].old_kind == po::OldKind::key);
    REQUIRE(type);
    CHECK(type->oid == capture::mood_oid);
    CHECK(type->name == "mood");
    REQUIRE(origin);
    CHECK(origin->name == "elsewhere");
    CHECK(origin->commit_lsn == 0x1234);
    REQUIRE(messages.size() == 2);
    CHECK(messages[0].transactional);
    CHECK(messages[0].content == "hello");
    CHECK_FALSE(messages[1].transactional);
    CHECK(messages[1].prefix == "pgswitch");
}

TEST_CASE("capture: every prefix of every captured frame is an error")
{
    for (const auto& body : captured_bodies()) {
        auto m = repl::parse_server_message(body);
        REQUIRE(m);
        const auto* x = std::get_if<repl::XLogData>(&*m);
        if (x == nullptr) {
            for (std::size_t n = 0; n < body.size(); ++n)
                CHECK(!repl::parse_server_message(std::string_view(body).substr(0, n)));
            continue;
        }
        const std::string data(x->data);
        for (std::size_t n = 0; n < data.size(); ++n)
            if (po::parse_message(std::string_view(data).substr(0, n)))
                FAIL("prefix ", n, " of a captured '", data.front(), "' message parsed");
    }
}

TEST_CASE("replication commands: identifiers quoted, LSN in X/Y form")
{
    CHECK(repl::quote_identifier("pgswitch_cache") == "\"pgswitch_cache\"");
    CHECK(repl::quote_identifier("we\"ird") == "\"we\"\"ird\"");
    CHECK(repl::format_lsn(0) == "0/0");
    CHECK(repl::format_lsn(0x16'B374D848ull) == "16/B374D848");
    CHECK(repl::create_temporary_slot_command("pgswitch_cache_42", "pgoutput") ==
          "CREATE_REPLICATION_SLOT \"pgswitch_cache_42\" TEMPORARY LOGICAL \"pgoutput\" NOEXPORT_SNAPSHOT");
    CHECK(
        repl::start_test_decoding_command("pgswitch_cache_7", 0x2'0000ABCDull) ==
        "START_REPLICATION SLOT \"pgswitch_cache_7\" LOGICAL 2/ABCD (\"include-xids\" '1', \"skip-empty-xacts\" '1')");
}
