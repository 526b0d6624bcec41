// Error codes of the pure protocol layer (framing and message parsing).
// Depends only on the standard library and Boost.System.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

namespace pgswitch::wire {

/// What went wrong while framing or parsing protocol bytes. Any of these
/// leaves the stream out of sync: the caller closes the connection.
enum class errc {
    length_too_short = 1,  ///< declared length below the 4 bytes of the length itself
    message_too_long,      ///< declared length above the limit for that message type
    missing_nul,           ///< a C string ran off the end of the message
    truncated,             ///< a field extends past the end of the message body
    trailing_bytes,        ///< bytes left over after the last field
    unexpected_tag,        ///< message type not valid here
    bad_value,             ///< a field holds a value outside its domain (negative count...)
    unsupported_protocol,  ///< startup packet with a protocol version we do not speak
    auth_failed,           ///< authentication exchange rejected (bad proof, bad password)
    auth_protocol,         ///< authentication exchange malformed or out of order
};

const boost::system::error_category& wire_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), wire_category()};
}

template <class T>
using result = boost::system::result<T>;

}  // namespace pgswitch::wire

template <>
struct boost::system::is_error_code_enum<pgswitch::wire::errc> : std::true_type {
};
