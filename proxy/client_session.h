// One client connection: startup (TLS, cancel, authentication), a server
// connection to the primary, then the relay of requests and replies.
// Lives on the runtime's executor; owned by its own coroutines (shared_ptr).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "asio_common.h"
#include "backend_connection.h"
#include "client_stream.h"
#include "config.h"
#include "pg_wire/frame_decoder.h"
#include "pg_wire/startup.h"
#include "pg_wire/tags.h"

namespace pgswitch::proxy {

class Runtime;

/// How a session ended; decides logging (ARCHITECTURE.md §5 SessionEnd).
enum class SessionEnd {
    client_closed,          ///< Terminate or EOF from the client
    client_protocol_error,  ///< malformed or oversized message: 08P01 then close
    auth_failed,            ///< login refused
    backend_lost,           ///< the server connection broke: 08006 then close
    shutdown,               ///< pgswitch is stopping
};
[[nodiscard]] std::string_view to_string(SessionEnd e) noexcept;

class ClientSession : public std::enable_shared_from_this<ClientSession> {
public:
    ClientSession(Runtime& runtime, tcp::socket socket);
    ~ClientSession();

    /// Spawns the session's coroutine; it keeps the session alive.
    void start();
    /// Forwards a CancelRequest for whatever this session runs now (sent on
    /// a new connection to the session's server, as PostgreSQL requires);
    /// completes once the server has closed that connection.
    [[nodiscard]] awaitable<void> cancel_running_query();
    /// Shutdown: close now if idle, else once the open transaction ends.
    void on_drain();
    /// Closes both sides; pending operations end with errors.
    void close() noexcept;

    [[nodiscard]] std::uint64_t id() const noexcept { return id_; }

private:
    awaitable<void> run();
    /// Startup packets until a StartupMessage; answers SSL/GSSENC/Cancel.
    [[nodiscard]] awaitable<std::optional<wire::StartupMessage>> read_startup();
    /// Verifies the client per its user's auth_method (client_auth.cpp).
    [[nodiscard]] awaitable<bool> authenticate(const UserConfig* user);
    [[nodiscard]] awaitable<bool> connect_server();
    awaitable<void> relay_client();
    awaitable<void> pump_server();

    [[nodiscard]] awaitable<std::optional<wire::Frame>> read_client_frame();
    /// Sends an ErrorResponse (and closes the session when FATAL).
    awaitable<void> send_fatal(std::string_view sqlstate, std::string_view message, SessionEnd why);
    [[nodiscard]] bool idle() const noexcept
    {
        return pending_ready_ == 0 && tx_status_ == wire::TxStatus::idle;
    }

    Runtime& runtime_;
    std::uint64_t id_;
    ClientStream stream_;
    std::string peer_;
    wire::FrameDecoder decoder_;
    wire::StartupMessage startup_;
    std::string user_;
    std::string database_;
    bool admitted_ = false;        // counted against max_client_connections
    bool closed_ = false;
    std::optional<SessionEnd> end_;
    /// Credentials to log in to servers as this user (password, or SCRAM keys
    /// recovered from the client's proof when only a secret is configured).
    ServerCredentials credentials_;
    std::unique_ptr<BackendConnection> server_;
    std::string server_name_;
    std::int32_t client_pid_ = 0;  // pid given to the client (the server's, in session mode)
    std::int32_t client_secret_ = 0;
    /// Queries/Syncs/FunctionCalls sent whose ReadyForQuery has not come back.
    int pending_ready_ = 0;
    wire::TxStatus tx_status_ = wire::TxStatus::idle;
    bool server_sent_fatal_ = false;
    std::string scratch_;
};

}  // namespace pgswitch::proxy
