// Incremental framing of a protocol byte stream over an owned buffer.
// Pure: the caller reads sockets into prepare()/commit() and pulls frames with next().
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "errc.h"
#include "frame.h"

namespace pgswitch::wire {

/// Cuts a byte stream into Frames. In the startup phase messages have no type
/// byte (Protocol → Message Flow → Start-up); after the caller switches to the
/// regular phase every message is `type, Int32 length, body`.
///
/// Once next() has failed, the stream is out of sync and every later call
/// fails the same way: the connection must be closed, never resynchronised.
class FrameDecoder {
public:
    enum class Phase {
        startup,  ///< untagged packets: StartupMessage, SSLRequest, CancelRequest...
        regular,  ///< tagged messages
    };

    explicit FrameDecoder(Limits limits = {}, Phase phase = Phase::regular);

    /// A writable region of at least `min_free` bytes at the end of the
    /// buffered data. Invalidates Frames returned before.
    [[nodiscard]] std::span<char> prepare(std::size_t min_free = 16 * 1024);
    /// Marks `n` bytes of the region from prepare() as received.
    void commit(std::size_t n) noexcept { end_ += n; }
    /// Copies bytes in (prepare + memcpy + commit); handy for tests.
    void feed(std::string_view bytes);

    /// The next complete message, nullopt if more bytes are needed, or an
    /// error (errc::length_too_short, errc::message_too_long).
    [[nodiscard]] result<std::optional<Frame>> next();

    void set_phase(Phase p) noexcept { phase_ = p; }
    [[nodiscard]] Phase phase() const noexcept { return phase_; }
    /// Bytes received but not yet returned in a frame.
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }
    /// Unconsumed bytes (e.g. to hand over to another decoder).
    [[nodiscard]] std::string_view pending() const noexcept
    {
        return {buf_.data() + begin_, end_ - begin_};
    }
    /// Declared size of the partially received message at the front, or 0.
    [[nodiscard]] std::size_t wanted() const noexcept { return wanted_; }
    void set_limits(const Limits& l) noexcept { limits_ = l; }
    /// Releases buffer memory when nothing is buffered (idle connections).
    void shrink() noexcept;

private:
    Limits limits_;
    Phase phase_;
    std::vector<char> buf_;
    std::size_t begin_ = 0;  // first unconsumed byte
    std::size_t end_ = 0;    // one past the last received byte
    std::size_t wanted_ = 0;
    boost::system::error_code failed_;
};

}  // namespace pgswitch::wire
