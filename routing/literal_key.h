// A cache key that ignores literal values: "WHERE aid = 1" and "WHERE aid = 2"
// share one classifier cache entry (issue 5), since values never change where
// a statement of those kinds may run.
#pragma once

#include <string>
#include <string_view>

namespace pgswitch::routing {

/// `sql` with every numeric and string literal (plain, E'', $$-quoted)
/// replaced by '?'; identifiers, keywords, $n parameters and comments (hints
/// live there) are kept. Prefixed with a byte no SQL text starts with, so it
/// never collides with an exact-text key.
[[nodiscard]] std::string literal_free_key(std::string_view sql);

}  // namespace pgswitch::routing
