// Aliases shared by the proxy's coroutine code (Boost 1.81 Asio).
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <array>
#include <string>
#include <string_view>

namespace pgswitch::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
template <class T>
using awaitable = asio::awaitable<T>;

/// Completion token that returns (error_code, ...) instead of throwing:
/// expected I/O failures are values (ARCHITECTURE.md §4).
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

/// Writes all of `bytes` to a plain TCP socket: first with one non-blocking
/// send, which on a healthy connection takes everything without suspending
/// (no completion through the scheduler, no extra epoll round), then with
/// async_write for whatever the kernel did not take. Callers serialize their
/// writes per socket, as with async_write.
inline awaitable<error_code> write_all_fast(tcp::socket& socket, std::string_view bytes)
{
    std::size_t done = 0;
    if (!bytes.empty()) {
        error_code ec;
        if (!socket.non_blocking())
            socket.non_blocking(true, ec);
        if (!ec)
            done = socket.write_some(asio::buffer(bytes.data(), bytes.size()), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again)
            ec.clear(), done = 0;
        if (ec)
            co_return ec;
        if (done == bytes.size())
            co_return error_code{};
    }
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(bytes.data() + done, bytes.size() - done),
                                              use_nothrow);
    co_return ec;
}

/// The same for a gather write (several buffers, one sendmsg). What the
/// kernel did not take at once is copied and written asynchronously (rare:
/// only when the socket's send buffer is full).
template <std::size_t N>
inline awaitable<error_code> write_all_fast(tcp::socket& socket, const std::array<asio::const_buffer, N>& buffers)
{
    const std::size_t total = asio::buffer_size(buffers);
    error_code ec;
    if (!socket.non_blocking())
        socket.non_blocking(true, ec);
    std::size_t done = 0;
    if (!ec && total > 0)
        done = socket.write_some(buffers, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again)
        ec.clear(), done = 0;
    if (ec || done == total)
        co_return ec;
    std::string rest;
    rest.reserve(total - done);
    std::size_t skip = done;
    for (const auto& b : buffers) {
        const auto* p = static_cast<const char*>(b.data());
        if (skip >= b.size()) {
            skip -= b.size();
            continue;
        }
        rest.append(p + skip, b.size() - skip);
        skip = 0;
    }
    auto [wec, n] = co_await asio::async_write(socket, asio::buffer(rest), use_nothrow);
    co_return wec;
}

/// TCP_NODELAY: pgswitch writes whole protocol messages; Nagle would hold a
/// reply's second write until the first is acknowledged.
inline void set_no_delay(tcp::socket& socket) noexcept
{
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
}

}  // namespace pgswitch::proxy
