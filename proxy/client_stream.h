// The client's byte stream: a TCP socket, upgraded to TLS after an accepted
// SSLRequest. Sends are serialized so that several producers (the server
// pumps, the session's own error replies) never interleave partial writes.
#pragma once

#include <boost/asio/ssl.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "asio_common.h"

namespace pgswitch::proxy {

class ClientStream {
public:
    explicit ClientStream(tcp::socket socket);

    /// Performs the server side of the TLS handshake on the socket.
    [[nodiscard]] awaitable<error_code> start_tls(asio::ssl::context& ctx);
    [[nodiscard]] bool is_tls() const noexcept { return tls_ != nullptr; }

    /// Reads what is available (at least one byte) into `buf`.
    [[nodiscard]] awaitable<std::tuple<error_code, std::size_t>> read_some(asio::mutable_buffer buf);

    /// Writes all of `bytes`, after anything queued before it. The bytes are
    /// copied only when another send is in progress; otherwise the caller's
    /// buffer must stay valid until this completes (it does: we co_await).
    /// Returns the first write error seen on the stream, sticky.
    [[nodiscard]] awaitable<error_code> send(std::string_view bytes);

    /// Closes the socket; pending reads and writes complete with errors.
    void close() noexcept;
    [[nodiscard]] bool is_open() const noexcept;
    [[nodiscard]] tcp::socket& socket() noexcept;
    [[nodiscard]] std::string remote_address() const;

private:
    [[nodiscard]] awaitable<error_code> write_all(std::string_view bytes);

    tcp::socket socket_;
    std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
    bool writing_ = false;
    std::string queued_;    // bytes appended while a write was in progress
    std::string inflight_;  // the queued bytes being written now
    error_code write_error_;
    asio::steady_timer drained_;  // cancelled whenever queued_ is flushed
};

}  // namespace pgswitch::proxy
