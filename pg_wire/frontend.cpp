// Frontend (client → server) message codecs (Protocol → Message Formats).
// Parsers are strict: every field is bounds-checked and a body must be
// consumed exactly, since a proxy that guesses keeps relaying out of sync.
#include "frontend.h"

#include <cassert>
#include <limits>

#include "byte_reader.h"
#include "message_writer.h"
#include "tags.h"

namespace pgswitch::wire::fe {
namespace {

/// Skips `n` Int16 format codes. Their values are the server's business
/// (it answers an unknown one with an ordinary ERROR, not a protocol error).
boost::system::error_code skip_formats(ByteReader& r, std::int16_t n) noexcept
{
    auto b = r.bytes(static_cast<std::size_t>(n) * 2);
    return b ? boost::system::error_code{} : b.error();
}

/// The shape shared by Bind and FunctionCall: Int16 format count, formats,
/// Int16 value count, values (Int32 length or -1, bytes). The server rejects
/// a format count other than 0, 1 or the value count as a protocol violation
/// (postgres.c: "bind message has %d parameter formats but %d parameters").
boost::system::error_code skip_formats_and_values(ByteReader& r) noexcept
{
    auto nformats = r.count16();
    if (!nformats)
        return nformats.error();
    if (auto ec = skip_formats(r, *nformats))
        return ec;
    auto nvalues = r.count16();
    if (!nvalues)
        return nvalues.error();
    if (*nformats > 1 && *nformats != *nvalues)
        return errc::bad_value;
    for (std::int16_t i = 0; i < *nvalues; ++i) {
        auto v = r.nullable_bytes();
        if (!v)
            return v.error();
    }
    return {};
}

/// Describe and Close share `Byte1 kind, String name`.
template <class Msg>
result<Msg> parse_kind_and_name(std::string_view body)
{
    ByteReader r(body);
    auto kind = r.u8();
    if (!kind)
        return kind.error();
    // 'S' prepared statement, 'P' portal; anything else is not a target.
    if (*kind != 'S' && *kind != 'P')
        return errc::bad_value;
    auto name = r.cstring();
    if (!name)
        return name.error();
    if (auto ec = r.expect_end())
        return ec;
    Msg m;
    m.kind = static_cast<char>(*kind);
    m.name = *name;
    return m;
}

/// A message whose whole body is one C string (Query, CopyFail, PasswordMessage).
result<std::string_view> parse_single_cstring(std::string_view body)
{
    ByteReader r(body);
    auto s = r.cstring();
    if (!s)
        return s.error();
    if (auto ec = r.expect_end())
        return ec;
    return *s;
}

std::int16_t checked_count(std::size_t n) noexcept
{
    // Callers build messages from their own data: a count above Int16 is a bug.
    assert(n <= static_cast<std::size_t>(std::numeric_limits<std::int16_t>::max()));
    return static_cast<std::int16_t>(n);
}

std::int32_t checked_length(std::size_t n) noexcept
{
    assert(n <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()));
    return static_cast<std::int32_t>(n);
}

/// Text-format values: no format codes (all text), then each value or -1.
void put_text_values(MessageWriter& w, const std::vector<std::optional<std::string>>& values)
{
    w.i16(0).i16(checked_count(values.size()));
    for (const auto& v : values)
        w.nullable_bytes(v ? std::optional<std::string_view>(*v) : std::nullopt);
}

void build_empty(std::string& out, Tag t)
{
    MessageWriter w(out);
    w.begin(tag_of(t)).finish();
}

}  // namespace

// ---- parsers -------------------------------------------------------------

result<Query> parse_query(std::string_view body)
{
    auto sql = parse_single_cstring(body);
    if (!sql)
        return sql.error();
    return Query{*sql};
}

result<Parse> parse_parse(std::string_view body)
{
    ByteReader r(body);
    auto statement = r.cstring();
    if (!statement)
        return statement.error();
    auto query = r.cstring();
    if (!query)
        return query.error();
    auto count = r.count16();
    if (!count)
        return count.error();
    auto types = r.bytes(static_cast<std::size_t>(*count) * 4);
    if (!types)
        return types.error();
    if (auto ec = r.expect_end())
        return ec;
    return Parse{*statement, *query, *count, *types};
}

result<Bind> parse_bind(std::string_view body)
{
    ByteReader r(body);
    auto portal = r.cstring();
    if (!portal)
        return portal.error();
    auto statement = r.cstring();
    if (!statement)
        return statement.error();
    // The proxy only forwards formats and values, but still walks them so a
    // malformed Bind is refused here rather than by the server mid-pipeline.
    const auto rest = r.rest();
    if (auto ec = skip_formats_and_values(r))
        return ec;
    auto nresults = r.count16();
    if (!nresults)
        return nresults.error();
    if (auto ec = skip_formats(r, *nresults))
        return ec;
    if (auto ec = r.expect_end())
        return ec;
    return Bind{*portal, *statement, rest};
}

result<Describe> parse_describe(std::string_view body)
{
    return parse_kind_and_name<Describe>(body);
}

result<Close> parse_close(std::string_view body)
{
    return parse_kind_and_name<Close>(body);
}

result<Execute> parse_execute(std::string_view body)
{
    ByteReader r(body);
    auto portal = r.cstring();
    if (!portal)
        return portal.error();
    // Not a count to allocate by: the server treats any max_rows <= 0 as "all
    // rows" (exec_execute_message), so a negative value is accepted as sent.
    auto max_rows = r.i32();
    if (!max_rows)
        return max_rows.error();
    if (auto ec = r.expect_end())
        return ec;
    return Execute{*portal, *max_rows};
}

result<CopyData> parse_copy_data(std::string_view body)
{
    return CopyData{body};
}

result<CopyFail> parse_copy_fail(std::string_view body)
{
    auto message = parse_single_cstring(body);
    if (!message)
        return message.error();
    return CopyFail{*message};
}

result<FunctionCall> parse_function_call(std::string_view body)
{
    ByteReader r(body);
    auto oid = r.i32();
    if (!oid)
        return oid.error();
    const auto rest = r.rest();
    if (auto ec = skip_formats_and_values(r))
        return ec;
    auto result_format = r.i16();
    if (!result_format)
        return result_format.error();
    if (auto ec = r.expect_end())
        return ec;
    return FunctionCall{*oid, rest};
}

result<SaslInitialResponse> parse_sasl_initial_response(std::string_view body)
{
    ByteReader r(body);
    auto mechanism = r.cstring();
    if (!mechanism)
        return mechanism.error();
    // Int32 length of the initial response, -1 when the client sends none.
    auto data = r.nullable_bytes();
    if (!data)
        return data.error();
    if (auto ec = r.expect_end())
        return ec;
    return SaslInitialResponse{*mechanism, *data};
}

result<PasswordMessage> parse_password_message(std::string_view body)
{
    auto password = parse_single_cstring(body);
    if (!password)
        return password.error();
    return PasswordMessage{*password};
}

boost::system::error_code parse_empty(std::string_view body)
{
    return ByteReader(body).expect_end();
}

// ---- builders ------------------------------------------------------------

void build_query(std::string& out, std::string_view sql)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Query)).cstring(sql).finish();
}

void build_parse(std::string& out, std::string_view statement, std::string_view query,
                 const std::vector<std::int32_t>& param_types)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Parse)).cstring(statement).cstring(query);
    w.i16(checked_count(param_types.size()));
    for (auto oid : param_types)
        w.i32(oid);
    w.finish();
}

void build_bind(std::string& out, std::string_view portal, std::string_view statement,
                const std::vector<std::optional<std::string>>& values)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Bind)).cstring(portal).cstring(statement);
    put_text_values(w, values);
    w.i16(0);  // no result format codes: every column in text
    w.finish();
}

void build_bind(std::string& out, const Bind& b)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Bind)).cstring(b.portal).cstring(b.statement).bytes(b.rest).finish();
}

void build_describe(std::string& out, char kind, std::string_view name)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Describe)).u8(static_cast<std::uint8_t>(kind)).cstring(name).finish();
}

void build_close(std::string& out, char kind, std::string_view name)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Close)).u8(static_cast<std::uint8_t>(kind)).cstring(name).finish();
}

void build_execute(std::string& out, std::string_view portal, std::int32_t max_rows)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Execute)).cstring(portal).i32(max_rows).finish();
}

void build_sync(std::string& out)
{
    build_empty(out, Tag::Sync);
}

void build_flush(std::string& out)
{
    build_empty(out, Tag::Flush);
}

void build_terminate(std::string& out)
{
    build_empty(out, Tag::Terminate);
}

void build_copy_data(std::string& out, std::string_view data)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::CopyData)).bytes(data).finish();
}

void build_copy_done(std::string& out)
{
    build_empty(out, Tag::CopyDone);
}

void build_copy_fail(std::string& out, std::string_view message)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::CopyFail)).cstring(message).finish();
}

void build_function_call(std::string& out, std::int32_t function_oid,
                         const std::vector<std::optional<std::string>>& args)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::FunctionCall)).i32(function_oid);
    put_text_values(w, args);
    w.i16(0);  // result in text
    w.finish();
}

void build_password_message(std::string& out, std::string_view password)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Password)).cstring(password).finish();
}

void build_sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Password)).cstring(mechanism);
    w.i32(checked_length(data.size())).bytes(data);
    w.finish();
}

void build_sasl_response(std::string& out, std::string_view data)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Password)).bytes(data).finish();
}

}  // namespace pgswitch::wire::fe
