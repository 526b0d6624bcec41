// ServerPool bookkeeping (transaction pooling, issue 5): capacity, FIFO hand
// over, the wait timeout, discard freeing room, parameter signatures and
// stale idle connections. A loopback fake server answers every login with
// AuthenticationOk + ReadyForQuery.
#include "proxy/server_pool.h"

#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "pg_wire/backend.h"

using namespace pgswitch::proxy;

namespace {

/// Accepts connections and logs each in (trust), then keeps it open.
struct FakeServer {
    explicit FakeServer(asio::io_context& io) : acceptor(io, tcp::endpoint(asio::ip::address_v4::loopback(), 0))
    {
        asio::co_spawn(io, accept_loop(), asio::detached);
    }
    awaitable<void> accept_loop()
    {
        for (;;) {
            auto [ec, s] = co_await acceptor.async_accept(use_nothrow);
            if (ec)
                co_return;
            auto sock = std::make_shared<tcp::socket>(std::move(s));
            sockets.push_back(sock);
            asio::co_spawn(acceptor.get_executor(), login(sock), asio::detached);
        }
    }
    static awaitable<void> login(std::shared_ptr<tcp::socket> s)
    {
        unsigned char len[4];
        auto [ec, n] = co_await asio::async_read(*s, asio::buffer(len), use_nothrow);
        if (ec)
            co_return;
        std::vector<char> rest(
            (std::size_t(len[0]) << 24 | std::size_t(len[1]) << 16 | std::size_t(len[2]) << 8 | std::size_t(len[3])) -
            4);
        auto [ec2, n2] = co_await asio::async_read(*s, asio::buffer(rest), use_nothrow);
        if (ec2)
            co_return;
        std::string out;
        pgswitch::wire::be::build_authentication_ok(out);
        pgswitch::wire::be::build_backend_key_data(out, 4242, 1);
        pgswitch::wire::be::build_ready_for_query(out, pgswitch::wire::TxStatus::idle);
        (void)co_await asio::async_write(*s, asio::buffer(out), use_nothrow);
    }
    std::uint16_t port() const { return acceptor.local_endpoint().port(); }
    tcp::acceptor acceptor;
    std::vector<std::shared_ptr<tcp::socket>> sockets;
};

ServerPool::Request request(const FakeServer& srv, int capacity, std::string signature = "sig")
{
    ServerPool::Request r;
    r.backend = "b1";
    r.host = "127.0.0.1";
    r.port = srv.port();
    r.startup.user = "u";
    r.startup.database = "d";
    r.signature = std::move(signature);
    r.capacity = capacity;
    r.wait_timeout = std::chrono::milliseconds(200);
    r.connect_timeout = std::chrono::milliseconds(2000);
    return r;
}

using Lent = std::unique_ptr<PooledConnection>;

/// Runs `fn` as a coroutine on `io` until it finishes (5 s at most).
template <class Fn>
void run_coro(asio::io_context& io, Fn fn)
{
    bool done = false;
    std::exception_ptr error;
    asio::co_spawn(io, fn(), [&](std::exception_ptr e) {
        error = e;
        done = true;
    });
    io.run_for(std::chrono::seconds(5));
    REQUIRE_MESSAGE(done, "coroutine did not finish within 5 s");
    if (error)
        std::rethrow_exception(error);
}

Lent take(ServerPool::Acquired a)
{
    auto* p = std::get_if<Lent>(&a);
    REQUIRE_MESSAGE(p != nullptr, "acquire failed: " << std::get<AcquireFailure>(a).error.message);
    return std::move(*p);
}

}  // namespace

TEST_CASE("pool: at most capacity connections; then a request waits and times out")
{
    asio::io_context io;
    FakeServer srv(io);
    ServerPool pool;
    run_coro(io, [&]() -> awaitable<void> {
        const auto req = request(srv, 2);
        auto a = take(co_await pool.acquire(req));
        auto b = take(co_await pool.acquire(req));
        CHECK(a->conn.get() != b->conn.get());
        CHECK(pool.counts("b1").open == 2);
        const auto t0 = std::chrono::steady_clock::now();
        auto c = co_await pool.acquire(req);
        REQUIRE(std::holds_alternative<AcquireFailure>(c));
        CHECK(std::get<AcquireFailure>(c).kind == AcquireFailure::Kind::timeout);
        CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(150));
        CHECK(pool.counts("b1").waiting == 0);
        // Given back, then reused: no new connection.
        auto* first = a->conn.get();
        pool.release(std::move(a));
        CHECK(pool.counts("b1").idle == 1);
        auto again = take(co_await pool.acquire(req));
        CHECK(again->conn.get() == first);
        CHECK(srv.sockets.size() == 2);
        pool.release(std::move(again));
        pool.release(std::move(b));
    });
}

TEST_CASE("pool: waiters are served first come, first served, straight from release()")
{
    asio::io_context io;
    FakeServer srv(io);
    ServerPool pool;
    std::vector<int> order;
    Lent held;
    run_coro(io, [&]() -> awaitable<void> {
        auto req = request(srv, 1);
        req.wait_timeout = std::chrono::milliseconds(3000);
        held = take(co_await pool.acquire(req));
        auto* conn = held->conn.get();
        auto ex = co_await asio::this_coro::executor;
        for (int i = 1; i <= 2; ++i)
            asio::co_spawn(
                ex,
                [&, i, req]() -> awaitable<void> {
                    auto got = take(co_await pool.acquire(req));
                    CHECK(got->conn.get() == conn);
                    order.push_back(i);
                    pool.release(std::move(got));
                },
                asio::detached);
        asio::steady_timer t(ex, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::use_awaitable);
        CHECK(pool.counts().waiting == 2);
        pool.release(std::move(held));
        t.expires_after(std::chrono::milliseconds(50));
        co_await t.async_wait(asio::use_awaitable);
        CHECK(order == std::vector<int>{1, 2});
        CHECK(srv.sockets.size() == 1);
    });
}

TEST_CASE("pool: discard frees room for a waiter, which opens a new connection")
{
    asio::io_context io;
    FakeServer srv(io);
    ServerPool pool;
    run_coro(io, [&]() -> awaitable<void> {
        auto req = request(srv, 1);
        req.wait_timeout = std::chrono::milliseconds(3000);
        auto a = take(co_await pool.acquire(req));
        auto ex = co_await asio::this_coro::executor;
        bool served = false;
        asio::co_spawn(
            ex,
            [&, req]() -> awaitable<void> {
                auto got = take(co_await pool.acquire(req));
                served = true;
                pool.release(std::move(got));
            },
            asio::detached);
        asio::steady_timer t(ex, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::use_awaitable);
        pool.discard(std::move(a));
        t.expires_after(std::chrono::milliseconds(200));
        co_await t.async_wait(asio::use_awaitable);
        CHECK(served);
        CHECK(srv.sockets.size() == 2);
        CHECK(pool.counts("b1").open == 1);
    });
}

TEST_CASE("pool: other startup parameters get another connection; stale idle ones are not lent")
{
    asio::io_context io;
    FakeServer srv(io);
    ServerPool pool;
    run_coro(io, [&]() -> awaitable<void> {
        auto a = take(co_await pool.acquire(request(srv, 1, "app=a")));
        pool.release(std::move(a));
        // Full (capacity 1) with an idle connection for other parameters: it is replaced.
        auto b = take(co_await pool.acquire(request(srv, 1, "app=b")));
        CHECK(b->signature == "app=b");
        CHECK(srv.sockets.size() == 2);  // a new login
        CHECK(pool.counts("b1").open == 1);
        CHECK(pool.parameter_status("u", "d", "app=b") != nullptr);
        pool.release(std::move(b));
        // The server hangs up on the idle connection: the next borrower gets a fresh one.
        srv.sockets.back()->close();
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
        co_await t.async_wait(asio::use_awaitable);
        auto c = take(co_await pool.acquire(request(srv, 1, "app=b")));
        CHECK(srv.sockets.size() == 3);
        CHECK(pool.counts("b1").open == 1);
        pool.release(std::move(c));
    });
}

TEST_CASE("pool: signature is the sorted startup parameters")
{
    ServerStartup a;
    a.params = {{"application_name", "x"}, {"TimeZone", "UTC"}};
    ServerStartup b;
    b.params = {{"TimeZone", "UTC"}, {"application_name", "x"}};
    CHECK(ServerPool::make_signature(a) == ServerPool::make_signature(b));
    b.params[1].second = "y";
    CHECK(ServerPool::make_signature(a) != ServerPool::make_signature(b));
}
