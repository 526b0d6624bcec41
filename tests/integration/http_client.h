// A tiny blocking HTTP/1.1 client for the admin API tests: one request per
// connection (Connection: close), POSIX sockets, bounded by a deadline.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace e2e::http {

struct Response {
    int status = 0;                              ///< 0 when the request failed (see error)
    std::string error;                           ///< transport error, "" on success
    std::map<std::string, std::string> headers;  ///< names lower-cased
    std::string body;

    std::string header(const std::string& lower_name) const;
    /// The body as JSON; a discarded value when it does not parse.
    nlohmann::json json() const;
    /// "<status> <body>" for test messages.
    std::string str() const;
};

struct Request {
    std::string method = "GET";
    std::string path = "/";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  ///< extra headers
};

/// Sends one request to 127.0.0.1:port and reads the whole response.
Response send(int port, const Request& req, std::chrono::milliseconds timeout = std::chrono::seconds(10));

/// Shorthands; `token` non-empty adds "Authorization: Bearer <token>".
Response get(int port, const std::string& path, const std::string& token = "");
Response post(int port, const std::string& path, const std::string& body = "", const std::string& token = "");
Response del(int port, const std::string& path, const std::string& token = "");

}  // namespace e2e::http
