#include "cluster_view.h"

#include <charconv>
#include <cstdio>

namespace pgswitch::routing {

std::string_view to_string(Role r) noexcept
{
    switch (r) {
    case Role::unknown:
        return "unknown";
    case Role::primary:
        return "primary";
    case Role::replica:
        return "replica";
    }
    return "unknown";
}

std::string_view to_string(BackendState s) noexcept
{
    switch (s) {
    case BackendState::up:
        return "up";
    case BackendState::down:
        return "down";
    case BackendState::fenced:
        return "fenced";
    case BackendState::drained:
        return "drained";
    }
    return "down";
}

std::optional<std::size_t> ClusterView::primary_index() const noexcept
{
    if (!writes_blocked.empty())
        return std::nullopt;
    std::optional<std::size_t> found;
    for (std::size_t i = 0; i < backends.size(); ++i) {
        const auto& b = backends[i];
        if (b.state != BackendState::up || b.role != Role::primary)
            continue;
        if (designated_primary && b.name != *designated_primary)
            continue;  // another instance's leader decides who the primary is
        if (found)
            return std::nullopt;
        found = i;
    }
    return found;
}

const BackendView* ClusterView::find(std::string_view name) const noexcept
{
    for (const auto& b : backends)
        if (b.name == name)
            return &b;
    return nullptr;
}

bool update_lagging(bool was_lagging, std::optional<std::uint64_t> lag_bytes, std::uint64_t max_lag_bytes) noexcept
{
    if (!lag_bytes)
        return was_lagging;  // no fresh figure: keep the last verdict
    if (was_lagging)
        return *lag_bytes > max_lag_bytes / 4 * 3;
    return *lag_bytes > max_lag_bytes;
}

std::optional<std::uint64_t> parse_lsn(std::string_view text) noexcept
{
    const auto slash = text.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash + 1 >= text.size())
        return std::nullopt;
    std::uint32_t hi = 0;
    std::uint32_t lo = 0;
    const auto hi_part = text.substr(0, slash);
    const auto lo_part = text.substr(slash + 1);
    auto r1 = std::from_chars(hi_part.data(), hi_part.data() + hi_part.size(), hi, 16);
    auto r2 = std::from_chars(lo_part.data(), lo_part.data() + lo_part.size(), lo, 16);
    if (r1.ec != std::errc{} || r1.ptr != hi_part.data() + hi_part.size() || r2.ec != std::errc{} ||
        r2.ptr != lo_part.data() + lo_part.size())
        return std::nullopt;
    return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

std::string format_lsn(std::uint64_t lsn)
{
    char buf[32];
    std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32), static_cast<unsigned>(lsn & 0xffffffffu));
    return buf;
}

}  // namespace pgswitch::routing
