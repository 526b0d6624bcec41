// Aliases shared by the proxy's coroutine code (Boost 1.81 Asio).
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

namespace pgswitch::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;
template <class T>
using awaitable = asio::awaitable<T>;

/// Completion token that returns (error_code, ...) instead of throwing:
/// expected I/O failures are values (ARCHITECTURE.md §4).
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace pgswitch::proxy
