#include "errc.h"

#include <string>

namespace pgswitch::wire {
namespace {

class WireCategory final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "pg_wire"; }
    std::string message(int ev) const override
    {
        switch (static_cast<errc>(ev)) {
        case errc::length_too_short:
            return "message length too short";
        case errc::message_too_long:
            return "message too long";
        case errc::missing_nul:
            return "missing string terminator";
        case errc::truncated:
            return "message truncated";
        case errc::trailing_bytes:
            return "trailing bytes after message";
        case errc::unexpected_tag:
            return "unexpected message type";
        case errc::bad_value:
            return "invalid field value";
        case errc::unsupported_protocol:
            return "unsupported protocol version";
        case errc::auth_failed:
            return "authentication failed";
        case errc::auth_protocol:
            return "malformed authentication exchange";
        }
        return "unknown pg_wire error";
    }
};

}  // namespace

const boost::system::error_category& wire_category() noexcept
{
    static const WireCategory category;
    return category;
}

}  // namespace pgswitch::wire
