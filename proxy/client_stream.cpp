#include "client_stream.h"

namespace pgswitch::proxy {
namespace {
// Producers wait before queuing more than this, so a client that stops
// reading holds back the servers instead of growing our memory.
constexpr std::size_t queue_high_water = 1u << 20;
}  // namespace

ClientStream::ClientStream(tcp::socket socket) : socket_(std::move(socket)), drained_(socket_.get_executor())
{
    drained_.expires_at(asio::steady_timer::time_point::max());
}

awaitable<error_code> ClientStream::start_tls(asio::ssl::context& ctx)
{
    tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(socket_), ctx);
    auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::server, use_nothrow);
    co_return ec;
}

tcp::socket& ClientStream::socket() noexcept
{
    return tls_ ? tls_->next_layer() : socket_;
}

bool ClientStream::is_open() const noexcept
{
    return tls_ ? tls_->next_layer().is_open() : socket_.is_open();
}

std::string ClientStream::remote_address() const
{
    error_code ec;
    const auto ep = tls_ ? tls_->next_layer().remote_endpoint(ec) : socket_.remote_endpoint(ec);
    if (ec)
        return "?";
    return ep.address().to_string() + ":" + std::to_string(ep.port());
}

void ClientStream::close() noexcept
{
    error_code ignored;
    auto& s = socket();
    if (s.is_open()) {
        s.shutdown(tcp::socket::shutdown_both, ignored);
        s.close(ignored);
    }
    drained_.cancel();
}

awaitable<std::tuple<error_code, std::size_t>> ClientStream::read_some(asio::mutable_buffer buf)
{
    // Not a coroutine: the caller awaits the read itself, so a client idling
    // in a read holds no frame of ours (and each read costs one call less).
    if (tls_)
        return tls_->async_read_some(buf, use_nothrow);
    return socket_.async_read_some(buf, use_nothrow);
}

awaitable<error_code> ClientStream::write_all(std::string_view bytes)
{
    if (tls_) {
        auto [ec, n] = co_await asio::async_write(*tls_, asio::buffer(bytes), use_nothrow);
        co_return ec;
    }
    co_return co_await write_all_fast(socket_, bytes);
}

awaitable<error_code> ClientStream::send(std::string_view bytes)
{
    if (write_error_)
        co_return write_error_;
    if (writing_) {
        // Another producer is writing: queue behind it, then wait for room.
        queued_.append(bytes);
        while (!write_error_ && writing_ && queued_.size() > queue_high_water) {
            auto [ec] = co_await drained_.async_wait(use_nothrow);
            (void)ec;
        }
        co_return write_error_;
    }
    writing_ = true;
    auto ec = co_await write_all(bytes);
    // Flush whatever others queued while we were writing, in order.
    while (!ec && !queued_.empty()) {
        inflight_.swap(queued_);
        queued_.clear();
        ec = co_await write_all(inflight_);
        inflight_.clear();
        drained_.cancel();
    }
    writing_ = false;
    if (ec)
        write_error_ = ec;
    if (queued_.capacity() > queue_high_water)
        std::string().swap(queued_);
    if (inflight_.capacity() > queue_high_water)
        std::string().swap(inflight_);
    drained_.cancel();
    co_return ec;
}

}  // namespace pgswitch::proxy
