#include "literal_key.h"

namespace pgswitch::routing {
namespace {

bool ident_char(char c) noexcept
{
    const auto u = static_cast<unsigned char>(c);
    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '_' || c == '$' ||
           u >= 0x80;
}

bool digit(char c) noexcept
{
    return c >= '0' && c <= '9';
}

// Each end_of_* takes the position of a token's first character and returns
// the position just past it (at most sql.size()).

std::size_t end_of_line_comment(std::string_view sql, std::size_t i) noexcept
{
    const auto end = sql.find('\n', i);
    return end == std::string_view::npos ? sql.size() : end;
}

std::size_t end_of_block_comment(std::string_view sql, std::size_t i) noexcept  // nested, as PostgreSQL's
{
    const std::size_t n = sql.size();
    int depth = 0;
    std::size_t j = i;
    while (j < n) {
        if (sql[j] == '/' && j + 1 < n && sql[j + 1] == '*') {
            ++depth;
            j += 2;
        } else if (sql[j] == '*' && j + 1 < n && sql[j + 1] == '/') {
            j += 2;
            if (--depth == 0)
                break;
        } else {
            ++j;
        }
    }
    return j;
}

/// A quoted token ("identifier" or 'string'), where a doubled quote stands
/// for itself and, with `escapes` (E'...'), a backslash escapes the next byte.
std::size_t end_of_quoted(std::string_view sql, std::size_t i, char quote, bool escapes) noexcept
{
    const std::size_t n = sql.size();
    std::size_t j = i + 1;
    while (j < n) {
        if (escapes && sql[j] == '\\') {
            j += 2;
            continue;
        }
        if (sql[j] == quote) {
            if (j + 1 < n && sql[j + 1] == quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        ++j;
    }
    return n;
}

/// $1 (a parameter, kept): its end; else 0.
std::size_t end_of_parameter(std::string_view sql, std::size_t i) noexcept
{
    if (i + 1 >= sql.size() || !digit(sql[i + 1]))
        return 0;
    std::size_t j = i + 1;
    while (j < sql.size() && digit(sql[j]))
        ++j;
    return j;
}

/// $tag$ ... $tag$ (the tag may be empty): its end; else 0 (a lone $).
std::size_t end_of_dollar_quoted(std::string_view sql, std::size_t i) noexcept
{
    const std::size_t n = sql.size();
    std::size_t j = i + 1;
    while (j < n && ident_char(sql[j]) && sql[j] != '$')
        ++j;
    if (j >= n || sql[j] != '$')
        return 0;
    const auto tag = sql.substr(i, j - i + 1);
    const auto close = sql.find(tag, j + 1);
    return close == std::string_view::npos ? n : close + tag.size();
}

/// 12, 1.5, 1e-3.
std::size_t end_of_number(std::string_view sql, std::size_t i) noexcept
{
    const std::size_t n = sql.size();
    std::size_t j = i;
    while (j < n && (digit(sql[j]) || sql[j] == '.'))
        ++j;
    if (j < n && (sql[j] == 'e' || sql[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < n && (sql[k] == '+' || sql[k] == '-'))
            ++k;
        if (k < n && digit(sql[k])) {
            j = k;
            while (j < n && digit(sql[j]))
                ++j;
        }
    }
    return j;
}

std::size_t end_of_word(std::string_view sql, std::size_t i) noexcept
{
    std::size_t j = i + 1;
    while (j < sql.size() && ident_char(sql[j]))
        ++j;
    return j;
}

}  // namespace

std::string literal_free_key(std::string_view sql)
{
    std::string out;
    out.reserve(sql.size() + 1);
    out.push_back('\x01');
    const std::size_t n = sql.size();
    const auto copy = [&](std::size_t from, std::size_t to) { out.append(sql.data() + from, to - from); };
    std::size_t i = 0;
    while (i < n) {
        const char c = sql[i];
        const char next = i + 1 < n ? sql[i + 1] : '\0';
        // Only '$' and digits ask (a word is copied whole, so this is rare).
        const auto word_start = [&] { return i == 0 || !ident_char(sql[i - 1]); };
        std::size_t end = 0;
        // Comments are copied: a hint comment changes the routing.
        if (c == '-' && next == '-') {
            copy(i, end = end_of_line_comment(sql, i));
        } else if (c == '/' && next == '*') {
            copy(i, end = end_of_block_comment(sql, i));
        } else if (c == '"') {  // quoted identifier: kept
            copy(i, end = end_of_quoted(sql, i, '"', false));
        } else if (c == '\'') {
            // E'...' allows backslash escapes; a preceding E/e was copied already.
            const bool escapes = (out.back() == 'E' || out.back() == 'e') &&
                                 (out.size() < 2 || !ident_char(out[out.size() - 2]));
            end = end_of_quoted(sql, i, '\'', escapes);
            out.push_back('?');
        } else if (c == '$' && word_start() && (end = end_of_parameter(sql, i)) != 0) {
            copy(i, end);
        } else if (c == '$' && word_start() && (end = end_of_dollar_quoted(sql, i)) != 0) {
            out.push_back('?');
        } else if (digit(c) && word_start()) {
            end = end_of_number(sql, i);
            out.push_back('?');
        } else if (ident_char(c)) {
            // The rest of a keyword or identifier (digits and $ inside it are
            // not literals), copied in one go.
            copy(i, end = end_of_word(sql, i));
        } else {
            out.push_back(c);
            end = i + 1;
        }
        i = std::min(end, n);
    }
    return out;
}

}  // namespace pgswitch::routing
