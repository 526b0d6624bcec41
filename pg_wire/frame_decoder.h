// Incremental framing of a protocol byte stream over an owned buffer.
// Pure: the caller reads sockets into prepare()/commit() and pulls frames with next().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "errc.h"
#include "frame.h"

namespace pgswitch::wire {

/// Cuts a byte stream into Frames. In the startup phase messages have no type
/// byte (Protocol → Message Flow → Start-up); after the caller switches to the
/// regular phase every message is `type, Int32 length, body`.
///
/// Once next() has failed, the stream is out of sync and every later call
/// fails the same way: the connection must be closed, never resynchronised.
///
/// Memory follows the traffic, because an idle connection keeps a read pending
/// on the region from prepare(): reads start at min_read_size, a read that fills
/// the region doubles the read size (up to max_read_size), a run of reads that
/// use under a quarter of it halves it again, and once everything is consumed a
/// buffer grown beyond twice the read size (a large message) is given back.
class FrameDecoder {
public:
    static constexpr std::size_t min_read_size = 1024;
    static constexpr std::size_t max_read_size = 16 * 1024;
    /// Consecutive small reads (≤ 1/4 of the read size) that halve it.
    static constexpr std::uint8_t small_reads_to_halve = 8;

    enum class Phase {
        startup,  ///< untagged packets: StartupMessage, SSLRequest, CancelRequest...
        regular,  ///< tagged messages
    };

    explicit FrameDecoder(Limits limits = {}, Phase phase = Phase::regular);

    /// A writable region at the end of the buffered data: of the adaptive read
    /// size (see above) when `min_free` is 0, else of at least `min_free` bytes;
    /// larger while a declared long message is still arriving. Invalidates
    /// Frames returned before.
    [[nodiscard]] std::span<char> prepare(std::size_t min_free = 0);
    /// Marks `n` bytes of the region from prepare() as received.
    void commit(std::size_t n) noexcept;
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
    [[nodiscard]] std::string_view pending() const noexcept { return {buf_.get() + begin_, end_ - begin_}; }
    /// Declared size of the partially received message at the front, or 0.
    [[nodiscard]] std::size_t wanted() const noexcept { return wanted_; }
    void set_limits(const Limits& l) noexcept { limits_ = l; }
    /// Releases buffer memory when nothing is buffered (idle connections).
    void shrink() noexcept;
    /// Bytes allocated for the buffer (0 before the first prepare()).
    [[nodiscard]] std::size_t capacity() const noexcept { return cap_; }
    /// What prepare() offers next when nothing larger is needed.
    [[nodiscard]] std::size_t read_size() const noexcept { return read_size_; }

private:
    Limits limits_;
    Phase phase_;
    std::unique_ptr<char[]> buf_;  // not zero-filled: only received bytes are ever read
    std::size_t cap_ = 0;
    std::size_t begin_ = 0;  // first unconsumed byte
    std::size_t end_ = 0;    // one past the last received byte
    std::size_t wanted_ = 0;
    std::size_t read_size_ = min_read_size;
    std::size_t offered_ = 0;  // region size of the last adaptive prepare(), until commit()
    std::uint8_t small_reads_ = 0;
    boost::system::error_code failed_;
};

}  // namespace pgswitch::wire
