// One framed protocol message: its type byte and a view of its body.
#pragma once

#include <string_view>

#include "tags.h"

namespace pgswitch::wire {

/// A complete message as cut by FrameDecoder. `tag` is 0 for startup-phase
/// packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), which
/// have no type byte. Views point into the decoder's buffer and are valid
/// until its next prepare() or feed().
struct Frame {
    char tag = 0;
    std::string_view body;  ///< after the length word
    std::string_view raw;   ///< the whole message as it arrived: type byte, length, body

    /// The type byte read as a server's (the frame came from a server) or a client's.
    [[nodiscard]] be::Tag backend_tag() const noexcept { return static_cast<be::Tag>(tag); }
    [[nodiscard]] fe::Tag frontend_tag() const noexcept { return static_cast<fe::Tag>(tag); }
};

/// Caps on declared lengths. The limits protect the proxy from a peer that
/// announces a huge message; bytes are buffered only as they arrive.
struct Limits {
    std::size_t max_startup = 10'000;      ///< Envoy and PostgreSQL cap startup packets
    std::size_t max_message = 256u << 20;  ///< any regular message, including its length word
    /// When non-zero, types for which be::may_be_long() is false are capped
    /// here (libpq's 30,000-byte rule for server → client traffic).
    std::size_t max_short_message = 0;
};

}  // namespace pgswitch::wire
