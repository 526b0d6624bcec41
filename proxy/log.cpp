#include "log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>

namespace pgswitch::proxy::log {
namespace {
std::atomic<Level> g_level{Level::info};

const char* level_name(Level l) noexcept
{
    switch (l) {
    case Level::debug:
        return "DEBUG";
    case Level::info:
        return "INFO";
    case Level::warning:
        return "WARNING";
    case Level::error:
        return "ERROR";
    }
    return "INFO";
}
}  // namespace

void set_level(Level l) noexcept
{
    g_level.store(l, std::memory_order_relaxed);
}

bool enabled(Level l) noexcept
{
    return static_cast<int>(l) >= static_cast<int>(g_level.load(std::memory_order_relaxed));
}

void write(Level l, std::string_view line)
{
    using namespace std::chrono;
    const auto now = system_clock::now();
    const auto t = system_clock::to_time_t(now);
    const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[64];
    const auto n = std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    std::string out;
    out.reserve(line.size() + 48);
    out.append(stamp, n);
    char frac[8];
    std::snprintf(frac, sizeof frac, ".%03d", static_cast<int>(ms));
    out += frac;
    out += " UTC ";
    out += level_name(l);
    out += ": ";
    out += line;
    out += '\n';
    // One write() keeps lines whole when several threads log at once.
    [[maybe_unused]] auto r = ::write(2, out.data(), out.size());
}

}  // namespace pgswitch::proxy::log
