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

}  // namespace

std::string literal_free_key(std::string_view sql)
{
    std::string out;
    out.reserve(sql.size() + 1);
    out.push_back('\x01');
    const std::size_t n = sql.size();
    std::size_t i = 0;
    while (i < n) {
        const char c = sql[i];
        // Comments are copied: a hint comment changes the routing.
        if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
            const auto end = sql.find('\n', i);
            const auto stop = end == std::string_view::npos ? n : end;
            out.append(sql.substr(i, stop - i));
            i = stop;
            continue;
        }
        if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
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
            out.append(sql.substr(i, j - i));
            i = j;
            continue;
        }
        if (c == '"') {  // quoted identifier: kept
            std::size_t j = i + 1;
            while (j < n) {
                if (sql[j] == '"') {
                    if (j + 1 < n && sql[j + 1] == '"') {
                        j += 2;
                        continue;
                    }
                    ++j;
                    break;
                }
                ++j;
            }
            out.append(sql.substr(i, j - i));
            i = j;
            continue;
        }
        if (c == '\'') {
            // E'...' allows backslash escapes; a preceding E/e was copied already.
            const bool escapes = !out.empty() && (out.back() == 'E' || out.back() == 'e') &&
                                 (out.size() < 2 || !ident_char(out[out.size() - 2]));
            std::size_t j = i + 1;
            while (j < n) {
                if (escapes && sql[j] == '\\') {
                    j += 2;
                    continue;
                }
                if (sql[j] == '\'') {
                    if (j + 1 < n && sql[j + 1] == '\'') {
                        j += 2;
                        continue;
                    }
                    ++j;
                    break;
                }
                ++j;
            }
            out.push_back('?');
            i = std::min(j, n);
            continue;
        }
        if (c == '$' && (i == 0 || !ident_char(sql[i - 1]))) {
            if (i + 1 < n && digit(sql[i + 1])) {  // $1 parameter: kept
                std::size_t j = i + 1;
                while (j < n && digit(sql[j]))
                    ++j;
                out.append(sql.substr(i, j - i));
                i = j;
                continue;
            }
            // $tag$ ... $tag$ (tag may be empty)
            std::size_t j = i + 1;
            while (j < n && ident_char(sql[j]) && sql[j] != '$')
                ++j;
            if (j < n && sql[j] == '$') {
                const auto tag = sql.substr(i, j - i + 1);
                const auto close = sql.find(tag, j + 1);
                i = close == std::string_view::npos ? n : close + tag.size();
                out.push_back('?');
                continue;
            }
        }
        if (digit(c) && (i == 0 || !ident_char(sql[i - 1]))) {
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
            out.push_back('?');
            i = j;
            continue;
        }
        if (ident_char(c)) {
            // The rest of a keyword or identifier (digits and $ inside it are
            // not literals), copied in one go.
            std::size_t j = i + 1;
            while (j < n && ident_char(sql[j]))
                ++j;
            out.append(sql.data() + i, j - i);
            i = j;
            continue;
        }
        out.push_back(c);
        ++i;
    }
    return out;
}

}  // namespace pgswitch::routing
