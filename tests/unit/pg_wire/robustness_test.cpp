// Robustness: random bytes in random chunk sizes into both decoder phases and
// random or mutated bodies into every parse_*(). Any outcome is fine as long
// as it is frames or an error, and nothing crashes or trips the sanitizers
// (Envoy's StartupMessageRandomData; the fuzz target covers the same code).
#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "pg_wire/byte_reader.h"
#include "pg_wire/backend.h"
#include "pg_wire/frontend.h"
#include "pg_wire/startup.h"
#include "support/builders.h"

namespace wire = pgswitch::wire;
namespace t = pgswitch::test;
using Phase = wire::FrameDecoder::Phase;
using boost::system::error_code;

namespace {

/// Bytes biased towards the values that steer parsers: NUL, 0xFF (-1 in
/// length words), tiny counts and message type letters.
std::string random_bytes(std::mt19937& rng, std::size_t n)
{
    static constexpr char interesting[] = {'\0',   '\0', '\0', '\xff', '\x01', '\x02', '\x04',
                                           '\x05', 'S',  'P',  'Q',    'D',    'E',    'Z'};
    std::uniform_int_distribution<int> pick(0, 3);
    std::uniform_int_distribution<int> any(0, 255);
    std::uniform_int_distribution<std::size_t> which(0, sizeof interesting - 1);
    std::string s(n, '\0');
    for (auto& c : s)
        c = pick(rng) == 0 ? interesting[which(rng)] : static_cast<char>(any(rng));
    return s;
}

/// A plausible stream: real messages, some of them damaged (a byte flipped,
/// cut short, or junk inserted), so decoding gets past the first header.
std::string mangled_stream(std::mt19937& rng, bool startup)
{
    const std::vector<std::string> pool = {
        t::fe::query("SELECT 1"),
        t::fe::parse("s", "SELECT $1", {23}),
        t::fe::bind("", "s", {"1"}),
        t::fe::execute(""),
        t::fe::sync(),
        t::be::data_row({"a", std::nullopt}),
        t::be::ready_for_query(),
        t::be::error_response("ERROR", "XX000", "x"),
        t::be::row_description({t::be::column("c")}),
    };
    std::uniform_int_distribution<std::size_t> which(0, pool.size() - 1);
    std::uniform_int_distribution<int> action(0, 9);
    std::string s;
    if (startup)
        s = t::startup::startup_message({{"user", "u"}});
    const int count = std::uniform_int_distribution<int>(1, 8)(rng);
    for (int i = 0; i < count; ++i) {
        auto m = pool[which(rng)];
        switch (action(rng)) {
        case 0:
            m[std::uniform_int_distribution<std::size_t>(0, m.size() - 1)(rng)] = static_cast<char>(rng());
            break;
        case 1:
            m.resize(std::uniform_int_distribution<std::size_t>(0, m.size())(rng));
            break;
        case 2:
            m += random_bytes(rng, std::uniform_int_distribution<std::size_t>(1, 8)(rng));
            break;
        default:
            break;
        }
        s += m;
    }
    return s;
}

/// Feeds `stream` in random chunk sizes, draining after each chunk, and checks
/// the decoder's accounting: every byte is either in a frame or still buffered,
/// and a failure is permanent.
void feed_in_chunks(std::mt19937& rng, const std::string& stream, Phase phase, const wire::Limits& limits)
{
    wire::FrameDecoder d(limits, phase);
    std::uniform_int_distribution<std::size_t> chunk(1, 64);
    std::size_t fed = 0;
    std::size_t framed = 0;
    error_code failed;
    while (fed < stream.size() && !failed) {
        const auto n = std::min(chunk(rng), stream.size() - fed);
        d.feed(std::string_view(stream).substr(fed, n));
        fed += n;
        for (;;) {
            auto f = d.next();
            if (!f) {
                failed = f.error();
                break;
            }
            if (!*f)
                break;
            const auto& frame = **f;
            const std::size_t header = phase == Phase::regular ? 5 : 4;
            REQUIRE(frame.raw.size() == frame.body.size() + header);
            REQUIRE(frame.body.data() == frame.raw.data() + header);
            if (phase == Phase::startup)
                REQUIRE(frame.tag == '\0');
            framed += frame.raw.size();
        }
    }
    if (failed) {
        CHECK((failed == wire::errc::length_too_short || failed == wire::errc::message_too_long));
        auto again = d.next();
        REQUIRE_FALSE(again);
        CHECK(again.error() == failed);
    } else {
        CHECK(framed + d.buffered() == fed);
    }
}

/// Every parser under test, reduced to "accepted or not". Called only for
/// their side effect on the sanitizers; the return value is checked for sanity.
std::vector<std::function<error_code(std::string_view)>> all_parsers()
{
    auto wrap = [](auto p) {
        return std::function<error_code(std::string_view)>([p](std::string_view b) {
            auto r = p(b);
            return r ? error_code{} : r.error();
        });
    };
    namespace wf = wire::fe;
    namespace wb = wire::be;
    return {
        wrap(&wf::parse_query),
        wrap(&wf::parse_parse),
        wrap(&wf::parse_bind),
        wrap(&wf::parse_describe),
        wrap(&wf::parse_close),
        wrap(&wf::parse_execute),
        wrap(&wf::parse_copy_data),
        wrap(&wf::parse_copy_fail),
        wrap(&wf::parse_function_call),
        wrap(&wf::parse_sasl_initial_response),
        wrap(&wf::parse_sasl_response),
        wrap(&wf::parse_password_message),
        [](std::string_view b) { return wf::parse_empty(b); },
        wrap(&wb::parse_authentication),
        wrap(&wb::parse_backend_key_data),
        wrap(&wb::parse_parameter_status),
        wrap(&wb::parse_ready_for_query),
        wrap(&wb::parse_command_complete),
        wrap(&wb::parse_notification_response),
        wrap(&wb::parse_copy_response),
        wrap(&wb::parse_negotiate_protocol_version),
        wrap(&wb::parse_error_fields),
        wrap(&wb::parse_row_description),
        wrap(&wb::parse_data_row),
        wrap(&wb::parse_parameter_description),
        wrap(&wb::parse_function_call_response),
        wrap(&wb::parse_sasl_mechanisms),
        wrap(&wire::parse_startup_packet),
    };
}

bool is_wire_error(const error_code& ec)
{
    return !ec || ec.category() == wire::wire_category();
}

}  // namespace

TEST_CASE("robustness: random bytes into the regular-phase decoder")
{
    std::mt19937 rng(20240601);
    wire::Limits limits;
    // Keep declared lengths small enough that a random header does not make
    // every iteration buffer megabytes; the default limit is covered below.
    limits.max_message = 4096;
    for (int i = 0; i < 3000; ++i) {
        CAPTURE(i);
        if (i % 3 == 0)
            limits.max_short_message = 30'000;
        else
            limits.max_short_message = 0;
        const auto n = std::uniform_int_distribution<std::size_t>(0, 600)(rng);
        feed_in_chunks(rng, random_bytes(rng, n), Phase::regular, limits);
    }
}

TEST_CASE("robustness: random bytes into the startup-phase decoder")
{
    std::mt19937 rng(5432);
    for (int i = 0; i < 3000; ++i) {
        CAPTURE(i);
        const auto n = std::uniform_int_distribution<std::size_t>(0, 600)(rng);
        feed_in_chunks(rng, random_bytes(rng, n), Phase::startup, {});
    }
}

TEST_CASE("robustness: damaged message streams, both phases")
{
    // A flipped byte in a length word can announce up to max_message bytes,
    // and FrameDecoder::prepare() sizes its buffer to the declared length at
    // once; a 1 MiB cap keeps the 3000 iterations fast. The default limits get
    // fewer iterations below.
    std::mt19937 rng(6432);
    wire::Limits limits;
    limits.max_message = 1u << 20;
    for (int i = 0; i < 3000; ++i) {
        CAPTURE(i);
        const bool startup = i % 2 == 0;
        feed_in_chunks(rng, mangled_stream(rng, startup), startup ? Phase::startup : Phase::regular, limits);
    }
}

TEST_CASE("robustness: damaged message streams under the default limits")
{
    std::mt19937 rng(7432);
    for (int i = 0; i < 300; ++i) {
        CAPTURE(i);
        const bool startup = i % 2 == 0;
        feed_in_chunks(rng, mangled_stream(rng, startup), startup ? Phase::startup : Phase::regular, {});
    }
}

TEST_CASE("robustness: random bodies into every parse_*()")
{
    std::mt19937 rng(1);
    const auto parsers = all_parsers();
    for (int i = 0; i < 4000; ++i) {
        const auto n = std::uniform_int_distribution<std::size_t>(0, 48)(rng);
        const auto body = random_bytes(rng, n);
        for (std::size_t p = 0; p < parsers.size(); ++p) {
            CAPTURE(p);
            const auto ec = parsers[p](body);
            // Either accepted or rejected with one of our codes, never anything else.
            if (!is_wire_error(ec))
                FAIL("parser " << p << " returned a foreign error: " << ec.message());
        }
    }
}

TEST_CASE("robustness: mutated valid bodies into every parse_*()")
{
    std::mt19937 rng(2);
    const std::vector<std::string> seeds = {
        t::body_of(t::fe::bind("p", "s", {"1", std::nullopt})),
        t::body_of(t::fe::parse("s", "SELECT $1", {23, 25})),
        t::body_of(t::fe::function_call(1, {"x"})),
        t::body_of(t::fe::sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=x")),
        t::body_of(t::be::row_description({t::be::column("a"), t::be::column("b")})),
        t::body_of(t::be::data_row({"a", std::nullopt, "ccc"})),
        t::body_of(t::be::error_response("ERROR", "XX000", "m")),
        t::body_of(t::be::negotiate_protocol_version(0, {"a", "b"})),
        t::body_of(t::be::copy_response(wire::be::Tag::CopyOutResponse, 0, {0, 0})),
        t::body_of(t::be::auth_sasl({"SCRAM-SHA-256"})),
        t::startup_body_of(t::startup::startup_message({{"user", "u"}, {"database", "d"}})),
        t::startup_body_of(t::startup::cancel_request(1, 2)),
    };
    const auto parsers = all_parsers();
    for (int i = 0; i < 4000; ++i) {
        auto body = seeds[static_cast<std::size_t>(i) % seeds.size()];
        const int edits = std::uniform_int_distribution<int>(1, 3)(rng);
        for (int e = 0; e < edits; ++e) {
            switch (std::uniform_int_distribution<int>(0, 2)(rng)) {
            case 0:
                if (!body.empty())
                    body[std::uniform_int_distribution<std::size_t>(0, body.size() - 1)(rng)] = static_cast<char>(
                        rng());
                break;
            case 1:
                body.resize(std::uniform_int_distribution<std::size_t>(0, body.size())(rng));
                break;
            default:
                body += random_bytes(rng, 3);
                break;
            }
        }
        for (const auto& parse : parsers)
            CHECK(is_wire_error(parse(body)));
    }
}

TEST_CASE("robustness: decoding then parsing a whole random stream never misbehaves")
{
    // End to end as the session does it: frames from the decoder go to the
    // parser chosen by their tag.
    std::mt19937 rng(3);
    const auto parsers = all_parsers();
    wire::Limits limits;
    limits.max_message = 2048;
    for (int i = 0; i < 1000; ++i) {
        const auto stream = mangled_stream(rng, false) + random_bytes(rng, 64);
        const auto d = t::decode_all(stream, Phase::regular, limits);
        for (const auto& f : d.frames)
            for (const auto& parse : parsers)
                CHECK(is_wire_error(parse(f.body)));
    }
}

TEST_CASE("ByteReader::count16 rejects a negative count; reserve_limit never exceeds what the body can hold")
{
    using pgswitch::wire::ByteReader;
    const std::string neg("\xff\xff", 2);
    ByteReader a(neg);
    auto n = a.count16();
    REQUIRE_FALSE(n);
    CHECK(n.error() == pgswitch::wire::errc::bad_value);
    const std::string ok("\x00\x03rest", 6);
    ByteReader b(ok);
    auto m = b.count16();
    REQUIRE(m);
    CHECK(*m == 3);
    // 4 bytes left: at most 2 elements of 2 bytes, whatever the declared count.
    CHECK(b.reserve_limit(30000, 2) == 2);
    CHECK(b.reserve_limit(1, 2) == 1);
}
