// Minimal leveled logging to stderr: one line per event, timestamped.
// Thread-safe (one write() per line). Only proxy/ logs; pure layers return values.
#pragma once

#include <sstream>
#include <string>
#include <string_view>

namespace pgswitch::proxy::log {

enum class Level { debug, info, warning, error };

/// Lines below this level are dropped (PGSWITCH_LOG=debug|info|warning|error).
void set_level(Level l) noexcept;
[[nodiscard]] bool enabled(Level l) noexcept;
void write(Level l, std::string_view line);

template <class... Args>
void emit(Level l, const Args&... args)
{
    if (!enabled(l))
        return;
    std::ostringstream os;
    (os << ... << args);
    write(l, os.str());
}

template <class... Args> void debug(const Args&... a) { emit(Level::debug, a...); }
template <class... Args> void info(const Args&... a) { emit(Level::info, a...); }
template <class... Args> void warning(const Args&... a) { emit(Level::warning, a...); }
template <class... Args> void error(const Args&... a) { emit(Level::error, a...); }

}  // namespace pgswitch::proxy::log
