// Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest and
// CancelRequest through the startup-phase FrameDecoder, plus strict rejection.
#include <doctest/doctest.h>

#include <string>
#include <variant>

#include "pg_wire/startup.h"
#include "pg_wire/tags.h"
#include "support/builders.h"

namespace wire = pgswitch::wire;
namespace t = pgswitch::test;
using namespace std::string_literals;
using Phase = wire::FrameDecoder::Phase;

namespace {

/// Decodes one startup-phase packet and parses its body.
wire::result<wire::StartupPacket> round_trip(const std::string& msg)
{
    const auto f = t::decode_one(msg, Phase::startup);
    REQUIRE(f.tag == '\0');
    REQUIRE(f.raw == msg);
    return wire::parse_startup_packet(f.body);
}

/// A StartupMessage body with an arbitrary protocol code and raw parameter bytes.
std::string startup_body(std::int32_t code, std::string_view params)
{
    return t::raw_body([&](auto& w) { w.i32(code).bytes(params); });
}

boost::system::error_code error_of(std::string_view body)
{
    auto r = wire::parse_startup_packet(body);
    return r ? boost::system::error_code{} : r.error();
}

}  // namespace

TEST_CASE("byte-exact: SSLRequest and StartupMessage")
{
    // 80877103 = 0x04D2162F ("1234.5679").
    CHECK(t::startup::ssl_request() == "\0\0\0\x08\x04\xd2\x16\x2f"s);
    // 4 + Int32 196608 + "user\0bob\0" + "\0" = 18
    CHECK(t::startup::startup_message({{"user", "bob"}}) == "\0\0\0\x12\0\x03\0\0user\0bob\0\0"s);
}

TEST_CASE("round trip: StartupMessage keeps parameters in order")
{
    const t::Params params = {
        {"user", "alice"}, {"database", "shop"}, {"application_name", "psql"}, {"options", "-c search_path=app"}};
    auto p = round_trip(t::startup::startup_message(params));
    REQUIRE(p);
    const auto* m = std::get_if<wire::StartupMessage>(&*p);
    REQUIRE(m != nullptr);
    CHECK(m->protocol == wire::startup_code::protocol_3_0);
    CHECK(m->params == params);
    CHECK(m->get("user") == "alice");
    CHECK(m->get("database") == "shop");
    CHECK(m->get("replication").empty());  // absent → empty
}

TEST_CASE("StartupMessage: no parameters and empty values are well-formed")
{
    auto none = round_trip(t::startup::startup_message({}));
    REQUIRE(none);
    CHECK(std::get<wire::StartupMessage>(*none).params.empty());

    auto empty_value = round_trip(t::startup::startup_message({{"database", ""}}));
    REQUIRE(empty_value);
    const auto& m = std::get<wire::StartupMessage>(*empty_value);
    REQUIRE(m.params.size() == 1);
    CHECK(m.get("database").empty());
}

TEST_CASE("StartupMessage::get: the last occurrence wins, as in the server")
{
    auto p = round_trip(t::startup::startup_message({{"user", "a"}, {"user", "b"}}));
    REQUIRE(p);
    CHECK(std::get<wire::StartupMessage>(*p).get("user") == "b");
}

TEST_CASE("round trip: SSLRequest, GSSENCRequest, CancelRequest")
{
    auto ssl = round_trip(t::startup::ssl_request());
    REQUIRE(ssl);
    CHECK(std::holds_alternative<wire::SslRequest>(*ssl));

    auto gss = round_trip(t::startup::gssenc_request());
    REQUIRE(gss);
    CHECK(std::holds_alternative<wire::GssEncRequest>(*gss));

    // Keys are arbitrary 32-bit values, negative ones included.
    auto cancel = round_trip(t::startup::cancel_request(31337, -123456789));
    REQUIRE(cancel);
    const auto* c = std::get_if<wire::CancelRequest>(&*cancel);
    REQUIRE(c != nullptr);
    CHECK(c->process_id == 31337);
    CHECK(c->secret_key == -123456789);
}

TEST_CASE("protocol versions: any 3.x is accepted, other majors are refused")
{
    const auto params = "user\0u\0\0"s;
    auto v31 = wire::parse_startup_packet(startup_body((3 << 16) | 1, params));
    REQUIRE(v31);
    CHECK(std::get<wire::StartupMessage>(*v31).protocol == ((3 << 16) | 1));

    CHECK(error_of(startup_body(2 << 16, params)) == wire::errc::unsupported_protocol);
    CHECK(error_of(startup_body(4 << 16, params)) == wire::errc::unsupported_protocol);
    CHECK(error_of(startup_body(0, params)) == wire::errc::unsupported_protocol);
    CHECK(error_of(startup_body(-1, params)) == wire::errc::unsupported_protocol);
    // An unknown special request code (1234.5681) is not a protocol we speak either.
    CHECK(error_of(startup_body((1234 << 16) | 5681, "")) == wire::errc::unsupported_protocol);
}

TEST_CASE("strict: StartupMessage terminators")
{
    const auto v3 = wire::startup_code::protocol_3_0;
    // No final empty name.
    CHECK(error_of(startup_body(v3, "user\0bob\0"s)) == wire::errc::missing_nul);
    // Nothing at all after the version.
    CHECK(error_of(startup_body(v3, "")) == wire::errc::missing_nul);
    // A name without its value.
    CHECK(error_of(startup_body(v3, "user\0"s)) == wire::errc::missing_nul);
    // A value without its NUL.
    CHECK(error_of(startup_body(v3, "user\0bob"s)) == wire::errc::missing_nul);
    // Bytes after the terminator.
    CHECK(error_of(startup_body(v3, "user\0bob\0\0x"s)) == wire::errc::trailing_bytes);
    CHECK(error_of(startup_body(v3, "\0\0"s)) == wire::errc::trailing_bytes);
}

TEST_CASE("strict: every proper prefix of a startup packet body is rejected")
{
    const std::vector<std::string> msgs = {
        t::startup::startup_message({{"user", "u"}, {"database", "d"}}),
        t::startup::ssl_request(),
        t::startup::gssenc_request(),
        t::startup::cancel_request(1, 2),
    };
    for (const auto& msg : msgs) {
        const auto body = t::startup_body_of(msg);
        REQUIRE_FALSE(error_of(body));
        for (std::size_t n = 0; n < body.size(); ++n) {
            CAPTURE(n);
            const auto ec = error_of(std::string_view(body).substr(0, n));
            CHECK((ec == wire::errc::truncated || ec == wire::errc::missing_nul));
        }
        CHECK(error_of(body + "x") == wire::errc::trailing_bytes);
    }
}

TEST_CASE("strict: fixed-size special requests")
{
    // SSLRequest and GSSENCRequest are exactly their code.
    CHECK(error_of(startup_body(wire::startup_code::ssl_request, "\0"s)) == wire::errc::trailing_bytes);
    CHECK(error_of(startup_body(wire::startup_code::gssenc_request, "abcd")) == wire::errc::trailing_bytes);
    // CancelRequest is exactly 8 bytes after its code.
    CHECK(error_of(startup_body(wire::startup_code::cancel_request, "1234567")) == wire::errc::truncated);
    CHECK(error_of(startup_body(wire::startup_code::cancel_request, "123456789")) == wire::errc::trailing_bytes);
    CHECK(error_of("") == wire::errc::truncated);
    CHECK(error_of("\x04\xd2\x16"s) == wire::errc::truncated);
}

TEST_CASE("startup sequence: SSLRequest, then StartupMessage on the same decoder")
{
    // After the 'N' answer to SSLRequest the client sends its StartupMessage
    // in the clear; the decoder stays in the startup phase for it.
    wire::FrameDecoder d({}, Phase::startup);
    d.feed(t::startup::ssl_request());
    auto first = d.next();
    REQUIRE(first);
    REQUIRE(first->has_value());
    auto ssl = wire::parse_startup_packet((*first)->body);
    REQUIRE(ssl);
    CHECK(std::holds_alternative<wire::SslRequest>(*ssl));
    CHECK(d.buffered() == 0);

    const auto startup = t::startup::startup_message({{"user", "x"}});
    d.feed(startup);
    auto second = d.next();
    REQUIRE(second);
    REQUIRE(second->has_value());
    auto sm = wire::parse_startup_packet((*second)->body);
    REQUIRE(sm);
    CHECK(std::get<wire::StartupMessage>(*sm).get("user") == "x");
}
