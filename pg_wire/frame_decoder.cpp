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
    // Move the unconsumed tail to the front before growing: most reads end on
    // a message boundary, so this is usually a no-op or a few bytes.
    if (begin_ > 0) {
        const auto n = end_ - begin_;
        if (n > 0)
            std::memmove(buf_.data(), buf_.data() + begin_, n);
        begin_ = 0;
        end_ = n;
    }
    // A partially received large message: grow towards its declared size by
    // doubling what actually arrived, never by the declared length alone, so
    // a peer announcing a huge message and sending nothing costs nothing.
    std::size_t need = end_ + min_free;
    if (wanted_ > end_)
        need = std::max(need, std::min(wanted_, std::max<std::size_t>(2 * end_, 64 * 1024)));
    if (buf_.size() < need)
        buf_.resize(std::max(need, buf_.size() * 2));
    return {buf_.data() + end_, buf_.size() - end_};
}

void FrameDecoder::feed(std::string_view bytes)
{
    auto region = prepare(bytes.size());
    std::memcpy(region.data(), bytes.data(), bytes.size());
    commit(bytes.size());
}

void FrameDecoder::shrink() noexcept
{
    if (begin_ == end_) {
        begin_ = end_ = 0;
        std::vector<char>().swap(buf_);
    }
}

result<std::optional<Frame>> FrameDecoder::next()
{
    if (failed_)
        return failed_;
    const std::size_t avail = end_ - begin_;
    const char* p = buf_.data() + begin_;
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
