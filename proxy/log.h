// Minimal leveled logging to stderr: one line per event, timestamped.
// Thread-safe (one write() per line). Only proxy/ logs; pure layers return values.
#pragma once

#include <exception>
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

template <class... Args>
void debug(const Args&... a)
{
    emit(Level::debug, a...);
}
template <class... Args>
void info(const Args&... a)
{
    emit(Level::info, a...);
}
template <class... Args>
void warning(const Args&... a)
{
    emit(Level::warning, a...);
}
template <class... Args>
void error(const Args&... a)
{
    emit(Level::error, a...);
}

/// A completion handler for asio::co_spawn that logs the exception that
/// ended a long-running coroutine: "<what> stopped: <exception>".
inline auto stopped_by_exception(std::string what)
{
    return [what = std::move(what)](std::exception_ptr e) {
        if (!e)
            return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            error(what, " stopped: ", ex.what());
        }
    };
}

}  // namespace pgswitch::proxy::log
