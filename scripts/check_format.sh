#!/usr/bin/env bash
# check_format.sh — every C++ source and header follows .clang-format (clang-format 14, Debian 12).
#   scripts/check_format.sh          list the files that differ (exit 1 if any)
#   scripts/check_format.sh --fix    reformat them in place (what `make format` runs)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v clang-format >/dev/null || { echo "check_format.sh: clang-format not found (Debian package clang-format)" >&2; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    mapfile -t files < <(git ls-files '*.cpp' '*.h')
else
    mapfile -t files < <(find pg_wire routing admin proxy tests bench -name '*.cpp' -o -name '*.h' | grep -v node_modules)
fi
if [[ ${1:-} == --fix ]]; then
    clang-format -i "${files[@]}"
    exit 0
fi
bad=()
for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [[ ${#bad[@]} -gt 0 ]]; then
    echo "check_format.sh: ${#bad[@]} of ${#files[@]} files differ from .clang-format (make format fixes them):"
    printf '  %s\n' "${bad[@]}"
    exit 1
fi
echo "check_format.sh: ${#files[@]} files follow .clang-format"
