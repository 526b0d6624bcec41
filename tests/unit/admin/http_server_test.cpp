// The admin HTTP server over loopback: keep-alive, body and header limits,
// read timeout, malformed requests, JSON errors. The server runs on its own
// io_context thread; the test is a blocking client.
#include <doctest/doctest.h>

#include <boost/asio.hpp>
#include <chrono>
#include <thread>

#include "admin/http_server.h"
#include "fake_admin_api.h"

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace pgswitch::admin;

namespace {

/// An HttpServer on 127.0.0.1:<free port>, served by a background thread.
struct ServerFixture {
    explicit ServerFixture(HttpServerOptions options = {}) : server(io.get_executor(), api, options)
    {
        REQUIRE_FALSE(server.listen("127.0.0.1", 0));
        port = server.local_endpoint().port();
        server.start();
        thread = std::thread([this] { io.run(); });
    }
    ~ServerFixture()
    {
        asio::post(io, [this] { server.stop(); });
        work.reset();
        io.stop();
        thread.join();
    }

    asio::io_context io;
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{asio::make_work_guard(io)};
    pgswitch::test::FakeApi api;
    HttpServer server;
    std::uint16_t port = 0;
    std::thread thread;
};

/// Sends raw bytes, reads until the server closes (or 3 s pass).
std::string roundtrip(std::uint16_t port, const std::string& request, bool half_close = false)
{
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::write(s, asio::buffer(request));
    if (half_close)
        s.shutdown(tcp::socket::shutdown_send);
    const timeval tv{3, 0};
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out;
    boost::system::error_code ec;
    char buf[4096];
    for (;;) {
        const auto n = s.read_some(asio::buffer(buf), ec);
        if (ec)
            break;
        out.append(buf, n);
    }
    return out;
}

int count(const std::string& haystack, const std::string& needle)
{
    int n = 0;
    for (auto pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1))
        ++n;
    return n;
}

}  // namespace

TEST_CASE("http: keep-alive serves several requests on one connection")
{
    ServerFixture f;
    const auto out = roundtrip(f.port, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /backends/pg1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CHECK(count(out, "HTTP/1.1 200 OK") == 2);
    CHECK(count(out, "HTTP/1.1 404 Not Found") == 1);
    CHECK(count(out, "Content-Type: application/json") == 3);
    CHECK(out.find("\"name\": \"pg1\"") != std::string::npos);
    CHECK(out.find("\"error\": \"no such endpoint: /nope\"") != std::string::npos);
}

TEST_CASE("http: HTTP/1.0 closes after one answer")
{
    ServerFixture f;
    const auto out = roundtrip(f.port, "GET /health HTTP/1.0\r\n\r\n");
    CHECK(out.rfind("HTTP/1.0 200 OK", 0) == 0);
}

TEST_CASE("http: POST with a body, 405 with Allow")
{
    ServerFixture f;
    const std::string body = R"({"name":"pg9","host":"h","port":7})";
    auto out = roundtrip(f.port, "POST /backends HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 "Content-Length: " +
                                     std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    CHECK(out.rfind("HTTP/1.1 201 Created", 0) == 0);
    CHECK(out.find("Location: /backends/pg9") != std::string::npos);

    out = roundtrip(f.port, "PUT /backends HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    CHECK(out.rfind("HTTP/1.1 405", 0) == 0);
    CHECK(out.find("Allow: GET, POST") != std::string::npos);
}

TEST_CASE("http: body over the limit is 413, and Expect: 100-continue is honoured")
{
    HttpServerOptions o;
    o.body_limit = 1024;
    ServerFixture f(o);
    auto out = roundtrip(f.port, "POST /routing/explain HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" +
                                     std::string(5000, 'a'));
    CHECK(out.rfind("HTTP/1.1 413", 0) == 0);
    CHECK(out.find("\"error\"") != std::string::npos);

    const std::string body = R"({"sql":"SELECT 1"})";
    out = roundtrip(f.port, "POST /routing/explain HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    CHECK(out.rfind("HTTP/1.1 100 Continue", 0) == 0);
    CHECK(out.find("HTTP/1.1 200 OK") != std::string::npos);
}

TEST_CASE("http: oversized header is 431, garbage is 400, both close")
{
    ServerFixture f;
    auto out = roundtrip(f.port, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
    CHECK(out.rfind("HTTP/1.1 431", 0) == 0);
    out = roundtrip(f.port, "NOT HTTP AT ALL\r\n\r\n");
    CHECK(out.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(out.find("\"error\"") != std::string::npos);
}

TEST_CASE("http: a silent client is closed after read_timeout")
{
    HttpServerOptions o;
    o.read_timeout = std::chrono::milliseconds(200);
    ServerFixture f(o);
    const auto start = std::chrono::steady_clock::now();
    const auto out = roundtrip(f.port, "GET /hea");  // never finishes the request
    CHECK(out.empty());
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
}

TEST_CASE("http: the token is enforced over the wire")
{
    ServerFixture f;
    f.api.token_value = "abc";
    auto out = roundtrip(f.port, "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CHECK(out.rfind("HTTP/1.1 401", 0) == 0);
    CHECK(out.find("WWW-Authenticate: Bearer") != std::string::npos);
    out = roundtrip(f.port,
                    "GET /status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\nConnection: close\r\n\r\n");
    CHECK(out.rfind("HTTP/1.1 200", 0) == 0);
}
