// Aliases shared by the proxy's coroutine code (Boost 1.81 Asio).
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <algorithm>
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

/// Writes all of `buffers` (taken by value: the coroutine keeps its own copy)
/// to a plain TCP socket: first with one
/// non-blocking send (gather), which on a healthy connection takes everything
/// without suspending (no completion through the scheduler, no extra epoll
/// round); what the kernel did not take is written asynchronously (only when
/// the socket's send buffer is full). Callers serialize
/// their writes per socket, as with async_write.
template <std::size_t N>
inline awaitable<error_code> write_all_fast(tcp::socket& socket, std::array<asio::const_buffer, N> buffers)
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
    // The rest, from where the kernel stopped (the caller's bytes stay alive
    // until this completes, as with async_write).
    std::size_t skip = done;
    for (auto& b : buffers) {
        const std::size_t k = std::min(skip, b.size());
        b += k;
        skip -= k;
    }
    auto [wec, n] = co_await asio::async_write(socket, buffers, use_nothrow);
    co_return wec;
}

/// One buffer: the same coroutine (the array is copied into its frame).
inline awaitable<error_code> write_all_fast(tcp::socket& socket, std::string_view bytes)
{
    return write_all_fast(socket, std::array<asio::const_buffer, 1>{asio::buffer(bytes.data(), bytes.size())});
}

}  // namespace pgswitch::proxy
