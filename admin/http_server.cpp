#include "admin/http_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <list>

#include "admin/handlers.h"

namespace pgswitch::admin {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view server_name = "pgswitch-admin";
}  // namespace

struct HttpServer::Shared {
    Shared(asio::any_io_executor ex, AdminApi& a, HttpServerOptions o)
        : executor(std::move(ex)),
          acceptor(executor),
          api(a),
          options(o)
    {
    }
    asio::any_io_executor executor;
    tcp::acceptor acceptor;
    AdminApi& api;
    HttpServerOptions options;
    bool stopped = false;
    /// Open connections, so stop() can close them. A connection's coroutine
    /// removes its own entry.
    std::list<beast::tcp_stream*> connections;
};

namespace {

http::response<http::string_body> to_beast(const Response& r, unsigned version, bool keep_alive)
{
    http::response<http::string_body> res{static_cast<http::status>(r.status), version};
    res.set(http::field::server, server_name);
    res.set(http::field::content_type, r.content_type);
    res.set(http::field::cache_control, "no-store");
    for (const auto& [name, value] : r.headers)
        res.set(name, value);
    res.keep_alive(keep_alive);
    res.body() = r.body;
    res.prepare_payload();
    return res;
}

/// Answers a request that could not be read whole (413, 431, 400) and
/// closes: the stream is out of sync once a request was not parsed.
asio::awaitable<void> reject_and_close(beast::tcp_stream& stream, const HttpServerOptions& options, int status,
                                       std::string_view message)
{
    auto res = to_beast(error_response(status, message), 11, false);
    stream.expires_after(options.write_timeout);
    auto [ec, n] = co_await http::async_write(stream, res, use_nothrow);
    if (ec)
        co_return;
    // Half-close, then read (and drop) what the client still sends for a
    // moment: closing with unread data would reset the connection and the
    // client might lose the answer.
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(std::chrono::seconds(1));
    std::array<char, 4096> sink;
    std::size_t dropped = 0;
    while (dropped < 1024 * 1024) {
        auto [rec, got] = co_await stream.async_read_some(asio::buffer(sink), use_nothrow);
        if (rec)
            break;
        dropped += got;
    }
}

asio::awaitable<void> serve(std::shared_ptr<HttpServer::Shared> shared, tcp::socket socket)
{
    beast::tcp_stream stream(std::move(socket));
    shared->connections.push_front(&stream);
    const auto self = shared->connections.begin();
    struct Unlink {
        HttpServer::Shared& s;
        std::list<beast::tcp_stream*>::iterator it;
        ~Unlink() { s.connections.erase(it); }
    } unlink{*shared, self};

    const auto& options = shared->options;
    beast::flat_buffer buffer;
    while (!shared->stopped) {
        http::request_parser<http::string_body> parser;
        parser.body_limit(options.body_limit);
        parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
        stream.expires_after(options.read_timeout);
        auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
        error_code ec = hec;
        if (!ec) {
            // curl and others wait for "100 Continue" before a larger body.
            const auto& head = parser.get();
            if (beast::iequals(head[http::field::expect], "100-continue")) {
                http::response<http::empty_body> cont{http::status::continue_, head.version()};
                cont.set(http::field::server, server_name);
                auto [cec, cn] = co_await http::async_write(stream, cont, use_nothrow);
                ec = cec;
            }
        }
        if (!ec) {
            auto [bec, bn] = co_await http::async_read(stream, buffer, parser, use_nothrow);
            ec = bec;
        }
        if (ec) {
            // A closed, timed-out or reset connection needs no answer.
            if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == beast::error::timeout ||
                ec == asio::error::operation_aborted || ec == asio::error::connection_reset || shared->stopped)
                break;
            if (ec == http::error::body_limit)
                co_await reject_and_close(stream, options, 413,
                                          "request body larger than " + std::to_string(options.body_limit) + " bytes");
            else if (ec == http::error::header_limit)
                co_await reject_and_close(stream, options, 431, "request header too large");
            else if (ec.category() == http::make_error_code(http::error::end_of_stream).category())
                co_await reject_and_close(stream, options, 400, "malformed HTTP request: " + ec.message());
            break;
        }

        const auto& req = parser.get();
        Request r;
        r.method = std::string(req.method_string());
        r.target = std::string(req.target());
        r.authorization = std::string(req[http::field::authorization]);
        r.body = req.body();
        const bool keep_alive = req.keep_alive() && !shared->stopped;
        auto res = to_beast(handle_request(r, shared->api), req.version(), keep_alive);
        if (shared->stopped)
            break;
        stream.expires_after(options.write_timeout);
        auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
        if (wec || !keep_alive)
            break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.socket().close(ignored);
}

asio::awaitable<void> accept_loop(std::shared_ptr<HttpServer::Shared> shared)
{
    asio::steady_timer backoff(shared->executor);
    while (!shared->stopped && shared->acceptor.is_open()) {
        auto [ec, socket] = co_await shared->acceptor.async_accept(use_nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted || shared->stopped)
                break;
            backoff.expires_after(std::chrono::milliseconds(100));  // EMFILE and the like
            auto [tec] = co_await backoff.async_wait(use_nothrow);
            (void)tec;
            continue;
        }
        if (shared->connections.size() >= shared->options.max_connections) {
            error_code ignored;
            socket.close(ignored);
            continue;
        }
        error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        asio::co_spawn(shared->executor, serve(shared, std::move(socket)), asio::detached);
    }
}

}  // namespace

HttpServer::HttpServer(asio::any_io_executor executor, AdminApi& api, HttpServerOptions options)
    : shared_(std::make_shared<Shared>(std::move(executor), api, options))
{
}

HttpServer::~HttpServer()
{
    stop();
}

error_code HttpServer::listen(const std::string& host, std::uint16_t port)
{
    error_code ec;
    tcp::resolver resolver(shared_->executor);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec)
        return ec;
    if (results.empty())
        return asio::error::host_not_found;
    const tcp::endpoint ep = *results.begin();
    auto& a = shared_->acceptor;
    a.open(ep.protocol(), ec);
    if (!ec)
        a.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec)
        a.bind(ep, ec);
    if (!ec)
        a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        error_code ignored;
        a.close(ignored);
    }
    return ec;
}

void HttpServer::start()
{
    if (!shared_->acceptor.is_open())
        return;
    asio::co_spawn(shared_->executor, accept_loop(shared_), asio::detached);
}

void HttpServer::stop() noexcept
{
    shared_->stopped = true;
    error_code ignored;
    shared_->acceptor.close(ignored);
    for (auto* s : shared_->connections) {
        s->socket().shutdown(tcp::socket::shutdown_both, ignored);
        s->socket().close(ignored);
    }
}

tcp::endpoint HttpServer::local_endpoint() const
{
    error_code ec;
    return shared_->acceptor.local_endpoint(ec);
}

}  // namespace pgswitch::admin
