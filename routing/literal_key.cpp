#include "literal_key.h"

#include <array>
#include <cstdint>

#include <array>
#include <cstdint>

namespace pgswitch::routing {
namespace {

// Character classes, looked up once per byte.
constexpr std::uint8_t k_ident = 1;  ///< may continue a word: letters, digits, _, $, bytes >= 0x80
constexpr std::uint8_t k_digit = 2;
/// May start something other than plain text: a comment, a quoted token, a
/// literal, a parameter, a word.
constexpr std::uint8_t k_special = 4;

constexpr std::array<std::uint8_t, 256> make_classes()
{
    std::array<std::uint8_t, 256> t{};
    for (std::size_t c = 0; c < t.size(); ++c) {
        const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool dig = c >= '0' && c <= '9';
        if (letter || dig || c == '_' || c == '$' || c >= 0x80)
            t[c] |= k_ident | k_special;
        if (dig)
            t[c] |= k_digit;
        if (c == '-' || c == '/' || c == '"' || c == '\'')
            t[c] |= k_special;
    }
    return t;
}
constexpr auto k_classes = make_classes();

bool ident_char(char c) noexcept
{
    return (k_classes[static_cast<unsigned char>(c)] & k_ident) != 0;
}

bool digit(char c) noexcept
{
    return (k_classes[static_cast<unsigned char>(c)] & k_digit) != 0;
}

bool special(char c) noexcept
{
    return (k_classes[static_cast<unsigned char>(c)] & k_special) != 0;
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

/// Scans `sql`, copying text verbatim in spans and each literal as '?'.
class LiteralFreeWriter {
public:
    explicit LiteralFreeWriter(std::string_view sql) : sql_(sql)
    {
        out_.reserve(sql.size() + 1);
        out_.push_back('\x01');
    }

    std::string run()
    {
        const std::size_t n = sql_.size();
        std::size_t i = 0;
        while (i < n) {
            if (!special(sql_[i])) {
                ++i;
                continue;
            }
            i = std::min(token_end(i), n);
        }
        out_.append(sql_.data() + copied_, n - copied_);
        return std::move(out_);
    }

private:
    /// The end of the token at `i` (a special character), replacing it by
    /// '?' when it is a literal.
    std::size_t token_end(std::size_t i)
    {
        const char c = sql_[i];
        const char next = i + 1 < sql_.size() ? sql_[i + 1] : '\0';
        // Comments are kept: a hint comment changes the routing.
        if (c == '-')
            return next == '-' ? end_of_line_comment(sql_, i) : i + 1;
        if (c == '/')
            return next == '*' ? end_of_block_comment(sql_, i) : i + 1;
        if (c == '"')  // quoted identifier: kept
            return end_of_quoted(sql_, i, '"', false);
        if (c == '\'')
            return literal(i, end_of_quoted(sql_, i, '\'', escape_string(i)));
        // Only '$' and digits ask (a word is skipped whole, so this is rare).
        const bool word_start = i == 0 || !ident_char(sql_[i - 1]);
        if (c == '$' && word_start) {
            if (const auto end = end_of_parameter(sql_, i))
                return end;
            if (const auto end = end_of_dollar_quoted(sql_, i))
                return literal(i, end);
        }
        if (digit(c) && word_start)
            return literal(i, end_of_number(sql_, i));
        // The rest of a keyword or identifier (digits and $ inside it are
        // not literals).
        return end_of_word(sql_, i);
    }

    /// E'...' allows backslash escapes: an E or e kept just before the quote,
    /// itself not the end of a word (what the key shows before it decides).
    [[nodiscard]] bool escape_string(std::size_t i) const noexcept
    {
        if (i == 0 || i - 1 < literal_end_ || (sql_[i - 1] != 'E' && sql_[i - 1] != 'e'))
            return false;
        return i == 1 || i - 2 < literal_end_ || !ident_char(sql_[i - 2]);
    }

    std::size_t literal(std::size_t begin, std::size_t end)
    {
        out_.append(sql_.data() + copied_, begin - copied_);
        out_.push_back('?');
        copied_ = literal_end_ = std::min(end, sql_.size());
        return end;
    }

    std::string_view sql_;
    std::string out_;
    std::size_t copied_ = 0;       ///< sql_ before this is in out_
    std::size_t literal_end_ = 0;  ///< the end of the last literal replaced
};

}  // namespace

std::string literal_free_key(std::string_view sql)
{
    return LiteralFreeWriter(sql).run();
}

}  // namespace pgswitch::routing
