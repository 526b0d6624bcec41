// Test helpers that return whole protocol messages as std::string, so tests
// never hand-count length words, plus a decoder driver that copies frames out.
// Header-only; depends on pg_wire only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "pg_wire/backend.h"
#include "pg_wire/frame.h"
#include "pg_wire/frame_decoder.h"
#include "pg_wire/frontend.h"
#include "pg_wire/message_writer.h"
#include "pg_wire/request.h"
#include "pg_wire/startup.h"

namespace pgswitch::test {

using Values = std::vector<std::optional<std::string>>;
using Params = std::vector<std::pair<std::string, std::string>>;

/// Runs a `build_*(std::string& out, args...)` function and returns what it wrote.
template <class Fn, class... Args>
std::string built(Fn&& fn, Args&&... args)
{
    std::string out;
    fn(out, std::forward<Args>(args)...);
    return out;
}

/// Concatenates messages into one stream.
template <class... Msgs>
std::string concat(const Msgs&... msgs)
{
    std::string out;
    (out.append(msgs), ...);
    return out;
}

/// The body of one built tagged message (after type byte and length).
inline std::string body_of(std::string_view msg)
{
    return std::string(msg.substr(5));
}
/// The body of one built startup-phase packet (after the length).
inline std::string startup_body_of(std::string_view msg)
{
    return std::string(msg.substr(4));
}

/// A message header with an arbitrary declared length, for the malformed-length
/// tests (the one place a test spells out a length). `tag` 0 = untagged.
inline std::string header(char tag, std::uint32_t len)
{
    std::string out;
    if (tag != '\0')
        out.push_back(tag);
    for (int shift = 24; shift >= 0; shift -= 8)
        out.push_back(static_cast<char>((len >> shift) & 0xff));
    return out;
}

/// Field bytes without any message framing, for hand-crafted bad bodies
/// (negative counts and such): `raw_body([](auto& w) { w.i16(-1); })`.
template <class Fn>
std::string raw_body(Fn&& fill)
{
    std::string out;
    wire::MessageWriter w(out);
    fill(w);
    return out;
}

/// A Frame copied out of the decoder: decoder frames are views that die at
/// the next feed(), test assertions often need them longer.
struct OwnedFrame {
    char tag = 0;
    std::string body;
    std::string raw;
    friend bool operator==(const OwnedFrame&, const OwnedFrame&) = default;
};

inline OwnedFrame own(const wire::Frame& f)
{
    return {f.tag, std::string(f.body), std::string(f.raw)};
}

/// Everything a decoder yields for a stream: the frames, then the error that
/// stopped it (empty if it simply ran out of bytes), and what stays buffered.
struct Decoded {
    std::vector<OwnedFrame> frames;
    boost::system::error_code error;
    std::size_t buffered = 0;
};

/// Pulls frames until the decoder needs more bytes or fails.
inline void drain(wire::FrameDecoder& d, Decoded& into)
{
    for (;;) {
        auto f = d.next();
        if (!f) {
            into.error = f.error();
            return;
        }
        if (!*f)
            return;
        into.frames.push_back(own(**f));
    }
}

/// Feeds `bytes` in one go and drains.
inline Decoded decode_all(std::string_view bytes, wire::FrameDecoder::Phase phase = wire::FrameDecoder::Phase::regular,
                          wire::Limits limits = {})
{
    wire::FrameDecoder d(limits, phase);
    d.feed(bytes);
    Decoded out;
    drain(d, out);
    out.buffered = d.buffered();
    return out;
}

/// The one request in `stream`, which must end at its boundary.
inline wire::Request request_of(std::string_view stream)
{
    wire::FrameDecoder dec;
    dec.feed(stream);
    wire::RequestAssembler a;
    for (;;) {
        auto f = dec.next();
        REQUIRE(f);
        REQUIRE(*f);
        if (a.push(**f))
            return a.take();
    }
}

/// Decodes exactly one message (tests assert there is exactly one).
inline OwnedFrame decode_one(std::string_view msg, wire::FrameDecoder::Phase phase = wire::FrameDecoder::Phase::regular)
{
    auto d = decode_all(msg, phase);
    if (d.error || d.frames.size() != 1 || d.buffered != 0)
        return {'?', {}, {}};
    return d.frames.front();
}

// ---- frontend messages -----------------------------------------------------
namespace fe {
inline std::string query(std::string_view sql)
{
    return built(wire::fe::build_query, sql);
}
inline std::string parse(std::string_view stmt, std::string_view sql, const std::vector<std::int32_t>& types = {})
{
    return built(wire::fe::build_parse, stmt, sql, types);
}
inline std::string bind(std::string_view portal, std::string_view stmt, const Values& values = {})
{
    std::string out;
    wire::fe::build_bind(out, portal, stmt, values);
    return out;
}
inline std::string describe(char kind, std::string_view name)
{
    return built(wire::fe::build_describe, kind, name);
}
inline std::string close(char kind, std::string_view name)
{
    return built(wire::fe::build_close, kind, name);
}
inline std::string execute(std::string_view portal, std::int32_t max_rows = 0)
{
    return built(wire::fe::build_execute, portal, max_rows);
}
inline std::string sync()
{
    return built(wire::fe::build_sync);
}
inline std::string flush()
{
    return built(wire::fe::build_flush);
}
inline std::string terminate()
{
    return built(wire::fe::build_terminate);
}
inline std::string copy_data(std::string_view data)
{
    return built(wire::fe::build_copy_data, data);
}
inline std::string copy_done()
{
    return built(wire::fe::build_copy_done);
}
inline std::string copy_fail(std::string_view msg)
{
    return built(wire::fe::build_copy_fail, msg);
}
inline std::string function_call(std::int32_t oid, const Values& args)
{
    return built(wire::fe::build_function_call, oid, args);
}
inline std::string password(std::string_view pw)
{
    return built(wire::fe::build_password_message, pw);
}
inline std::string sasl_initial_response(std::string_view mech, std::string_view data)
{
    return built(wire::fe::build_sasl_initial_response, mech, data);
}
inline std::string sasl_response(std::string_view data)
{
    return built(wire::fe::build_sasl_response, data);
}
}  // namespace fe

// ---- backend messages ------------------------------------------------------
namespace be {
inline std::string auth_ok()
{
    return built(wire::be::build_authentication_ok);
}
inline std::string auth_cleartext()
{
    return built(wire::be::build_authentication_cleartext_password);
}
inline std::string auth_md5(const std::array<char, 4>& salt)
{
    return built(wire::be::build_authentication_md5_password, salt);
}
inline std::string auth_sasl(const std::vector<std::string_view>& mechanisms)
{
    return built(wire::be::build_authentication_sasl, mechanisms);
}
inline std::string auth_sasl_continue(std::string_view data)
{
    return built(wire::be::build_authentication_sasl_continue, data);
}
inline std::string auth_sasl_final(std::string_view data)
{
    return built(wire::be::build_authentication_sasl_final, data);
}
inline std::string backend_key_data(std::int32_t pid, std::int32_t key)
{
    return built(wire::be::build_backend_key_data, pid, key);
}
inline std::string parameter_status(std::string_view name, std::string_view value)
{
    return built(wire::be::build_parameter_status, name, value);
}
inline std::string ready_for_query(wire::TxStatus s = wire::TxStatus::idle)
{
    return built(wire::be::build_ready_for_query, s);
}
inline std::string command_complete(std::string_view tag)
{
    return built(wire::be::build_command_complete, tag);
}
inline std::string empty_query_response()
{
    return built(wire::be::build_empty_query_response);
}
inline std::string parse_complete()
{
    return built(wire::be::build_parse_complete);
}
inline std::string bind_complete()
{
    return built(wire::be::build_bind_complete);
}
inline std::string close_complete()
{
    return built(wire::be::build_close_complete);
}
inline std::string no_data()
{
    return built(wire::be::build_no_data);
}
inline std::string portal_suspended()
{
    return built(wire::be::build_portal_suspended);
}
/// A text column of type `type_oid` (23 int4, 25 text) with no source table.
inline wire::be::FieldDescription column(std::string_view name, std::int32_t type_oid = 25)
{
    wire::be::FieldDescription f;
    f.name = name;
    f.type_oid = type_oid;
    f.type_size = -1;
    f.type_modifier = -1;
    return f;
}
inline std::string row_description(const std::vector<wire::be::FieldDescription>& fields)
{
    return built(wire::be::build_row_description, fields);
}
inline std::string data_row(const Values& values)
{
    return built(wire::be::build_data_row, values);
}
inline std::string parameter_description(const std::vector<std::int32_t>& oids)
{
    return built(wire::be::build_parameter_description, oids);
}
inline std::string notification_response(std::int32_t pid, std::string_view channel, std::string_view payload)
{
    return built(wire::be::build_notification_response, pid, channel, payload);
}
inline std::string copy_response(wire::be::Tag tag, std::int8_t format, std::vector<std::int16_t> column_formats)
{
    wire::be::CopyResponse r;
    r.format = format;
    r.column_formats = std::move(column_formats);
    return built(wire::be::build_copy_response, tag, r);
}
inline std::string copy_data(std::string_view data)
{
    return built(wire::be::build_copy_data, data);
}
inline std::string copy_done()
{
    return built(wire::be::build_copy_done);
}
inline std::string function_call_response(std::optional<std::string_view> value)
{
    return built(wire::be::build_function_call_response, value);
}
inline std::string negotiate_protocol_version(std::int32_t minor, const std::vector<std::string_view>& unrecognized)
{
    return built(wire::be::build_negotiate_protocol_version, minor, unrecognized);
}
inline std::string error_fields(const std::vector<std::pair<char, std::string>>& fields, bool notice = false)
{
    return built(wire::be::build_error_fields, fields, notice);
}
inline std::string error_response(std::string_view severity, std::string_view sqlstate, std::string_view message)
{
    std::string out;
    wire::be::build_error_response(out, severity, sqlstate, message);
    return out;
}
}  // namespace be

// ---- startup-phase packets -------------------------------------------------
namespace startup {
inline std::string startup_message(const Params& params)
{
    return built(wire::build_startup_message, params);
}
inline std::string ssl_request()
{
    return built(wire::build_ssl_request);
}
inline std::string gssenc_request()
{
    return built(wire::build_gssenc_request);
}
inline std::string cancel_request(std::int32_t pid, std::int32_t key)
{
    return built(wire::build_cancel_request, pid, key);
}
}  // namespace startup

}  // namespace pgswitch::test

/// Lets CHECK(r) / REQUIRE(r) take a wire::result directly. Without this,
/// doctest picks Boost's operator<< for result<T>, which fails to compile for
/// any T that is not streamable (every message view); this prints the error.
template <class T>
struct doctest::StringMaker<boost::system::result<T>> {
    static doctest::String convert(const boost::system::result<T>& r)
    {
        if (r)
            return "result(value)";
        return ("result(error: " + r.error().message() + ")").c_str();
    }
};
