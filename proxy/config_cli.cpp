// The command line of SPEC §1: parse_command_line() (CommandLineParser),
// config_from_flags() (flag mode's Config) and usage_text() (--help). The
// flags that stand for a config key say which (OptionSpec::config_key): their
// defaults in --help and the keys in flag mode's messages come from that key.
#include "proxy/config.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "proxy/config_keys.h"

namespace pgswitch::proxy {

namespace {

using config_keys::quoted;

/// An option: whether it takes a value, whether it is one of flag mode's
/// (which make no sense with -c), and the config key it sets, if any.
struct OptionSpec {
    std::string_view name;
    bool takes_value;
    bool flag_mode_only;
    std::string_view config_key = {};
};

constexpr OptionSpec options[] = {
    {"--config", true, false},
    {"--check", false, false},
    {"--version", false, false},
    {"--help", false, false},
    {"--primary", true, true},
    {"--replica", true, true},
    {"--listen", true, true, "proxy.listen"},
    {"--admin-listen", true, true, "admin.listen"},
    {"--user", true, true, "health.user"},
    {"--password", true, true},
};

/// The option that sets config key `key`, nullptr for none.
const OptionSpec* option_for_key(std::string_view key)
{
    const auto* o = std::find_if(std::begin(options), std::end(options),
                                 [key](const OptionSpec& spec) { return !key.empty() && spec.config_key == key; });
    return o == std::end(options) ? nullptr : o;
}

/// `text` with every "{section.key}" replaced by that key's default.
std::string with_defaults(std::string_view text)
{
    std::string out;
    for (std::size_t pos = 0; pos < text.size();) {
        const auto open = text.find('{', pos);
        const auto close = open == std::string_view::npos ? open : text.find('}', open);
        if (close == std::string_view::npos) {
            out += text.substr(pos);
            break;
        }
        const auto name = text.substr(open + 1, close - open - 1);
        out += text.substr(pos, open - pos);
        out += config_keys::default_text(name).value_or("{" + std::string(name) + "}");
        pos = close + 1;
    }
    return out;
}

/// The command line, one argument at a time: next_option() finds an option
/// and its value, apply() records it, finish() checks what combination it
/// makes. Every problem is collected, none stops the parse.
class CommandLineParser {
public:
    CommandLineParser(int argc, const char* const* argv) : argc_(argc), argv_(argv) {}

    CommandLineResult run()
    {
        for (int i = 1; i < argc_; ++i)
            if (auto opt = next_option(i))
                apply(opt->first, opt->second);
        finish();
        if (errors_.empty())
            return {std::move(cmd_), {}};
        return {std::nullopt, std::move(errors_)};
    }

private:
    /// The option at argv[i] and its value (advancing i past a separate
    /// value); nullopt after reporting a problem with it.
    std::optional<std::pair<std::string_view, std::string>> next_option(int& i)
    {
        const std::string_view arg = argv_[i];
        std::string_view name = arg;
        std::optional<std::string_view> inline_value;
        // Short forms are exactly "-c" and "-h"; "-cFILE" is not accepted.
        if (arg == "-c") {
            name = "--config";
        } else if (arg == "-h") {
            name = "--help";
        } else if (arg.starts_with("--")) {
            if (const auto eq = arg.find('='); eq != std::string_view::npos) {
                name = arg.substr(0, eq);
                inline_value = arg.substr(eq + 1);
            }
        } else {
            return fail("unexpected argument " + quoted(arg) + " (see --help)");
        }
        const auto* spec = std::find_if(std::begin(options), std::end(options),
                                        [&](const OptionSpec& o) { return o.name == name; });
        if (spec == std::end(options))
            return fail("unknown option " + quoted(name) + " (see --help)");
        std::string value;
        if (!spec->takes_value) {
            if (inline_value)
                return fail(std::string(name) + " takes no value");
        } else if (inline_value) {
            value = std::string(*inline_value);
        } else if (i + 1 < argc_) {
            const std::string_view next = argv_[i + 1];
            // "--config --check" is a forgotten value, not a file called
            // "--check". Passwords are taken verbatim: they may start with '-'.
            if (name != "--password" && next.size() > 1 && next.front() == '-')
                return fail(std::string(name) + " needs a value");
            value = std::string(next);
            ++i;
        } else {
            return fail(std::string(name) + " needs a value");
        }
        if (spec->takes_value && value.empty() && name != "--password")
            return fail(std::string(name) + " needs a non-empty value");
        if (spec->flag_mode_only)
            flag_mode_options_.emplace_back(name);
        return std::pair{spec->name, std::move(value)};
    }

    void apply(std::string_view name, const std::string& value)
    {
        const auto once = [&](bool already) {
            if (already)
                errors_.push_back(std::string(name) + " given more than once");
            return !already;
        };
        if (name == "--config") {
            if (once(saw_config_))
                cmd_.config_path = value;
            saw_config_ = true;
        } else if (name == "--check") {
            check_ = true;
        } else if (name == "--version") {
            version_ = true;
        } else if (name == "--help") {
            help_ = true;
        } else if (name == "--primary") {
            if (once(cmd_.primary.has_value()))
                cmd_.primary = endpoint(name, value);
        } else if (name == "--replica") {
            if (auto e = endpoint(name, value))
                cmd_.replicas.push_back(std::move(*e));
        } else if (name == "--listen") {
            if (once(cmd_.listen.has_value()))
                cmd_.listen = endpoint(name, value);
        } else if (name == "--admin-listen") {
            if (once(cmd_.admin_listen.has_value()))
                cmd_.admin_listen = endpoint(name, value);
        } else if (name == "--user") {
            if (once(!cmd_.user.empty()))
                cmd_.user = value;
        } else if (name == "--password") {
            if (once(saw_password_))
                cmd_.password = value;
            saw_password_ = true;
        }
    }

    /// The action, and what the options given together cannot do.
    void finish()
    {
        // --help and --version do nothing else, so they need no -c or --primary.
        if (help_) {
            cmd_.action = CommandLine::Action::help;
            return;
        }
        if (version_) {
            cmd_.action = CommandLine::Action::version;
            return;
        }
        const bool flag_mode = !flag_mode_options_.empty();
        if (check_) {
            cmd_.action = CommandLine::Action::check;
            if (!saw_config_)
                errors_.push_back("--check needs -c FILE");
        }
        if (saw_config_ && flag_mode) {
            errors_.push_back("-c cannot be combined with " + flag_mode_options_.front() +
                              " (use either a config file or the flags)");
        } else if (!check_ && !saw_config_ && !flag_mode) {
            errors_.push_back("nothing to run: give -c FILE or --primary HOST:PORT (see --help)");
        } else if (!saw_config_ && flag_mode && !cmd_.primary && !check_) {
            // Only report when --primary was not given at all; a bad --primary
            // value already produced its own message.
            const bool primary_given = std::find(flag_mode_options_.begin(), flag_mode_options_.end(), "--primary") !=
                                       flag_mode_options_.end();
            if (!primary_given)
                errors_.push_back("flag mode needs --primary HOST:PORT");
        }
    }

    std::optional<Endpoint> endpoint(std::string_view opt, std::string_view value)
    {
        std::string why;
        auto e = config_keys::parse_endpoint(value, why);
        if (!e)
            errors_.push_back(std::string(opt) + ": invalid address " + quoted(value) + ": " + why);
        return e;
    }

    std::nullopt_t fail(std::string message)
    {
        errors_.push_back(std::move(message));
        return std::nullopt;
    }

    int argc_;
    const char* const* argv_;
    CommandLine cmd_;
    std::vector<std::string> errors_;
    bool check_ = false, version_ = false, help_ = false;
    bool saw_config_ = false, saw_password_ = false;
    std::vector<std::string> flag_mode_options_;  // for the "-c plus --primary" message
};

}  // namespace

CommandLineResult parse_command_line(int argc, const char* const* argv)
{
    return CommandLineParser(argc, argv).run();
}

LoadResult config_from_flags(const CommandLine& cmd)
{
    Config c;
    std::vector<ConfigError> errors;
    if (cmd.listen)
        c.proxy.listen = *cmd.listen;
    if (cmd.admin_listen)
        c.admin.listen = *cmd.admin_listen;

    if (cmd.primary)
        c.backends.push_back(BackendConfig{"primary", cmd.primary->host, cmd.primary->port, 1});
    else
        errors.push_back(ConfigError{"", "--primary", "flag mode needs --primary HOST:PORT"});
    for (std::size_t i = 0; i < cmd.replicas.size(); ++i) {
        const auto& r = cmd.replicas[i];
        c.backends.push_back(BackendConfig{"replica" + std::to_string(i + 1), r.host, r.port, 1});
    }

    // The one user logs clients in (SCRAM, which needs the plaintext here) and
    // also runs health checks and promotion; so it defaults to health.user's default.
    const std::string user = cmd.user.empty() ? c.health.user : cmd.user;
    c.health.user = user;
    c.health.password = cmd.password;
    if (cmd.password.empty()) {
        errors.push_back(ConfigError{"", "--password",
                                     "flag mode needs --password (user " + quoted(user) +
                                         " logs clients in and runs health checks)"});
    } else {
        UserConfig u;
        u.name = user;
        u.password = cmd.password;
        c.users.push_back(std::move(u));
    }

    // Name keys as the flags the user actually typed where that is unambiguous.
    for (auto& e : validate(c)) {
        if (e.key == "users" || e.key == "backends")
            continue;  // reported above as flags
        if (const OptionSpec* o = option_for_key(e.key))
            e.key = o->name;
        errors.push_back(std::move(e));
    }

    LoadResult result;
    if (errors.empty())
        result.config = std::move(c);
    else
        result.errors = std::move(errors);
    return result;
}

std::string usage_text()
{
    return with_defaults(R"(pgswitch: a PostgreSQL proxy that sends writes to the primary and reads to replicas.

Usage:
  pgswitch -c FILE                 run with a TOML config file
  pgswitch --check -c FILE         validate FILE and exit: 0 if valid, else 1 listing
                                   every problem (file, key, what is wrong)
  pgswitch --primary HOST:PORT [--replica HOST:PORT]... [--listen ADDR:PORT]
           [--admin-listen ADDR:PORT] [--user NAME --password PW]
                                   run without a file; server roles are still
                                   discovered, the flags only list the servers
  pgswitch --version               print the version and exit
  pgswitch --help, -h              print this text and exit

Options:
  -c, --config FILE          config file (TOML)
      --check                only validate the config file (needs -c)
      --primary HOST:PORT    a server, named "primary"
      --replica HOST:PORT    another server, named replica1, replica2, ... (repeatable)
      --listen ADDR:PORT     SQL listener (default {proxy.listen})
      --admin-listen ADDR:PORT
                             admin HTTP listener (default {admin.listen}); flag mode
                             has no token, so it must be a loopback address
      --user NAME            the one user in flag mode (default {health.user}): logs clients
                             in and runs health checks and promotion
      --password PW          that user's password (required in flag mode)

  Values may be given as "--opt value" or "--opt=value". IPv6 addresses are
  bracketed: "[::1]:5432".

Signals:
  SIGHUP                     reload the config file without dropping clients
  SIGTERM, SIGINT            stop accepting, let open transactions finish (up to
                             proxy.shutdown_timeout_ms), then exit 0
)");
}

}  // namespace pgswitch::proxy
