// test_decoding fallback: the lines PostgreSQL 15.18's test_decoding printed
// (pg_logical_slot_get_changes), parsed into tables and fed through a tracker.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "pg_wire/message_writer.h"
#include "pg_wire/test_decoding.h"
#include "support/builders.h"

namespace td = pgswitch::wire::test_decoding;
using boost::system::error_code;

namespace {

td::Line parsed(std::string_view text)
{
    auto l = td::parse_line(text);
    REQUIRE_MESSAGE(l.has_value(), l.error().message(), ": ", std::string(text));
    return *l;
}

using Tables = std::vector<td::TableName>;

}  // namespace

TEST_CASE("test_decoding: BEGIN and COMMIT with and without xids")
{
    CHECK(parsed("BEGIN 769").kind == td::LineKind::begin);
    CHECK(parsed("BEGIN 769").xid == 769u);
    CHECK(parsed("COMMIT 4294967295").xid == 4294967295u);
    CHECK(parsed("COMMIT 12 (at 2024-05-01 10:00:00.123456+00)").xid == 12u);  // include-timestamp
    CHECK_FALSE(parsed("BEGIN").xid);                                          // include-xids off
    for (const auto* bad : {"BEGIN x", "BEGIN 1 2", "BEGIN 99999999999", "COMMITTED", "BEGIN 1 (at x)", ""})
        CHECK_MESSAGE(!td::parse_line(bad), bad);
}

TEST_CASE("test_decoding: changes name their table, quoted or not")
{
    const auto ins = parsed("table \"My Schema\".\"t x\": INSERT: id[integer]:1 \"v v\"[text]:'a''b'");
    CHECK(ins.kind == td::LineKind::change);
    CHECK(ins.tables == Tables{{"My Schema", "t x"}});
    CHECK(parsed("table \"My Schema\".\"t x\": UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2").tables ==
          Tables{{"My Schema", "t x"}});
    CHECK(parsed("table public.t1: DELETE: id[integer]:2").tables == Tables{{"public", "t1"}});
    CHECK(parsed("table public.\"we\"\"ird\": INSERT: a[int]:1").tables == Tables{{"public", "we\"ird"}});
    CHECK(parsed("table public.t1, public.t3: TRUNCATE: (no-flags)").tables ==
          Tables{{"public", "t1"}, {"public", "t3"}});
    CHECK(parsed("message: transactional: 1 prefix: p, sz: 1 content:x").kind == td::LineKind::message);
}

TEST_CASE("test_decoding: malformed lines")
{
    for (const auto* bad : {"table public.t1 INSERT:", "table t1: INSERT: a", "table public.t1: MERGE: x",
                            "table public.\"t1: INSERT:", "table .t: INSERT:", "table public.a, public.b: INSERT: x",
                            "table public.t1:", "hello"})
        CHECK_MESSAGE(!td::parse_line(bad), bad);
}

TEST_CASE("test_decoding: TableChangeTracker over transactions, keepalive only between them")
{
    td::TableChangeTracker tracker;
    tracker.keepalive(0x100);
    CHECK(tracker.decoded_up_to() == 0x100);
    REQUIRE(tracker.feed(parsed("BEGIN 775"), 0x200).has_value());
    REQUIRE(tracker.feed(parsed("table public.t3: INSERT: id[integer]:1"), 0x210).has_value());
    REQUIRE(tracker.feed(parsed("table public.t1, public.t3: TRUNCATE: (no-flags)"), 0x220).has_value());
    REQUIRE(tracker.feed(parsed("message: transactional: 1 prefix: p, sz: 1 content:x"), 0x230).has_value());
    tracker.keepalive(0x500);
    CHECK(tracker.decoded_up_to() == 0x100);
    auto c = tracker.feed(parsed("COMMIT 775"), 0x258);
    REQUIRE(c.has_value());
    REQUIRE(*c);
    CHECK((*c)->xid == 775u);
    CHECK((*c)->end_lsn == 0x258);
    CHECK((*c)->tables == Tables{{"public", "t1"}, {"public", "t3"}});
    CHECK(tracker.decoded_up_to() == 0x258);
    CHECK_FALSE(tracker.in_transaction());
}

TEST_CASE("test_decoding: out-of-order lines are errors")
{
    const auto unexpected = error_code(pgswitch::wire::errc::unexpected_tag);
    td::TableChangeTracker tracker;
    auto err = [&](std::string_view line) {
        auto r = tracker.feed(parsed(line), 1);
        return r ? error_code{} : r.error();
    };
    CHECK(err("table public.t1: INSERT: a[int]:1") == unexpected);
    CHECK(err("COMMIT 1") == unexpected);
    CHECK(err("BEGIN 1") == error_code{});
    CHECK(err("BEGIN 2") == unexpected);
    CHECK(err("COMMIT 2") == unexpected);  // not the open transaction's xid
    CHECK(err("COMMIT 1") == error_code{});
}

namespace {

std::string xlog(std::string_view line, std::uint64_t wal_start)
{
    return pgswitch::test::raw_body([&](pgswitch::wire::MessageWriter& w) {
        w.u8('w').i64(static_cast<std::int64_t>(wal_start)).i64(0x9000).i64(7).bytes(line);
    });
}

std::string keepalive(std::uint64_t wal_end, bool reply)
{
    return pgswitch::test::raw_body([&](pgswitch::wire::MessageWriter& w) {
        w.u8('k').i64(static_cast<std::int64_t>(wal_end)).i64(9).u8(reply ? 1 : 0);
    });
}

}  // namespace

TEST_CASE("test_decoding: apply_copy_data reads XLogData lines and keepalives off the wire")
{
    td::TableChangeTracker tracker;
    auto k = td::apply_copy_data(tracker, keepalive(0x80, true));
    REQUIRE(k.has_value());
    CHECK(k->reply_requested);
    CHECK_FALSE(k->committed);
    CHECK(tracker.decoded_up_to() == 0x80);

    REQUIRE(td::apply_copy_data(tracker, xlog("BEGIN 901", 0x100)).has_value());
    REQUIRE(td::apply_copy_data(tracker, xlog("table public.nopk: UPDATE: a[integer]:2", 0x110)).has_value());
    auto c = td::apply_copy_data(tracker, xlog("COMMIT 901", 0x148));
    REQUIRE(c.has_value());
    REQUIRE(c->committed);
    CHECK(c->committed->end_lsn == 0x148);
    CHECK(c->committed->tables == Tables{{"public", "nopk"}});
    CHECK_FALSE(c->reply_requested);
    CHECK(tracker.decoded_up_to() == 0x148);

    CHECK_FALSE(td::apply_copy_data(tracker, xlog("not a test_decoding line", 0x150)).has_value());
    CHECK_FALSE(td::apply_copy_data(tracker, "x").has_value());  // neither XLogData nor keepalive
}
