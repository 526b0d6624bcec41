// Bounds-checked big-endian cursor over a message body (libpq's inCursor idea).
// Pure: no allocation, no I/O. Every read fails instead of running off the end.
#pragma once

#include <algorithm>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#include "errc.h"

namespace pgswitch::wire {

/// Reads fields of a protocol message. Views it returns point into the
/// buffer given to the constructor and live as long as it does.
class ByteReader {
public:
    explicit ByteReader(std::string_view data) noexcept : data_(data) {}

    [[nodiscard]] std::size_t remaining() const noexcept { return data_.size() - pos_; }
    [[nodiscard]] bool empty() const noexcept { return remaining() == 0; }
    [[nodiscard]] std::string_view rest() const noexcept { return data_.substr(pos_); }

    [[nodiscard]] result<std::uint8_t> u8() noexcept
    {
        if (remaining() < 1)
            return errc::truncated;
        return static_cast<std::uint8_t>(data_[pos_++]);
    }
    [[nodiscard]] result<std::int16_t> i16() noexcept
    {
        if (remaining() < 2)
            return errc::truncated;
        const auto b0 = static_cast<std::uint8_t>(data_[pos_]);
        const auto b1 = static_cast<std::uint8_t>(data_[pos_ + 1]);
        pos_ += 2;
        return static_cast<std::int16_t>(static_cast<std::uint16_t>((b0 << 8) | b1));
    }
    /// An Int16 element count: never signed on the wire, so a negative value
    /// (a hostile 0xFFFF) is rejected with bad_value.
    [[nodiscard]] result<std::int16_t> count16() noexcept
    {
        auto n = i16();
        if (!n)
            return n.error();
        if (*n < 0)
            return errc::bad_value;
        return *n;
    }
    /// Capacity to reserve for `count` elements of at least `min_size` bytes
    /// each: a declared count larger than the rest of the body could hold
    /// must not make the caller allocate for it.
    [[nodiscard]] std::size_t reserve_limit(std::size_t count, std::size_t min_size) const noexcept
    {
        return std::min(count, remaining() / min_size);
    }
    [[nodiscard]] result<std::int32_t> i32() noexcept
    {
        if (remaining() < 4)
            return errc::truncated;
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i)
            v = (v << 8) | static_cast<std::uint8_t>(data_[pos_++]);
        return static_cast<std::int32_t>(v);
    }
    /// Int64 (LSNs and timestamps of the replication protocol).
    [[nodiscard]] result<std::int64_t> i64() noexcept
    {
        if (remaining() < 8)
            return errc::truncated;
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i)
            v = (v << 8) | static_cast<std::uint8_t>(data_[pos_++]);
        return static_cast<std::int64_t>(v);
    }
    /// A NUL-terminated string; the view excludes the NUL.
    [[nodiscard]] result<std::string_view> cstring() noexcept
    {
        const auto end = data_.find('\0', pos_);
        if (end == std::string_view::npos)
            return errc::missing_nul;
        const auto s = data_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return s;
    }
    [[nodiscard]] result<std::string_view> bytes(std::size_t n) noexcept
    {
        if (remaining() < n)
            return errc::truncated;
        const auto s = data_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    /// Int32 length then that many bytes; length -1 means SQL NULL (nullopt).
    [[nodiscard]] result<std::optional<std::string_view>> nullable_bytes() noexcept
    {
        auto len = i32();
        if (!len)
            return len.error();
        if (*len == -1)
            return std::optional<std::string_view>{};
        if (*len < 0)
            return errc::bad_value;
        auto b = bytes(static_cast<std::size_t>(*len));
        if (!b)
            return b.error();
        return std::optional<std::string_view>{*b};
    }
    /// Fails with trailing_bytes unless everything was read.
    [[nodiscard]] boost::system::error_code expect_end() const noexcept
    {
        if (!empty())
            return errc::trailing_bytes;
        return {};
    }

private:
    std::string_view data_;
    std::size_t pos_ = 0;
};

}  // namespace pgswitch::wire
