// Appends protocol messages to a byte buffer: tag, then body, then the length
// is back-patched in finish(), so no code keeps a size() beside serialize().
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace pgswitch::wire {

/// Writes one or more messages into `out` (appending). Use begin(tag) for a
/// regular message or begin_untagged() for startup-phase packets, put fields,
/// then finish(). The writer does not own `out`.
class MessageWriter {
public:
    explicit MessageWriter(std::string& out) noexcept : out_(out) {}

    MessageWriter& begin(char tag)
    {
        out_.push_back(tag);
        return begin_untagged();
    }
    MessageWriter& begin_untagged()
    {
        start_ = out_.size();
        out_.append(4, '\0');
        return *this;
    }
    MessageWriter& u8(std::uint8_t v)
    {
        out_.push_back(static_cast<char>(v));
        return *this;
    }
    MessageWriter& i16(std::int16_t v)
    {
        const auto u = static_cast<std::uint16_t>(v);
        out_.push_back(static_cast<char>(u >> 8));
        out_.push_back(static_cast<char>(u & 0xff));
        return *this;
    }
    MessageWriter& i32(std::int32_t v)
    {
        const auto u = static_cast<std::uint32_t>(v);
        for (int shift = 24; shift >= 0; shift -= 8)
            out_.push_back(static_cast<char>((u >> shift) & 0xff));
        return *this;
    }
    MessageWriter& i64(std::int64_t v)
    {
        const auto u = static_cast<std::uint64_t>(v);
        for (int shift = 56; shift >= 0; shift -= 8)
            out_.push_back(static_cast<char>((u >> shift) & 0xff));
        return *this;
    }
    /// String followed by its NUL terminator.
    MessageWriter& cstring(std::string_view s)
    {
        out_.append(s);
        out_.push_back('\0');
        return *this;
    }
    MessageWriter& bytes(std::string_view s)
    {
        out_.append(s);
        return *this;
    }
    /// Int32 length and bytes; nullopt is written as length -1 (SQL NULL).
    MessageWriter& nullable_bytes(std::optional<std::string_view> s)
    {
        if (!s)
            return i32(-1);
        i32(static_cast<std::int32_t>(s->size()));
        return bytes(*s);
    }
    /// Back-patches the length of the message opened by the last begin*().
    void finish()
    {
        const auto len = static_cast<std::uint32_t>(out_.size() - start_);
        for (int i = 0; i < 4; ++i)
            out_[start_ + static_cast<std::size_t>(i)] = static_cast<char>((len >> (24 - 8 * i)) & 0xff);
    }

private:
    std::string& out_;
    std::size_t start_ = 0;
};

}  // namespace pgswitch::wire
