#!/usr/bin/env bash
# setup.sh — installs node-postgres for tests/drivers/node_driver.js from the npm registry,
# at the version tests/drivers/node/package-lock.json pins, into DIR/node_modules
# (default build/drivers/node). The other drivers are Debian packages (scripts/install_deps.sh).
# Quiet and quick when it is already there.
#   tests/drivers/setup.sh [DIR]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${1:-$REPO/build/drivers/node}
SRC=$REPO/tests/drivers/node
mkdir -p "$DIR"
if [[ -f $DIR/node_modules/pg/package.json ]] && cmp -s "$SRC/package-lock.json" "$DIR/package-lock.json"; then
    exit 0
fi
command -v npm >/dev/null || { echo "setup.sh: npm not found (Debian nodejs/npm)" >&2; exit 1; }
cp "$SRC/package.json" "$SRC/package-lock.json" "$DIR/"
(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || { echo "setup.sh: npm ci failed in $DIR" >&2; exit 1; }
