// Backend (server → client) message codecs (Protocol → Message Formats).
// Parsers are strict and return views into the body; the few that return a
// vector say so in backend.h and never reserve more than the body can hold.
#include "backend.h"

#include <algorithm>
#include <cassert>
#include <limits>

#include "byte_reader.h"
#include "message_writer.h"
#include "tags.h"

namespace pgswitch::wire::be {
namespace {

/// Format codes (Protocol → Formats and Format Codes): 0 text, 1 binary.
constexpr bool is_format(int f) noexcept
{
    return f == 0 || f == 1;
}

std::int16_t checked_count(std::size_t n) noexcept
{
    // Messages are built from the proxy's own data: an oversized count is a bug.
    assert(n <= static_cast<std::size_t>(std::numeric_limits<std::int16_t>::max()));
    return static_cast<std::int16_t>(n);
}

std::int32_t checked_count32(std::size_t n) noexcept
{
    assert(n <= static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()));
    return static_cast<std::int32_t>(n);
}

void build_empty(std::string& out, Tag t)
{
    MessageWriter w(out);
    w.begin(tag_of(t)).finish();
}

/// Authentication request that is only its code (Ok, CleartextPassword).
void build_auth_code(std::string& out, AuthCode code)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Authentication)).i32(static_cast<std::int32_t>(code)).finish();
}

/// Authentication request with opaque data after the code (SASLContinue, SASLFinal).
void build_auth_data(std::string& out, AuthCode code, std::string_view data)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Authentication)).i32(static_cast<std::int32_t>(code)).bytes(data).finish();
}

/// Checks the data that follows an authentication code against that
/// request's layout; unknown or obsolete codes (SCMCredential = 6) are refused.
boost::system::error_code check_auth_data(AuthCode code, std::string_view data)
{
    switch (code) {
    case AuthCode::ok:
    case AuthCode::kerberos_v5:
    case AuthCode::cleartext_password:
    case AuthCode::gss:
    case AuthCode::sspi:
        return ByteReader(data).expect_end();
    case AuthCode::md5_password:
        // Exactly a 4-byte salt.
        if (data.size() < 4)
            return errc::truncated;
        return data.size() > 4 ? errc::trailing_bytes : boost::system::error_code{};
    case AuthCode::sasl: {
        auto mechanisms = parse_sasl_mechanisms(data);
        return mechanisms ? boost::system::error_code{} : mechanisms.error();
    }
    case AuthCode::gss_continue:
    case AuthCode::sasl_continue:
    case AuthCode::sasl_final:
        return {};  // mechanism-specific bytes, checked by the auth exchange
    }
    return errc::bad_value;
}

}  // namespace

std::string_view ErrorFields::get(char code) const noexcept
{
    for (const auto& [c, value] : fields)
        if (c == code)
            return value;
    return {};
}

// ---- parsers -------------------------------------------------------------

result<Authentication> parse_authentication(std::string_view body)
{
    ByteReader r(body);
    auto code = r.i32();
    if (!code)
        return code.error();
    const auto auth = static_cast<AuthCode>(*code);
    const auto data = r.rest();
    if (auto ec = check_auth_data(auth, data))
        return ec;
    return Authentication{auth, data};
}

result<BackendKeyData> parse_backend_key_data(std::string_view body)
{
    ByteReader r(body);
    auto pid = r.i32();
    if (!pid)
        return pid.error();
    auto key = r.i32();
    if (!key)
        return key.error();
    if (auto ec = r.expect_end())
        return ec;
    return BackendKeyData{*pid, *key};
}

result<ParameterStatus> parse_parameter_status(std::string_view body)
{
    ByteReader r(body);
    auto name = r.cstring();
    if (!name)
        return name.error();
    auto value = r.cstring();
    if (!value)
        return value.error();
    if (auto ec = r.expect_end())
        return ec;
    return ParameterStatus{*name, *value};
}

result<ReadyForQuery> parse_ready_for_query(std::string_view body)
{
    ByteReader r(body);
    auto status = r.u8();
    if (!status)
        return status.error();
    if (auto ec = r.expect_end())
        return ec;
    // The session's routing keys off this byte, so only the three documented
    // values are let through.
    const auto s = static_cast<TxStatus>(*status);
    if (s != TxStatus::idle && s != TxStatus::in_transaction && s != TxStatus::failed)
        return errc::bad_value;
    return ReadyForQuery{s};
}

result<CommandComplete> parse_command_complete(std::string_view body)
{
    ByteReader r(body);
    auto tag = r.cstring();
    if (!tag)
        return tag.error();
    if (auto ec = r.expect_end())
        return ec;
    return CommandComplete{*tag};
}

result<NotificationResponse> parse_notification_response(std::string_view body)
{
    ByteReader r(body);
    auto pid = r.i32();
    if (!pid)
        return pid.error();
    auto channel = r.cstring();
    if (!channel)
        return channel.error();
    auto payload = r.cstring();
    if (!payload)
        return payload.error();
    if (auto ec = r.expect_end())
        return ec;
    return NotificationResponse{*pid, *channel, *payload};
}

result<CopyResponse> parse_copy_response(std::string_view body)
{
    ByteReader r(body);
    auto format = r.u8();
    if (!format)
        return format.error();
    if (!is_format(*format))
        return errc::bad_value;
    auto count = r.count16();
    if (!count)
        return count.error();
    CopyResponse c;
    c.format = static_cast<std::int8_t>(*format);
    c.column_formats.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 2));
    for (std::int16_t i = 0; i < *count; ++i) {
        auto f = r.i16();
        if (!f)
            return f.error();
        if (!is_format(*f))
            return errc::bad_value;
        c.column_formats.push_back(*f);
    }
    if (auto ec = r.expect_end())
        return ec;
    return c;
}

result<NegotiateProtocolVersion> parse_negotiate_protocol_version(std::string_view body)
{
    ByteReader r(body);
    auto minor = r.i32();
    if (!minor)
        return minor.error();
    auto count = r.i32();
    if (!count)
        return count.error();
    if (*count < 0)
        return errc::bad_value;
    NegotiateProtocolVersion n;
    n.newest_minor = *minor;
    // Each option name takes at least its NUL.
    n.unrecognized.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 1));
    for (std::int32_t i = 0; i < *count; ++i) {
        auto name = r.cstring();
        if (!name)
            return name.error();
        n.unrecognized.push_back(*name);
    }
    if (auto ec = r.expect_end())
        return ec;
    return n;
}

result<ErrorFields> parse_error_fields(std::string_view body)
{
    ByteReader r(body);
    ErrorFields e;
    // Byte1 code, String value, repeated; a zero code byte ends the list.
    // Unknown codes are kept: "frontends should silently ignore fields of
    // unrecognized type", and the proxy may forward them.
    for (;;) {
        auto code = r.u8();
        if (!code)
            return errc::missing_nul;  // the list's terminator never came
        if (*code == 0)
            break;
        auto value = r.cstring();
        if (!value)
            return value.error();
        e.fields.emplace_back(static_cast<char>(*code), *value);
    }
    if (auto ec = r.expect_end())
        return ec;
    return e;
}

result<std::vector<FieldDescription>> parse_row_description(std::string_view body)
{
    ByteReader r(body);
    auto count = r.count16();
    if (!count)
        return count.error();
    std::vector<FieldDescription> fields;
    // NUL of the name + Int32 + Int16 + Int32 + Int16 + Int32 + Int16 = 19 bytes.
    fields.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 19));
    for (std::int16_t i = 0; i < *count; ++i) {
        FieldDescription f;
        auto name = r.cstring();
        if (!name)
            return name.error();
        auto table_oid = r.i32();
        if (!table_oid)
            return table_oid.error();
        auto column = r.i16();
        if (!column)
            return column.error();
        auto type_oid = r.i32();
        if (!type_oid)
            return type_oid.error();
        auto type_size = r.i16();
        if (!type_size)
            return type_size.error();
        auto type_modifier = r.i32();
        if (!type_modifier)
            return type_modifier.error();
        auto format = r.i16();
        if (!format)
            return format.error();
        f.name = *name;
        f.table_oid = *table_oid;
        f.column = *column;
        f.type_oid = *type_oid;
        f.type_size = *type_size;  // negative is legitimate: -1 varlena, -2 cstring
        f.type_modifier = *type_modifier;
        f.format = *format;
        fields.push_back(f);
    }
    if (auto ec = r.expect_end())
        return ec;
    return fields;
}

result<std::vector<std::optional<std::string_view>>> parse_data_row(std::string_view body)
{
    ByteReader r(body);
    auto count = r.count16();
    if (!count)
        return count.error();
    std::vector<std::optional<std::string_view>> values;
    values.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 4));
    for (std::int16_t i = 0; i < *count; ++i) {
        auto v = r.nullable_bytes();  // -1 is NULL; other negatives are bad_value
        if (!v)
            return v.error();
        values.push_back(*v);
    }
    if (auto ec = r.expect_end())
        return ec;
    return values;
}

result<std::vector<std::int32_t>> parse_parameter_description(std::string_view body)
{
    ByteReader r(body);
    auto count = r.count16();
    if (!count)
        return count.error();
    std::vector<std::int32_t> oids;
    oids.reserve(r.reserve_limit(static_cast<std::size_t>(*count), 4));
    for (std::int16_t i = 0; i < *count; ++i) {
        auto oid = r.i32();
        if (!oid)
            return oid.error();
        oids.push_back(*oid);
    }
    if (auto ec = r.expect_end())
        return ec;
    return oids;
}

result<std::optional<std::string_view>> parse_function_call_response(std::string_view body)
{
    ByteReader r(body);
    auto value = r.nullable_bytes();
    if (!value)
        return value.error();
    if (auto ec = r.expect_end())
        return ec;
    return *value;
}

result<std::vector<std::string_view>> parse_sasl_mechanisms(std::string_view data)
{
    ByteReader r(data);
    std::vector<std::string_view> names;
    // Names as C strings, ended by an empty one (a lone NUL).
    for (;;) {
        auto name = r.cstring();
        if (!name)
            return name.error();
        if (name->empty())
            break;
        names.push_back(*name);
    }
    if (auto ec = r.expect_end())
        return ec;
    return names;
}

// ---- builders ------------------------------------------------------------

void build_authentication_ok(std::string& out)
{
    build_auth_code(out, AuthCode::ok);
}

void build_authentication_cleartext_password(std::string& out)
{
    build_auth_code(out, AuthCode::cleartext_password);
}

void build_authentication_md5_password(std::string& out, const std::array<char, 4>& salt)
{
    build_auth_data(out, AuthCode::md5_password, {salt.data(), salt.size()});
}

void build_authentication_sasl(std::string& out, const std::vector<std::string_view>& mechanisms)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::Authentication)).i32(static_cast<std::int32_t>(AuthCode::sasl));
    for (auto m : mechanisms)
        w.cstring(m);
    w.u8(0);  // empty name ends the list
    w.finish();
}

void build_authentication_sasl_continue(std::string& out, std::string_view data)
{
    build_auth_data(out, AuthCode::sasl_continue, data);
}

void build_authentication_sasl_final(std::string& out, std::string_view data)
{
    build_auth_data(out, AuthCode::sasl_final, data);
}

void build_backend_key_data(std::string& out, std::int32_t process_id, std::int32_t secret_key)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::BackendKeyData)).i32(process_id).i32(secret_key).finish();
}

void build_parameter_status(std::string& out, std::string_view name, std::string_view value)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::ParameterStatus)).cstring(name).cstring(value).finish();
}

void build_ready_for_query(std::string& out, TxStatus status)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::ReadyForQuery)).u8(static_cast<std::uint8_t>(status)).finish();
}

void build_command_complete(std::string& out, std::string_view tag)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::CommandComplete)).cstring(tag).finish();
}

void build_empty_query_response(std::string& out)
{
    build_empty(out, Tag::EmptyQueryResponse);
}

void build_parse_complete(std::string& out)
{
    build_empty(out, Tag::ParseComplete);
}

void build_bind_complete(std::string& out)
{
    build_empty(out, Tag::BindComplete);
}

void build_close_complete(std::string& out)
{
    build_empty(out, Tag::CloseComplete);
}

void build_no_data(std::string& out)
{
    build_empty(out, Tag::NoData);
}

void build_portal_suspended(std::string& out)
{
    build_empty(out, Tag::PortalSuspended);
}

void build_row_description(std::string& out, const std::vector<FieldDescription>& fields)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::RowDescription)).i16(checked_count(fields.size()));
    for (const auto& f : fields) {
        w.cstring(f.name).i32(f.table_oid).i16(f.column).i32(f.type_oid);
        w.i16(f.type_size).i32(f.type_modifier).i16(f.format);
    }
    w.finish();
}

void build_data_row(std::string& out, const std::vector<std::optional<std::string>>& values)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::DataRow)).i16(checked_count(values.size()));
    for (const auto& v : values)
        w.nullable_bytes(v ? std::optional<std::string_view>(*v) : std::nullopt);
    w.finish();
}

void build_parameter_description(std::string& out, const std::vector<std::int32_t>& type_oids)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::ParameterDescription)).i16(checked_count(type_oids.size()));
    for (auto oid : type_oids)
        w.i32(oid);
    w.finish();
}

void build_notification_response(std::string& out, std::int32_t process_id, std::string_view channel,
                                 std::string_view payload)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::NotificationResponse)).i32(process_id).cstring(channel).cstring(payload);
    w.finish();
}

void build_copy_response(std::string& out, Tag tag, const CopyResponse& r)
{
    assert(tag == Tag::CopyInResponse || tag == Tag::CopyOutResponse || tag == Tag::CopyBothResponse);
    MessageWriter w(out);
    w.begin(tag_of(tag)).u8(static_cast<std::uint8_t>(r.format));
    w.i16(checked_count(r.column_formats.size()));
    for (auto f : r.column_formats)
        w.i16(f);
    w.finish();
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

void build_function_call_response(std::string& out, std::optional<std::string_view> value)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::FunctionCallResponse)).nullable_bytes(value).finish();
}

void build_negotiate_protocol_version(std::string& out, std::int32_t newest_minor,
                                      const std::vector<std::string_view>& unrecognized)
{
    MessageWriter w(out);
    w.begin(tag_of(Tag::NegotiateProtocolVersion)).i32(newest_minor);
    w.i32(checked_count32(unrecognized.size()));
    for (auto name : unrecognized)
        w.cstring(name);
    w.finish();
}

void build_error_fields(std::string& out, const std::vector<std::pair<char, std::string>>& fields, bool notice)
{
    MessageWriter w(out);
    w.begin(tag_of(notice ? Tag::NoticeResponse : Tag::ErrorResponse));
    for (const auto& [code, value] : fields) {
        assert(code != '\0');  // a zero code would end the list early
        w.u8(static_cast<std::uint8_t>(code)).cstring(value);
    }
    w.u8(0);
    w.finish();
}

void build_error_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                          std::string_view message, const std::vector<std::pair<char, std::string_view>>& extra)
{
    // 'S' is the localized severity and 'V' the untranslated one (9.6+); the
    // proxy does not localize, so both carry the same word.
    MessageWriter w(out);
    w.begin(tag_of(Tag::ErrorResponse));
    w.u8('S').cstring(severity);
    w.u8('V').cstring(severity);
    w.u8('C').cstring(sqlstate);
    w.u8('M').cstring(message);
    for (const auto& [code, value] : extra)
        w.u8(static_cast<std::uint8_t>(code)).cstring(value);
    w.u8(0);
    w.finish();
}

}  // namespace pgswitch::wire::be
