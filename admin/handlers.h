// The admin API's endpoints (SPEC §5) as pure functions of the request and
// the AdminApi: no sockets here (http_server.cpp does the I/O), so every
// handler is testable against a fake AdminApi.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "admin/admin_api.h"

namespace pgswitch::admin {

/// What the handlers see of an HTTP request.
struct Request {
    std::string method;         ///< "GET", "POST", ...
    std::string target;         ///< path, possibly with "?query"
    std::string authorization;  ///< the Authorization header, "" when absent
    std::string body;
};

struct Response {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    /// Extra headers: Allow (405), WWW-Authenticate (401), Location (201).
    std::vector<std::pair<std::string, std::string>> headers;
};

/// Routes `request` through the static route table: checks the bearer
/// token (all paths but /health), then calls the endpoint's handler.
/// Unknown path → 404, known path with another method → 405 + Allow.
/// Never throws: a handler's exception becomes a 500 JSON error.
[[nodiscard]] Response handle_request(const Request& request, AdminApi& api);

/// A JSON error body {"error": message} with `status`.
[[nodiscard]] Response error_response(int status, std::string_view message);

/// Compares a presented Authorization header against the token in constant
/// time (over SHA-256 digests, so not even the length leaks).
[[nodiscard]] bool authorized(std::string_view authorization_header, std::string_view token);

}  // namespace pgswitch::admin
