// The value types of config.h: Endpoint (and "host:port" parsing), Config's
// user lookup and ConfigError's one-line form. Reading a file is in
// config_toml.cpp, the rules in config_validate.cpp, the flags in
// config_cli.cpp, and the keys themselves in config_keys.h.
#include "proxy/config.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "proxy/config_keys.h"

namespace pgswitch::proxy {

std::string Endpoint::to_string() const
{
    // IPv6 literals need brackets or the port would be ambiguous.
    if (host.find(':') != std::string::npos)
        return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

const UserConfig* Config::find_user(std::string_view name) const noexcept
{
    for (const auto& u : users)
        if (u.name == name)
            return &u;
    return nullptr;
}

std::string ConfigError::to_string() const
{
    std::string out;
    if (!file.empty())
        out += file + ": ";
    if (!key.empty())
        out += key + ": ";
    out += message;
    return out;
}

std::optional<Endpoint> parse_endpoint(std::string_view text)
{
    std::string why;
    return config_keys::parse_endpoint(text, why);
}

std::optional<Endpoint> config_keys::parse_endpoint(std::string_view text, std::string& why)
{
    std::string_view host;
    std::string_view rest;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos) {
            why = "missing ']' after IPv6 address";
            return std::nullopt;
        }
        host = text.substr(1, close - 1);
        rest = text.substr(close + 1);
        // A bracketed host must be an IPv6 literal; names never need brackets.
        const std::string h(host);
        in6_addr a6{};
        if (inet_pton(AF_INET6, h.c_str(), &a6) != 1) {
            why = "\"" + h + "\" is not an IPv6 address";
            return std::nullopt;
        }
        if (rest.empty() || rest.front() != ':') {
            why = "port is required (\"[v6]:port\")";
            return std::nullopt;
        }
        rest.remove_prefix(1);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            why = "port is required (\"host:port\")";
            return std::nullopt;
        }
        host = text.substr(0, colon);
        rest = text.substr(colon + 1);
        // "::1:5432" is ambiguous; IPv6 must be bracketed.
        if (host.find(':') != std::string_view::npos) {
            why = "IPv6 addresses must be bracketed, e.g. \"[::1]:5432\"";
            return std::nullopt;
        }
    }
    if (host.empty()) {
        why = "host is empty";
        return std::nullopt;
    }
    const bool host_ok = std::none_of(host.begin(), host.end(), [](char ch) {
        return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '/' || ch == '[' || ch == ']';
    });
    if (!host_ok) {
        why = "host \"" + std::string(host) + "\" contains invalid characters";
        return std::nullopt;
    }
    if (rest.empty()) {
        why = "port is required";
        return std::nullopt;
    }
    // from_chars would accept nothing but digits anyway; check explicitly so
    // "+5432" or " 5432" are rejected rather than half-parsed.
    if (!std::all_of(rest.begin(), rest.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
        why = "port \"" + std::string(rest) + "\" is not a number";
        return std::nullopt;
    }
    unsigned long port = 0;
    const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), port);
    if (ec != std::errc{} || ptr != rest.data() + rest.size() || port < 1 || port > 65535) {
        why = "port must be 1..65535";
        return std::nullopt;
    }
    return Endpoint{std::string(host), static_cast<std::uint16_t>(port)};
}

}  // namespace pgswitch::proxy
