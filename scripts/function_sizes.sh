#!/usr/bin/env bash
# function_sizes.sh — functions longer than N lines (default 80) in pg_wire/, routing/, admin/ and
# proxy/, measured by clang-tidy's readability-function-size on the build's compile_commands.json,
# longest first; and the line count of each .cpp. Needs a configured build (make build) and
# clang-tidy (Debian package clang-tidy).
#   scripts/function_sizes.sh [N]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
LIMIT=${1:-80}
BUILD=${BUILD_DIR:-build}
[[ -f $BUILD/compile_commands.json ]] || { echo "no $BUILD/compile_commands.json: run make build" >&2; exit 2; }
config="{CheckOptions: [{key: readability-function-size.LineThreshold, value: $LIMIT}]}"
ls pg_wire/*.cpp routing/*.cpp admin/*.cpp proxy/*.cpp \
    | xargs -P "$(nproc)" -n 1 clang-tidy -p "$BUILD" --quiet -checks='-*,readability-function-size' \
        -config="$config" 2>/dev/null \
    | awk '/warning: function .* exceeds/ { match($0, /function '"'"'[^'"'"']*'"'"'/); fn = substr($0, RSTART + 10, RLENGTH - 11);
                                            split($1, loc, ":"); where = loc[1] ":" loc[2] }
           /note: [0-9]+ lines including/ { n = $3; if (where != "") print n, fn, where; where = "" }' \
    | sed 's|^\([0-9]*\) \(.*\) \.\./|\1 \2 |' | sort -rn | awk -v lim="$LIMIT" '{ print } END { print NR " functions longer than " lim " lines" }'
