// pgswitch entry point: command line (SPEC §1), configuration, then the runtime.
#include <sys/resource.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "config.h"
#include "log.h"
#include "runtime.h"

using namespace pgswitch::proxy;

namespace {

/// Every client costs a descriptor (two in session mode, with its server connection), and
/// the usual soft limit of 1024 would cap pgswitch far below max_client_connections. The
/// soft limit is raised to the hard limit, which an administrator controls (PgBouncer
/// leaves this to its service file; nginx has worker_rlimit_nofile).
void raise_nofile_limit()
{
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        log::warning("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno));
        return;
    }
    if (lim.rlim_cur >= lim.rlim_max) {
        log::info("open files limit ", lim.rlim_cur, " (soft = hard)");
        return;
    }
    const auto old = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
        log::warning("could not raise the open files limit from ", old, " to ", lim.rlim_max, ": ",
                     std::strerror(errno));
        return;
    }
    log::info("open files limit raised from ", old, " to the hard limit ", lim.rlim_max);
}

}  // namespace

int main(int argc, char** argv)
{
    // A client that disconnects mid-write must cost one session, not the process.
    std::signal(SIGPIPE, SIG_IGN);
    if (const char* level = std::getenv("PGSWITCH_LOG")) {
        const std::string_view l(level);
        log::set_level(l == "debug"     ? log::Level::debug
                       : l == "warning" ? log::Level::warning
                       : l == "error"   ? log::Level::error
                                        : log::Level::info);
    }

    auto parsed = parse_command_line(argc, argv);
    if (!parsed.cmd) {
        for (const auto& e : parsed.errors)
            std::cerr << "pgswitch: " << e << "\n";
        std::cerr << "Try 'pgswitch --help'.\n";
        return 1;
    }
    const auto& cmd = *parsed.cmd;
    if (cmd.action == CommandLine::Action::help) {
        std::cout << usage_text();
        return 0;
    }
    if (cmd.action == CommandLine::Action::version) {
        std::cout << "pgswitch " << PGSWITCH_VERSION_STRING << "\n";
        return 0;
    }

    auto loaded = cmd.config_path.empty() ? config_from_flags(cmd) : load_config_file(cmd.config_path);
    if (!loaded.errors.empty()) {
        for (const auto& e : loaded.errors)
            std::cerr << e.to_string() << "\n";
        std::cerr << "pgswitch: " << loaded.errors.size() << " configuration problem(s)\n";
        return 1;
    }
    if (cmd.action == CommandLine::Action::check) {
        std::cout << cmd.config_path << ": configuration OK\n";
        return 0;
    }
    raise_nofile_limit();
    try {
        Runtime runtime(std::move(*loaded.config), cmd.config_path);
        return runtime.run();
    } catch (const std::exception& e) {
        log::error("fatal: ", e.what());
        return 1;
    }
}
