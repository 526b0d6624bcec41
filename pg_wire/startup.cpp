// Startup-phase packets (Protocol → Message Formats: StartupMessage, SSLRequest,
// GSSENCRequest, CancelRequest). Pure: no I/O; parsing allocates only the
// owned parameter strings of a StartupMessage.
#include "startup.h"

#include "byte_reader.h"
#include "message_writer.h"
#include "tags.h"

namespace pgswitch::wire {
namespace {

/// The protocol major version lives in the high 16 bits of the code.
constexpr std::int32_t protocol_major(std::int32_t code) noexcept
{
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(code) >> 16);
}

/// A packet that is nothing but its request code (SSLRequest, GSSENCRequest).
template <class Packet>
result<StartupPacket> code_only(const ByteReader& r)
{
    if (auto ec = r.expect_end())
        return ec;
    return StartupPacket{Packet{}};
}

result<StartupPacket> parse_cancel_request(ByteReader& r)
{
    CancelRequest c;
    auto pid = r.i32();
    if (!pid)
        return pid.error();
    auto key = r.i32();
    if (!key)
        return key.error();
    if (auto ec = r.expect_end())
        return ec;
    c.process_id = *pid;
    c.secret_key = *key;
    return StartupPacket{c};
}

result<StartupPacket> parse_startup_message(std::int32_t code, ByteReader& r)
{
    StartupMessage m;
    m.protocol = code;
    // name/value pairs until an empty name, which is the lone terminating NUL.
    // A body that ends without it fails inside cstring() with missing_nul.
    for (;;) {
        auto name = r.cstring();
        if (!name)
            return name.error();
        if (name->empty())
            break;
        auto value = r.cstring();
        if (!value)
            return value.error();
        m.params.emplace_back(std::string(*name), std::string(*value));
    }
    if (auto ec = r.expect_end())
        return ec;
    return StartupPacket{std::move(m)};
}

void build_code_only(std::string& out, std::int32_t code)
{
    MessageWriter w(out);
    w.begin_untagged().i32(code).finish();
}

}  // namespace

std::string_view StartupMessage::get(std::string_view name) const noexcept
{
    // The last occurrence wins, as in the server's ProcessStartupPacket,
    // which simply overwrites earlier values of "user" or "database".
    std::string_view found;
    for (const auto& [n, v] : params)
        if (n == name)
            found = v;
    return found;
}

result<StartupPacket> parse_startup_packet(std::string_view body)
{
    ByteReader r(body);
    auto code = r.i32();
    if (!code)
        return code.error();
    switch (*code) {
    case startup_code::ssl_request:
        return code_only<SslRequest>(r);
    case startup_code::gssenc_request:
        return code_only<GssEncRequest>(r);
    case startup_code::cancel_request:
        return parse_cancel_request(r);
    default:
        break;
    }
    // Any 3.x is accepted: a minor above 0 is answered by the caller with
    // NegotiateProtocolVersion. Protocol 2 and unknown special codes end here.
    if (protocol_major(*code) != 3)
        return errc::unsupported_protocol;
    return parse_startup_message(*code, r);
}

void build_startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& params)
{
    MessageWriter w(out);
    w.begin_untagged().i32(startup_code::protocol_3_0);
    for (const auto& [name, value] : params)
        w.cstring(name).cstring(value);
    w.u8(0);  // empty name: end of parameters
    w.finish();
}

void build_ssl_request(std::string& out)
{
    build_code_only(out, startup_code::ssl_request);
}

void build_gssenc_request(std::string& out)
{
    build_code_only(out, startup_code::gssenc_request);
}

void build_cancel_request(std::string& out, std::int32_t process_id, std::int32_t secret_key)
{
    MessageWriter w(out);
    w.begin_untagged().i32(startup_code::cancel_request).i32(process_id).i32(secret_key).finish();
}

}  // namespace pgswitch::wire
