// FrameDecoder: incremental framing (Envoy's byte-by-byte pattern), limits and
// sticky errors, in both the startup and the regular phase.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "pg_wire/frame_decoder.h"
#include "support/builders.h"

namespace wire = pgswitch::wire;
namespace t = pgswitch::test;
using Phase = wire::FrameDecoder::Phase;

namespace {

/// A realistic extended-protocol exchange from the client side.
std::vector<std::string> client_messages()
{
    return {t::fe::parse("s1", "SELECT $1::int", {23}),
            t::fe::bind("", "s1", {"42"}),
            t::fe::describe('P', ""),
            t::fe::execute(""),
            t::fe::sync(),
            t::fe::query("SELECT 1"),
            t::fe::copy_data(std::string(300, 'x')),
            t::fe::terminate()};
}

/// And a reply stream from the server side, including long types.
std::vector<std::string> server_messages()
{
    return {t::be::parse_complete(),
            t::be::bind_complete(),
            t::be::row_description({t::be::column("a", 23)}),
            t::be::data_row({"42"}),
            t::be::data_row({std::nullopt}),
            t::be::command_complete("SELECT 2"),
            t::be::error_response("ERROR", "42P01", "relation does not exist"),
            t::be::ready_for_query(wire::TxStatus::in_transaction)};
}

std::string join(const std::vector<std::string>& msgs)
{
    std::string s;
    for (const auto& m : msgs)
        s += m;
    return s;
}

/// Feeds `stream` one byte at a time and checks that a frame appears exactly
/// when the last byte of each message arrives, never earlier.
void check_bytewise(const std::vector<std::string>& msgs, Phase phase)
{
    const auto stream = join(msgs);
    const auto one_shot = t::decode_all(stream, phase);
    REQUIRE_FALSE(one_shot.error);
    REQUIRE(one_shot.frames.size() == msgs.size());

    std::vector<std::size_t> ends;  // offset one past each message
    std::size_t off = 0;
    for (const auto& m : msgs)
        ends.push_back(off += m.size());

    wire::FrameDecoder d({}, phase);
    t::Decoded got;
    std::size_t next_end = 0;
    for (std::size_t i = 0; i < stream.size(); ++i) {
        d.feed(stream.substr(i, 1));
        const auto before = got.frames.size();
        t::drain(d, got);
        REQUIRE_FALSE(got.error);
        if (i + 1 == ends[next_end]) {
            CHECK(got.frames.size() == before + 1);
            ++next_end;
        } else {
            CHECK(got.frames.size() == before);
        }
    }
    CHECK(got.frames == one_shot.frames);
    CHECK(d.buffered() == 0);
}

}  // namespace

TEST_CASE("FrameDecoder: one-shot feed yields every frame with tag, body and raw bytes")
{
    const auto msgs = client_messages();
    const auto d = t::decode_all(join(msgs));
    REQUIRE_FALSE(d.error);
    REQUIRE(d.frames.size() == msgs.size());
    for (std::size_t i = 0; i < msgs.size(); ++i) {
        CAPTURE(i);
        CHECK(d.frames[i].tag == msgs[i][0]);
        CHECK(d.frames[i].raw == msgs[i]);
        CHECK(d.frames[i].body == t::body_of(msgs[i]));
    }
    CHECK(d.buffered == 0);
}

TEST_CASE("FrameDecoder: byte-by-byte feed yields frames only at each message's last byte")
{
    SUBCASE("frontend stream")
    {
        check_bytewise(client_messages(), Phase::regular);
    }
    SUBCASE("backend stream")
    {
        check_bytewise(server_messages(), Phase::regular);
    }
    SUBCASE("startup packets")
    {
        check_bytewise({t::startup::ssl_request(), t::startup::gssenc_request(), t::startup::cancel_request(7, 9),
                        t::startup::startup_message({{"user", "bob"}, {"database", "db"}})},
                       Phase::startup);
    }
}

TEST_CASE("FrameDecoder: two messages in one buffer come out one per call")
{
    wire::FrameDecoder d;
    d.feed(t::concat(t::fe::query("SELECT 1"), t::fe::sync()));

    auto first = d.next();
    REQUIRE(first);
    REQUIRE(first->has_value());
    CHECK((*first)->tag == static_cast<char>(wire::fe::Tag::Query));
    CHECK((*first)->body == t::body_of(t::fe::query("SELECT 1")));

    auto second = d.next();
    REQUIRE(second);
    REQUIRE(second->has_value());
    CHECK((*second)->tag == static_cast<char>(wire::fe::Tag::Sync));
    CHECK((*second)->body.empty());

    auto third = d.next();
    REQUIRE(third);
    CHECK_FALSE(third->has_value());
    CHECK(d.buffered() == 0);
}

TEST_CASE("FrameDecoder: prepare/commit is the socket path")
{
    const auto msg = t::be::command_complete("INSERT 0 1");
    wire::FrameDecoder d;
    auto area = d.prepare(msg.size());
    REQUIRE(area.size() >= msg.size());
    std::memcpy(area.data(), msg.data(), msg.size());
    d.commit(msg.size());
    auto f = d.next();
    REQUIRE(f);
    REQUIRE(f->has_value());
    CHECK((*f)->raw == msg);
}

TEST_CASE("FrameDecoder: a partial message stays buffered and is reported as wanted")
{
    const auto msg = t::fe::query("SELECT 42");
    wire::FrameDecoder d;
    d.feed(msg.substr(0, 7));
    auto f = d.next();
    REQUIRE(f);
    CHECK_FALSE(f->has_value());
    CHECK(d.buffered() == 7);
    CHECK(d.pending() == msg.substr(0, 7));
    CHECK(d.wanted() == msg.size());
}

TEST_CASE("FrameDecoder: startup phase then regular phase on one stream")
{
    // A client may pipeline its first Query right behind the StartupMessage
    // (libpq does not, but nothing forbids it): the caller switches phase
    // between the two next() calls and nothing is lost.
    const auto startup = t::startup::startup_message({{"user", "alice"}});
    wire::FrameDecoder d({}, Phase::startup);
    d.feed(t::concat(startup, t::fe::query("SELECT 1")));

    auto f = d.next();
    REQUIRE(f);
    REQUIRE(f->has_value());
    CHECK((*f)->tag == '\0');
    CHECK((*f)->raw == startup);
    CHECK((*f)->body == t::startup_body_of(startup));

    d.set_phase(Phase::regular);
    auto q = d.next();
    REQUIRE(q);
    REQUIRE(q->has_value());
    CHECK((*q)->tag == static_cast<char>(wire::fe::Tag::Query));
}

TEST_CASE("FrameDecoder: bytes after SSLRequest stay visible in buffered()")
{
    // PgBouncer's rule: data that arrived together with SSLRequest was sent
    // before the TLS handshake, so it is an injection attempt.
    SUBCASE("clean SSLRequest")
    {
        wire::FrameDecoder d({}, Phase::startup);
        d.feed(t::startup::ssl_request());
        auto f = d.next();
        REQUIRE(f);
        REQUIRE(f->has_value());
        CHECK(d.buffered() == 0);
    }
    SUBCASE("SSLRequest with a smuggled Query behind it")
    {
        wire::FrameDecoder d({}, Phase::startup);
        d.feed(t::concat(t::startup::ssl_request(), t::fe::query("SELECT 1")));
        auto f = d.next();
        REQUIRE(f);
        REQUIRE(f->has_value());
        CHECK(d.buffered() > 0);
    }
}

TEST_CASE("FrameDecoder: declared length below the header is length_too_short")
{
    for (std::uint32_t len = 0; len < 4; ++len) {
        CAPTURE(len);
        const auto d = t::decode_all(t::concat(t::header('Q', len), std::string("abcdef")));
        CHECK(d.frames.empty());
        CHECK(d.error == wire::errc::length_too_short);
    }
    // A startup packet needs its length and its 4-byte code.
    for (std::uint32_t len = 0; len < 8; ++len) {
        CAPTURE(len);
        const auto d = t::decode_all(t::concat(t::header('\0', len), std::string(8, '\0')), Phase::startup);
        CHECK(d.error == wire::errc::length_too_short);
    }
    // The smallest legal messages decode.
    CHECK(t::decode_all(t::fe::sync()).frames.size() == 1);
    CHECK(t::decode_all(t::startup::ssl_request(), Phase::startup).frames.size() == 1);
}

TEST_CASE("FrameDecoder: max_message caps the declared length, length word included")
{
    wire::Limits limits;
    limits.max_message = 64;
    // Query length = 4 + sql + NUL: sql of 59 bytes is exactly 64.
    const auto at_limit = t::fe::query(std::string(59, 'a'));
    const auto over = t::fe::query(std::string(60, 'a'));

    const auto ok = t::decode_all(at_limit, Phase::regular, limits);
    CHECK_FALSE(ok.error);
    CHECK(ok.frames.size() == 1);

    const auto bad = t::decode_all(over, Phase::regular, limits);
    CHECK(bad.frames.empty());
    CHECK(bad.error == wire::errc::message_too_long);

    // Refused as soon as the header is in: no waiting for (or buffering of) the body.
    const auto header_only = t::decode_all(over.substr(0, 5), Phase::regular, limits);
    CHECK(header_only.error == wire::errc::message_too_long);

    // A peer announcing ~4 GiB is refused under the default limits too.
    const auto huge = t::decode_all(t::header('D', 0xFFFFFFF0u));
    CHECK(huge.error == wire::errc::message_too_long);
}

TEST_CASE("FrameDecoder: startup packets are capped at 10000 bytes")
{
    // Length = 4 (length) + 4 (code) + "user\0" + value + NUL + final NUL = 15 + value.
    const auto at_cap = t::startup::startup_message({{"user", std::string(9985, 'u')}});
    const auto over_cap = t::startup::startup_message({{"user", std::string(9986, 'u')}});
    REQUIRE(at_cap.size() == 10'000);

    const auto ok = t::decode_all(at_cap, Phase::startup);
    CHECK_FALSE(ok.error);
    CHECK(ok.frames.size() == 1);

    const auto bad = t::decode_all(over_cap.substr(0, 4), Phase::startup);
    CHECK(bad.error == wire::errc::message_too_long);
}

TEST_CASE("FrameDecoder: max_short_message applies only to types that may not be long")
{
    wire::Limits limits;
    limits.max_short_message = 100;
    const std::string big(200, 'z');

    // CommandComplete and ParameterStatus are never long in a sane server.
    CHECK(t::decode_all(t::be::command_complete(big), Phase::regular, limits).error == wire::errc::message_too_long);
    CHECK(t::decode_all(t::be::parameter_status("x", big), Phase::regular, limits).error ==
          wire::errc::message_too_long);

    // libpq's VALID_LONG_MESSAGE_TYPE: T, D, d, V, E, N, A (+ t here).
    const std::vector<std::string> long_ok = {
        t::be::row_description({t::be::column(big)}),
        t::be::data_row({big}),
        t::be::copy_data(big),
        t::be::function_call_response(std::string_view(big)),
        t::be::error_response("ERROR", "XX000", big),
        t::be::error_fields({{'S', "NOTICE"}, {'M', big}}, true),
        t::be::notification_response(1, "chan", big),
        t::be::parameter_description(std::vector<std::int32_t>(60, 23)),
    };
    for (const auto& m : long_ok) {
        CAPTURE(m[0]);
        const auto d = t::decode_all(m, Phase::regular, limits);
        CHECK_FALSE(d.error);
        CHECK(d.frames.size() == 1);
    }

    // At the limit a short type still passes; 0 disables the rule.
    CHECK_FALSE(t::decode_all(t::be::command_complete(std::string(95, 'c')), Phase::regular, limits).error);
    CHECK_FALSE(t::decode_all(t::be::command_complete(big)).error);
}

TEST_CASE("FrameDecoder: errors are sticky")
{
    wire::FrameDecoder d;
    d.feed(t::header('Q', 2));
    auto first = d.next();
    REQUIRE_FALSE(first);
    CHECK(first.error() == wire::errc::length_too_short);

    // Valid bytes afterwards change nothing: the stream is out of sync for good.
    d.feed(t::fe::query("SELECT 1"));
    for (int i = 0; i < 3; ++i) {
        auto again = d.next();
        REQUIRE_FALSE(again);
        CHECK(again.error() == wire::errc::length_too_short);
    }
    // Switching phase does not clear it either.
    d.set_phase(Phase::startup);
    CHECK_FALSE(d.next());
}

TEST_CASE("FrameDecoder: frames before a bad header are still delivered")
{
    const auto d = t::decode_all(t::concat(t::fe::sync(), t::fe::flush(), t::header('Q', 1)));
    CHECK(d.frames.size() == 2);
    CHECK(d.error == wire::errc::length_too_short);
}

TEST_CASE("FrameDecoder: shrink releases memory only when idle")
{
    wire::FrameDecoder d;
    d.feed(t::fe::query("SELECT 1").substr(0, 3));
    d.shrink();
    CHECK(d.buffered() == 3);  // partial message kept
    d.feed(t::fe::query("SELECT 1").substr(3));
    auto f = d.next();
    REQUIRE(f);
    REQUIRE(f->has_value());
    CHECK((*f)->raw == t::fe::query("SELECT 1"));
    d.shrink();
    CHECK(d.buffered() == 0);
    // Still usable afterwards.
    d.feed(t::fe::sync());
    auto s = d.next();
    REQUIRE(s);
    CHECK(s->has_value());
}

namespace {

/// What a socket read does: prepare() with the decoder's own size, copy at
/// most that much of `bytes`, commit. Returns how many bytes went in.
std::size_t socket_read(wire::FrameDecoder& d, std::string_view bytes)
{
    auto region = d.prepare();
    const auto n = std::min(region.size(), bytes.size());
    std::memcpy(region.data(), bytes.data(), n);
    d.commit(n);
    return n;
}

}  // namespace

TEST_CASE("FrameDecoder: a fresh decoder allocates nothing and reads in small pieces")
{
    wire::FrameDecoder d;
    CHECK(d.capacity() == 0);
    const auto q = t::fe::query("SELECT abalance FROM pgbench_accounts WHERE aid = 42");
    auto region = d.prepare();
    CHECK(region.size() == wire::FrameDecoder::min_read_size);
    CHECK(d.capacity() == wire::FrameDecoder::min_read_size);
    std::memcpy(region.data(), q.data(), q.size());
    d.commit(q.size());
    auto f = d.next();
    REQUIRE(f);
    REQUIRE(f->has_value());
    CHECK((*f)->raw == q);
    // one request per read, over and over: the buffer stays at its initial size
    for (int i = 0; i < 100; ++i) {
        CHECK(socket_read(d, q) == q.size());
        auto g = d.next();
        REQUIRE(g);
        REQUIRE(g->has_value());
    }
    CHECK(d.capacity() == wire::FrameDecoder::min_read_size);
    CHECK(d.read_size() == wire::FrameDecoder::min_read_size);
}

TEST_CASE("FrameDecoder: reads that fill the region double the read size up to the maximum")
{
    wire::FrameDecoder d;
    // a long stream of DataRows, as a large result set arrives from a server
    std::string stream;
    while (stream.size() < 256 * 1024)
        stream += t::be::data_row({std::string(100, 'x')});
    std::size_t off = 0;
    std::size_t reads = 0;
    std::size_t frames = 0;
    std::size_t last_read = 0;
    while (off < stream.size()) {
        last_read = socket_read(d, std::string_view(stream).substr(off));
        off += last_read;
        ++reads;
        for (;;) {
            auto f = d.next();
            REQUIRE(f);
            if (!f->has_value())
                break;
            ++frames;
        }
    }
    CHECK(frames == stream.size() / t::be::data_row({std::string(100, 'x')}).size());
    CHECK(d.read_size() == wire::FrameDecoder::max_read_size);
    CHECK(d.capacity() <= 2 * wire::FrameDecoder::max_read_size);
    // 1+2+4+8 KiB to ramp up, then 16 KiB reads: far fewer reads than at 1 KiB
    CHECK(reads < stream.size() / (8 * 1024));
}

TEST_CASE("FrameDecoder: after a burst, small reads shrink the read size and the buffer")
{
    wire::FrameDecoder d;
    std::string big;
    while (big.size() < 64 * 1024)
        big += t::be::data_row({std::string(200, 'y')});
    std::size_t off = 0;
    while (off < big.size()) {
        off += socket_read(d, std::string_view(big).substr(off));
        for (;;) {
            auto f = d.next();
            REQUIRE(f);
            if (!f->has_value())
                break;
        }
    }
    REQUIRE(d.buffered() == 0);
    CHECK(d.read_size() == wire::FrameDecoder::max_read_size);
    const auto q = t::fe::sync();
    for (int i = 0; i < 200; ++i) {
        socket_read(d, q);
        auto f = d.next();
        REQUIRE(f);
        REQUIRE(f->has_value());
    }
    CHECK(d.read_size() == wire::FrameDecoder::min_read_size);
    // drained and the read size is back at the minimum: the buffer is no
    // larger than twice that (it is released once above, not on every halving)
    (void)d.prepare();
    CHECK(d.capacity() <= 2 * wire::FrameDecoder::min_read_size);
}

TEST_CASE("FrameDecoder: a message larger than the read size grows the buffer, which is released once drained")
{
    wire::FrameDecoder d;
    const auto big = t::fe::query(std::string(100 * 1024, 'z'));
    std::size_t off = 0;
    std::size_t reads = 0;
    std::optional<std::string> got;
    while (!got) {
        off += socket_read(d, std::string_view(big).substr(off));
        ++reads;
        auto f = d.next();
        REQUIRE(f);
        if (f->has_value())
            got = std::string((*f)->raw);
        REQUIRE(reads < 40);
    }
    CHECK(*got == big);
    CHECK(d.capacity() >= big.size());
    CHECK(d.buffered() == 0);
    // the next read does not keep 100 KiB around for an idle connection
    auto region = d.prepare();
    CHECK(d.capacity() <= 2 * wire::FrameDecoder::max_read_size);
    CHECK(region.size() == d.read_size());
}

TEST_CASE("FrameDecoder: bytes already received survive a shrink of the buffer")
{
    wire::FrameDecoder d;
    const auto big = t::fe::query(std::string(40 * 1024, 'a'));
    const auto small = t::fe::query("SELECT 1");
    // the big message and the start of the next in one go (explicit size)
    const auto both = big + small.substr(0, 6);
    d.feed(both);
    auto f = d.next();
    REQUIRE(f);
    REQUIRE(f->has_value());
    CHECK((*f)->raw == big);
    CHECK(d.buffered() == 6);
    // not drained: prepare() must move the partial message, not drop it
    socket_read(d, std::string_view(small).substr(6));
    auto g = d.next();
    REQUIRE(g);
    REQUIRE(g->has_value());
    CHECK((*g)->raw == small);
}
