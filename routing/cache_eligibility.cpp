#include "routing/cache_eligibility.h"

#include <charconv>
#include <cstdint>

namespace pgswitch::routing {

namespace {

constexpr std::string_view blanks = " \t\r\n\f\v";

std::string_view trim(std::string_view s) noexcept
{
    const auto first = s.find_first_not_of(blanks);
    if (first == std::string_view::npos)
        return {};
    return s.substr(first, s.find_last_not_of(blanks) - first + 1);
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept
{
    if (s.size() < prefix.size())
        return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        const char c = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
        if (c != prefix[i])
            return false;
    }
    return true;
}

/// "500ms", "5s", "2m", "1h" (a bare number is seconds); nullopt when malformed or zero.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view v) noexcept
{
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || n == 0 || n > 1'000'000'000)
        return std::nullopt;
    const std::string_view unit(end, static_cast<std::size_t>(v.data() + v.size() - end));
    std::uint64_t ms_per_unit = 0;
    if (unit == "ms")
        ms_per_unit = 1;
    else if (unit.empty() || unit == "s")
        ms_per_unit = 1000;
    else if (unit == "m" || unit == "min")
        ms_per_unit = 60'000;
    else if (unit == "h")
        ms_per_unit = 3'600'000;
    else
        return std::nullopt;
    return std::chrono::milliseconds(static_cast<std::int64_t>(n * ms_per_unit));
}

/// The hint's verdict on its own, before the statement is looked at.
std::optional<CacheVerdict> hint_verdict(const CacheHint& hint, CacheStatements statements) noexcept
{
    if (hint.kind == CacheHint::Kind::nocache)
        return CacheVerdict::nocache_hint;
    if (statements == CacheStatements::hinted && hint.kind != CacheHint::Kind::cache)
        return CacheVerdict::not_hinted;
    return std::nullopt;
}

CacheVerdict statement_verdict(const Classification& c, const CacheSituation& situation) noexcept
{
    if (c.parse_error)
        return CacheVerdict::parse_error;
    if (c.statements.size() != 1)
        return c.statements.empty() ? CacheVerdict::not_a_read : CacheVerdict::several_statements;
    const StatementInfo& s = c.statements.front();
    if (s.write || s.kind != StatementKind::select || s.pins_primary || s.uses_currval)
        return CacheVerdict::not_a_read;
    if (situation.in_read_write_transaction)
        return CacheVerdict::write_transaction;
    if (situation.session_pinned)
        return CacheVerdict::pinned_session;
    if (s.session_identity)
        return CacheVerdict::session_identity;
    if (s.unlogged)
        return CacheVerdict::unlogged;
    if (s.nondeterministic)
        return CacheVerdict::nondeterministic;
    return CacheVerdict::cache;
}

void append_part(std::string& key, std::string_view part)
{
    const auto n = static_cast<std::uint32_t>(part.size());
    for (int shift = 24; shift >= 0; shift -= 8)
        key.push_back(static_cast<char>((n >> shift) & 0xff));
    key.append(part);
}

}  // namespace

CacheHint parse_cache_hint(std::string_view sql) noexcept
{
    const auto start = sql.find_first_not_of(blanks);
    if (start == std::string_view::npos || sql.substr(start, 2) != "/*")
        return {};
    const auto end = sql.find("*/", start + 2);
    if (end == std::string_view::npos)
        return {};
    const std::string_view inner = trim(sql.substr(start + 2, end - start - 2));
    if (starts_with_nocase(inner, "pgswitch:nocache") && inner.size() == 16)
        return {CacheHint::Kind::nocache, std::nullopt};
    if (!starts_with_nocase(inner, "pgswitch:cache"))
        return {};
    const std::string_view rest = trim(inner.substr(14));
    if (rest.empty())
        return {CacheHint::Kind::cache, std::nullopt};
    if (!starts_with_nocase(rest, "ttl="))
        return {};  // not ours: "pgswitch:cached_table", a typo... no hint, no surprise
    const auto ttl = parse_duration(trim(rest.substr(4)));
    if (!ttl)
        return {};
    return {CacheHint::Kind::cache, ttl};
}

CacheDecision decide_caching(const Classification& c, std::string_view sql, const CacheSituation& situation)
{
    const CacheHint hint = parse_cache_hint(sql);
    if (const auto refused = hint_verdict(hint, situation.statements))
        return {*refused, std::nullopt};
    return {statement_verdict(c, situation), hint.ttl};
}

std::string_view to_string(CacheVerdict v) noexcept
{
    switch (v) {
    case CacheVerdict::cache:
        return "cache";
    case CacheVerdict::nocache_hint:
        return "nocache_hint";
    case CacheVerdict::not_hinted:
        return "not_hinted";
    case CacheVerdict::not_a_read:
        return "not_a_read";
    case CacheVerdict::several_statements:
        return "several_statements";
    case CacheVerdict::write_transaction:
        return "write_transaction";
    case CacheVerdict::pinned_session:
        return "pinned_session";
    case CacheVerdict::nondeterministic:
        return "nondeterministic";
    case CacheVerdict::unlogged:
        return "unlogged";
    case CacheVerdict::session_identity:
        return "session_identity";
    case CacheVerdict::parse_error:
        return "parse_error";
    }
    return "unknown";
}

std::string cache_key(const CacheKeyParts& parts)
{
    std::string key;
    std::size_t size = 4 * 4 + parts.user.size() + parts.database.size() + parts.text.size();
    for (const auto s : parts.settings)
        size += 4 + s.size();
    if (parts.bind_arguments)
        size += 4 + parts.bind_arguments->size();
    key.reserve(size + 1);
    append_part(key, parts.user);
    append_part(key, parts.database);
    append_part(key, parts.text);
    for (const auto s : parts.settings)
        append_part(key, s);
    // The protocol is part of the key: a simple Query's reply is text, an Execute's may not be.
    key.push_back(parts.bind_arguments ? 'E' : 'Q');
    if (parts.bind_arguments)
        append_part(key, *parts.bind_arguments);
    return key;
}

}  // namespace pgswitch::routing
