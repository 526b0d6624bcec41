// One server connection: TCP connect, StartupMessage, login with whatever
// method the server asks (trust, cleartext, md5, SCRAM-SHA-256), and the
// ParameterStatus/BackendKeyData it reports. Sessions then read and write
// its socket directly; health checks use simple_query().
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "asio_common.h"
#include "pg_wire/auth.h"
#include "pg_wire/backend.h"
#include "pg_wire/frame_decoder.h"

namespace pgswitch::proxy {

/// How to log in to a server as a given user.
struct ServerCredentials {
    std::optional<std::string> password;
    /// Keys recovered from the client's SCRAM exchange, for users configured
    /// with scram_secret only (PgBouncer's SCRAM pass-through idea).
    std::optional<wire::auth::Key> client_key;
    std::optional<wire::auth::Key> server_key;
};

struct ServerStartup {
    std::string user;
    std::string database;
    /// Other startup parameters, passed through as the client sent them.
    std::vector<std::pair<std::string, std::string>> params;
    ServerCredentials credentials;
};

/// Outcome of connect(): either success, or an error the client should see.
struct ConnectError {
    error_code ec;
    std::string message;       ///< for logs and for a synthesized ErrorResponse
    std::string server_error;  ///< the server's own ErrorResponse bytes, forwarded as is when set
    std::string sqlstate;      ///< that ErrorResponse's SQLSTATE ("" when the server sent none)
};

/// Rows of a simple query, text format.
struct QueryRows {
    std::vector<std::vector<std::optional<std::string>>> rows;
};

class BackendConnection {
public:
    explicit BackendConnection(asio::any_io_executor ex);

    /// Connects and logs in; on success the connection is idle after its first
    /// ReadyForQuery. `timeout` bounds the whole exchange.
    [[nodiscard]] awaitable<std::optional<ConnectError>> connect(const std::string& host, std::uint16_t port,
                                                                 const ServerStartup& startup,
                                                                 std::chrono::milliseconds timeout);

    /// Whether the server admits new connections right now, asked as cheaply
    /// as it can be: the startup packet and the server's first answer (no
    /// login). Closes the connection either way.
    [[nodiscard]] awaitable<bool> admits(const std::string& host, std::uint16_t port, const ServerStartup& startup,
                                         std::chrono::milliseconds timeout);

    /// Runs one simple-protocol query and collects its rows (health checks).
    /// Fails on ErrorResponse (message in ConnectError) or I/O error.
    [[nodiscard]] awaitable<std::variant<QueryRows, ConnectError>> simple_query(std::string_view sql);

    [[nodiscard]] awaitable<error_code> write(std::string_view bytes);

    [[nodiscard]] tcp::socket& socket() noexcept { return socket_; }
    [[nodiscard]] wire::FrameDecoder& decoder() noexcept { return decoder_; }
    [[nodiscard]] const wire::be::BackendKeyData& key() const noexcept { return key_; }
    /// The ParameterStatus messages of the login, raw, in the order received.
    [[nodiscard]] const std::string& parameter_status_messages() const noexcept { return parameter_status_; }
    /// Frees them once they were passed on (a session's own connection: ~0.5 KB each).
    void forget_parameter_status() noexcept { std::string().swap(parameter_status_); }
    [[nodiscard]] const tcp::endpoint& endpoint() const noexcept { return endpoint_; }
    void close() noexcept;
    [[nodiscard]] bool is_open() const noexcept { return socket_.is_open(); }

    /// Reads the next frame from the server (used during login and queries).
    [[nodiscard]] awaitable<std::variant<wire::Frame, error_code>> read_frame();

private:
    [[nodiscard]] awaitable<std::optional<ConnectError>> open_socket(const std::string& host, std::uint16_t port);
    [[nodiscard]] awaitable<std::optional<ConnectError>> login(const ServerStartup& startup);
    /// A PasswordMessage (cleartext or md5 response) to the server.
    [[nodiscard]] awaitable<std::optional<ConnectError>> send_password(std::string_view password);
    /// Answers one Authentication request of the login (ok, password, md5, SASL).
    [[nodiscard]] awaitable<std::optional<ConnectError>> answer_authentication(const wire::Frame& f,
                                                                               const ServerStartup& startup);
    [[nodiscard]] awaitable<std::optional<ConnectError>> authenticate_sasl(std::string_view mechanisms,
                                                                           const ServerStartup& startup);

    tcp::socket socket_;
    tcp::endpoint endpoint_;
    wire::FrameDecoder decoder_;
    wire::be::BackendKeyData key_{};
    std::string parameter_status_;
    std::string out_;
};

}  // namespace pgswitch::proxy
