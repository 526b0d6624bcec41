// Fault injection for tests of what other instances do when one dies half
// way through something (the etcd and TiKV projects call these failpoints).
// A failpoint is off unless the environment names it:
//   PGSWITCH_FAILPOINT_<NAME>_MS=<n>   pause n ms at that point
// Operators never set these; the pause is logged as a warning when taken.
#pragma once

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>

namespace pgswitch::proxy {

/// The pause the environment asks for at failpoint `name` (0 when none).
inline std::chrono::milliseconds failpoint_pause(std::string_view name)
{
    const std::string var = "PGSWITCH_FAILPOINT_" + std::string(name) + "_MS";
    const char* v = std::getenv(var.c_str());
    const long ms = v ? std::strtol(v, nullptr, 10) : 0;
    return std::chrono::milliseconds(ms > 0 ? ms : 0);
}

}  // namespace pgswitch::proxy
