// Startup-phase packets (no type byte): StartupMessage, SSLRequest,
// GSSENCRequest and CancelRequest (Protocol → Message Formats).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "errc.h"

namespace pgswitch::wire {

/// StartupMessage: protocol version and name/value parameters ("user",
/// "database", "application_name", "options", any GUC...). Owns its strings
/// because sessions keep them for their whole life.
struct StartupMessage {
    std::int32_t protocol = 0;
    std::vector<std::pair<std::string, std::string>> params;

    /// Value of a parameter, or an empty view if it was not sent.
    [[nodiscard]] std::string_view get(std::string_view name) const noexcept;
};

struct SslRequest {};
struct GssEncRequest {};
struct CancelRequest {
    std::int32_t process_id = 0;
    std::int32_t secret_key = 0;
};

using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest>;

/// Parses the body (after the length word) of an untagged packet. A protocol
/// major version other than 3 is errc::unsupported_protocol; a 3.x minor
/// version above 0 is accepted (the caller answers NegotiateProtocolVersion).
[[nodiscard]] result<StartupPacket> parse_startup_packet(std::string_view body);

/// Appends a StartupMessage for protocol 3.0 with `params` in order.
void build_startup_message(std::string& out, const std::vector<std::pair<std::string, std::string>>& params);
void build_ssl_request(std::string& out);
void build_gssenc_request(std::string& out);
void build_cancel_request(std::string& out, std::int32_t process_id, std::int32_t secret_key);

}  // namespace pgswitch::wire
