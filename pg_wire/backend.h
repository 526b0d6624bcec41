// Typed views and builders for backend (server → client) messages.
// parse_*() take the body of a Frame and return views into it (no allocation
// unless noted); build_*() append a whole message, type byte and length included.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "errc.h"
#include "tags.h"

namespace pgswitch::wire::be {

/// Authentication request: code and the rest of the body (SASL mechanism
/// list, md5 salt, SASL server data).
struct Authentication {
    AuthCode code = AuthCode::ok;
    std::string_view data;
};
struct BackendKeyData {
    std::int32_t process_id = 0;
    std::int32_t secret_key = 0;
};
struct ParameterStatus {
    std::string_view name;
    std::string_view value;
};
struct ReadyForQuery {
    TxStatus status = TxStatus::idle;
};
struct CommandComplete {
    std::string_view tag;  ///< e.g. "SELECT 1", "INSERT 0 1"
};
struct NotificationResponse {
    std::int32_t process_id = 0;
    std::string_view channel;
    std::string_view payload;
};
/// CopyInResponse, CopyOutResponse and CopyBothResponse share this layout.
struct CopyResponse {
    std::int8_t format = 0;  ///< 0 text, 1 binary
    std::vector<std::int16_t> column_formats;
};
struct NegotiateProtocolVersion {
    std::int32_t newest_minor = 0;
    std::vector<std::string_view> unrecognized;
};
/// One column of a RowDescription.
struct FieldDescription {
    std::string_view name;
    std::int32_t table_oid = 0;
    std::int16_t column = 0;
    std::int32_t type_oid = 0;
    std::int16_t type_size = 0;
    std::int32_t type_modifier = 0;
    std::int16_t format = 0;
};

/// Fields of an ErrorResponse or NoticeResponse (Protocol → Error and Notice
/// Message Fields), as (code, value) views. Codes are single bytes: 'S'
/// severity (localized), 'V' severity, 'C' SQLSTATE, 'M' message, 'D' detail,
/// 'H' hint, 'P' position, ...
struct ErrorFields {
    std::vector<std::pair<char, std::string_view>> fields;
    /// The value for `code`, or an empty view.
    [[nodiscard]] std::string_view get(char code) const noexcept;
    [[nodiscard]] std::string_view sqlstate() const noexcept { return get('C'); }
    [[nodiscard]] std::string_view message() const noexcept { return get('M'); }
    [[nodiscard]] std::string_view severity() const noexcept { return get('V'); }
};

[[nodiscard]] result<Authentication> parse_authentication(std::string_view body);
[[nodiscard]] result<BackendKeyData> parse_backend_key_data(std::string_view body);
[[nodiscard]] result<ParameterStatus> parse_parameter_status(std::string_view body);
[[nodiscard]] result<ReadyForQuery> parse_ready_for_query(std::string_view body);
[[nodiscard]] result<CommandComplete> parse_command_complete(std::string_view body);
[[nodiscard]] result<NotificationResponse> parse_notification_response(std::string_view body);
[[nodiscard]] result<CopyResponse> parse_copy_response(std::string_view body);
[[nodiscard]] result<NegotiateProtocolVersion> parse_negotiate_protocol_version(std::string_view body);
/// ErrorResponse and NoticeResponse bodies (allocates the field vector).
[[nodiscard]] result<ErrorFields> parse_error_fields(std::string_view body);
/// RowDescription (allocates the vector of columns).
[[nodiscard]] result<std::vector<FieldDescription>> parse_row_description(std::string_view body);
/// DataRow: column values, nullopt for NULL (allocates the vector).
[[nodiscard]] result<std::vector<std::optional<std::string_view>>> parse_data_row(std::string_view body);
/// ParameterDescription: parameter type OIDs.
[[nodiscard]] result<std::vector<std::int32_t>> parse_parameter_description(std::string_view body);
/// FunctionCallResponse: the result value, nullopt for NULL.
[[nodiscard]] result<std::optional<std::string_view>> parse_function_call_response(std::string_view body);
/// SASL mechanism names listed in an AuthenticationSASL body.
[[nodiscard]] result<std::vector<std::string_view>> parse_sasl_mechanisms(std::string_view data);

void build_authentication_ok(std::string& out);
void build_authentication_cleartext_password(std::string& out);
void build_authentication_md5_password(std::string& out, const std::array<char, 4>& salt);
void build_authentication_sasl(std::string& out, const std::vector<std::string_view>& mechanisms);
void build_authentication_sasl_continue(std::string& out, std::string_view data);
void build_authentication_sasl_final(std::string& out, std::string_view data);
void build_backend_key_data(std::string& out, std::int32_t process_id, std::int32_t secret_key);
void build_parameter_status(std::string& out, std::string_view name, std::string_view value);
void build_ready_for_query(std::string& out, TxStatus status);
void build_command_complete(std::string& out, std::string_view tag);
void build_empty_query_response(std::string& out);
void build_parse_complete(std::string& out);
void build_bind_complete(std::string& out);
void build_close_complete(std::string& out);
void build_no_data(std::string& out);
void build_portal_suspended(std::string& out);
void build_row_description(std::string& out, const std::vector<FieldDescription>& fields);
void build_data_row(std::string& out, const std::vector<std::optional<std::string>>& values);
void build_parameter_description(std::string& out, const std::vector<std::int32_t>& type_oids);
void build_notification_response(std::string& out, std::int32_t process_id, std::string_view channel,
                                 std::string_view payload);
/// tag must be CopyInResponse, CopyOutResponse or CopyBothResponse.
void build_copy_response(std::string& out, Tag tag, const CopyResponse& r);
void build_copy_data(std::string& out, std::string_view data);
void build_copy_done(std::string& out);
void build_function_call_response(std::string& out, std::optional<std::string_view> value);
void build_negotiate_protocol_version(std::string& out, std::int32_t newest_minor,
                                      const std::vector<std::string_view>& unrecognized);
/// ErrorResponse (or NoticeResponse when `notice`) from fields in order.
void build_error_fields(std::string& out, const std::vector<std::pair<char, std::string>>& fields, bool notice = false);
/// The ErrorResponse pgswitch itself sends: severity ("ERROR", "FATAL"), SQLSTATE, message,
/// then `extra` fields (code, value), e.g. {'R', "RevalidateCachedQuery"} where a client
/// tells errors apart by the server routine that raised them.
void build_error_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                          std::string_view message, const std::vector<std::pair<char, std::string_view>>& extra = {});

}  // namespace pgswitch::wire::be
