// Wall-clock times as operators read them in /status and etcd records.
#pragma once

#include <chrono>
#include <ctime>
#include <string>

namespace pgswitch::proxy {

/// Now, UTC, RFC 3339 to the second ("2026-12-03T18:49:05Z").
inline std::string now_rfc3339()
{
    const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace pgswitch::proxy
