// Typed views and builders for frontend (client → server) messages.
// parse_*() take the body of a Frame and return views into it (no allocation);
// build_*() append a whole message, type byte and length included.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "errc.h"

namespace pgswitch::wire::fe {

/// Query: one or more SQL statements (simple query protocol).
struct Query {
    std::string_view sql;
};
/// Parse: prepared statement name ("" = unnamed), text and parameter type OIDs.
struct Parse {
    std::string_view statement;
    std::string_view query;
    std::int16_t param_type_count = 0;
    std::string_view param_types;  ///< param_type_count Int32 OIDs, raw
};
/// Bind: portal and statement names; formats and values are kept raw because
/// the proxy never needs them, only forwards them.
struct Bind {
    std::string_view portal;
    std::string_view statement;
    std::string_view rest;  ///< format codes, values, result formats
};
/// Describe and Close: kind 'S' (statement) or 'P' (portal) and a name.
struct Describe {
    char kind = 'S';
    std::string_view name;
};
struct Close {
    char kind = 'S';
    std::string_view name;
};
struct Execute {
    std::string_view portal;
    std::int32_t max_rows = 0;  ///< 0 = no limit
};
struct CopyData {
    std::string_view data;
};
struct CopyFail {
    std::string_view message;
};
/// FunctionCall (fast-path): function OID, raw argument formats/values and result format.
struct FunctionCall {
    std::int32_t function_oid = 0;
    std::string_view rest;
};
/// SASLInitialResponse: mechanism name and optional initial client response.
struct SaslInitialResponse {
    std::string_view mechanism;
    std::optional<std::string_view> data;
};
/// PasswordMessage (cleartext or md5) body: the password string.
struct PasswordMessage {
    std::string_view password;
};

[[nodiscard]] result<Query> parse_query(std::string_view body);
[[nodiscard]] result<Parse> parse_parse(std::string_view body);
[[nodiscard]] result<Bind> parse_bind(std::string_view body);
[[nodiscard]] result<Describe> parse_describe(std::string_view body);
[[nodiscard]] result<Close> parse_close(std::string_view body);
[[nodiscard]] result<Execute> parse_execute(std::string_view body);
[[nodiscard]] result<CopyData> parse_copy_data(std::string_view body);
[[nodiscard]] result<CopyFail> parse_copy_fail(std::string_view body);
[[nodiscard]] result<FunctionCall> parse_function_call(std::string_view body);
[[nodiscard]] result<SaslInitialResponse> parse_sasl_initial_response(std::string_view body);
/// SASLResponse carries raw bytes: the whole body.
[[nodiscard]] inline result<std::string_view> parse_sasl_response(std::string_view body)
{
    return body;
}
[[nodiscard]] result<PasswordMessage> parse_password_message(std::string_view body);
/// Sync, Flush, Terminate, CopyDone: the body must be empty.
[[nodiscard]] boost::system::error_code parse_empty(std::string_view body);

void build_query(std::string& out, std::string_view sql);
void build_parse(std::string& out, std::string_view statement, std::string_view query,
                 const std::vector<std::int32_t>& param_types = {});
/// Bind with all-text parameters and results; nullopt values are NULL.
void build_bind(std::string& out, std::string_view portal, std::string_view statement,
                const std::vector<std::optional<std::string>>& values = {});
/// Bind re-assembled from a parsed view (e.g. with a renamed statement).
void build_bind(std::string& out, const Bind& b);
void build_describe(std::string& out, char kind, std::string_view name);
void build_close(std::string& out, char kind, std::string_view name);
void build_execute(std::string& out, std::string_view portal, std::int32_t max_rows = 0);
void build_sync(std::string& out);
void build_flush(std::string& out);
void build_terminate(std::string& out);
void build_copy_data(std::string& out, std::string_view data);
void build_copy_done(std::string& out);
void build_copy_fail(std::string& out, std::string_view message);
/// FunctionCall with text arguments and a text result.
void build_function_call(std::string& out, std::int32_t function_oid,
                         const std::vector<std::optional<std::string>>& args);
void build_password_message(std::string& out, std::string_view password);
void build_sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data);
void build_sasl_response(std::string& out, std::string_view data);

}  // namespace pgswitch::wire::fe
