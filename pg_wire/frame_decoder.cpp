#include "frame_decoder.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tags.h"

namespace pgswitch::wire {
namespace {

std::uint32_t load_be32(const char* p) noexcept
{
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
        v = (v << 8) | static_cast<std::uint8_t>(p[i]);
    return v;
}

}  // namespace

FrameDecoder::FrameDecoder(Limits limits, Phase phase) : limits_(limits), phase_(phase) {}

std::span<char> FrameDecoder::prepare(std::size_t min_free)
{
    const bool adaptive = min_free == 0;
    if (adaptive)
        min_free = read_size_;
    // Move the unconsumed tail to the front before growing: most reads end on
    // a message boundary, so this is usually a no-op or a few bytes.
    if (begin_ > 0) {
        const auto n = end_ - begin_;
        if (n > 0)
            std::memmove(buf_.get(), buf_.get() + begin_, n);
        begin_ = 0;
        end_ = n;
    }
    // Drained after something large: give the memory back before the next
    // (possibly long idle) read, keeping room for one read of the usual size.
    if (end_ == 0 && wanted_ == 0 && cap_ > 2 * read_size_ && cap_ > min_free) {
        buf_.reset();
        cap_ = 0;
    }
    // A partially received large message: grow towards its declared size by
    // doubling what actually arrived, never by the declared length alone, so
    // a peer announcing a huge message and sending nothing costs nothing.
    std::size_t need = end_ + min_free;
    if (wanted_ > end_)
        need = std::max(need, std::min(wanted_, std::max<std::size_t>(2 * end_, 64 * 1024)));
    if (cap_ < need) {
        // Doubling keeps a message that arrives in many small pieces linear;
        // a fresh buffer is exactly the read size.
        const std::size_t n = cap_ == 0 ? std::max(need, min_read_size) : std::max(need, cap_ * 2);
        auto fresh = std::make_unique_for_overwrite<char[]>(n);
        if (end_ > 0)
            std::memcpy(fresh.get(), buf_.get(), end_);
        buf_ = std::move(fresh);
        cap_ = n;
    }
    offered_ = adaptive ? cap_ - end_ : 0;
    return {buf_.get() + end_, cap_ - end_};
}

void FrameDecoder::commit(std::size_t n) noexcept
{
    end_ += n;
    if (offered_ == 0)
        return;  // an explicit-size prepare() (feed(), tests): no adaptation
    if (n >= offered_) {
        // The socket had at least this much: probably more is waiting.
        read_size_ = std::min(read_size_ * 2, max_read_size);
        small_reads_ = 0;
    } else if (n * 4 <= read_size_) {
        if (++small_reads_ >= small_reads_to_halve) {
            read_size_ = std::max(read_size_ / 2, min_read_size);
            small_reads_ = 0;
        }
    } else {
        small_reads_ = 0;
    }
    offered_ = 0;
}

void FrameDecoder::feed(std::string_view bytes)
{
    auto region = prepare(std::max<std::size_t>(bytes.size(), 1));
    std::memcpy(region.data(), bytes.data(), bytes.size());
    commit(bytes.size());
}

void FrameDecoder::shrink() noexcept
{
    if (begin_ == end_) {
        begin_ = end_ = 0;
        buf_.reset();
        cap_ = 0;
    }
}

result<std::optional<Frame>> FrameDecoder::next()
{
    if (failed_)
        return failed_;
    const std::size_t avail = end_ - begin_;
    const char* p = buf_.get() + begin_;
    const bool tagged = phase_ == Phase::regular;
    const std::size_t header = tagged ? 5 : 4;
    if (avail < header)
        return std::optional<Frame>{};

    const char tag = tagged ? p[0] : '\0';
    const std::uint32_t len = load_be32(p + (tagged ? 1 : 0));
    // The length counts itself; a startup packet also carries a 4-byte code.
    if (len < (tagged ? 4u : 8u)) {
        failed_ = errc::length_too_short;
        return failed_;
    }
    std::size_t cap = tagged ? limits_.max_message : limits_.max_startup;
    if (tagged && limits_.max_short_message != 0 && !be::may_be_long(tag))
        cap = std::min(cap, limits_.max_short_message);
    if (len > cap) {
        failed_ = errc::message_too_long;
        return failed_;
    }
    const std::size_t total = len + (tagged ? 1u : 0u);
    if (avail < total) {
        wanted_ = total;
        return std::optional<Frame>{};
    }
    wanted_ = 0;
    Frame f;
    f.tag = tag;
    f.raw = std::string_view(p, total);
    f.body = f.raw.substr(header);
    begin_ += total;
    return std::optional<Frame>{f};
}

}  // namespace pgswitch::wire
