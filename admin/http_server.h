// The admin HTTP/1.1 server (Boost.Beast, coroutines): accepts on
// admin.listen, reads one request at a time per connection with keep-alive,
// a body limit and timeouts, and answers through handle_request().
// Runs on the proxy's executor; only admin/ headers and Boost here.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "admin/admin_api.h"

namespace pgswitch::admin {

struct HttpServerOptions {
    std::size_t body_limit = 64 * 1024;    ///< larger bodies get 413
    std::size_t header_limit = 16 * 1024;  ///< larger request heads get 431
    /// Reading one request, including the wait for it on a kept-alive
    /// connection: a silent client is closed after this.
    std::chrono::milliseconds read_timeout{30'000};
    std::chrono::milliseconds write_timeout{10'000};
    std::size_t max_connections = 64;  ///< more are closed at once
};

class HttpServer {
public:
    /// `api` must outlive the server's last request (it is used only while
    /// the server runs; stop() ends that).
    HttpServer(boost::asio::any_io_executor executor, AdminApi& api, HttpServerOptions options = {});
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Resolves and binds host:port (port 0 picks a free one). An error
    /// leaves the server stopped.
    [[nodiscard]] boost::system::error_code listen(const std::string& host, std::uint16_t port);
    /// Starts accepting (after a successful listen()).
    void start();
    /// Stops accepting and closes every connection; requests being handled
    /// are not answered.
    void stop() noexcept;
    [[nodiscard]] boost::asio::ip::tcp::endpoint local_endpoint() const;

    /// Acceptor, open connections and options; implementation detail, held
    /// by the server's coroutines too so they may outlive the server object.
    struct Shared;

private:
    std::shared_ptr<Shared> shared_;
};

}  // namespace pgswitch::admin
