#!/usr/bin/env bash
# install_deps.sh — install the Debian 12 packages pgswitch needs to build, test and run.
# Only missing packages are installed (checked with dpkg-query); `apt-get update` runs once,
# and only when something is missing. Silent when everything is already there.
# Uses sudo when not root.
#   scripts/install_deps.sh           install what is missing
#   scripts/install_deps.sh --check   only list what is missing (exit 1 if anything is)
set -euo pipefail

CHECK_ONLY=0
case ${1:-} in
    --check) CHECK_ONLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

PACKAGES=(
    # toolchain (clang-format: scripts/check_format.sh, part of make test)
    g++ make meson ninja-build pkg-config cmake clang-format
    # libraries
    libboost1.81-dev libpq-dev libpg-query-dev nlohmann-json3-dev libtomlplusplus-dev
    doctest-dev libssl-dev
    # PostgreSQL 15 for the test cluster (pgbench ships in postgresql-15; postgresql-contrib-15
    # is a virtual package provided by it)
    postgresql-15 postgresql-client-15 postgresql-contrib-15
    # scripts and tests
    python3 python3-psycopg procps iproute2 docker-compose
    # the drivers the end-to-end tests run in their default configuration
    # (node-postgres itself comes from the npm registry: tests/drivers/setup.sh)
    python3-asyncpg libpostgresql-jdbc-java default-jdk-headless nodejs npm
    # cluster mode (issue 11): a 3-member etcd on loopback, and a packet filter to cut one
    # instance off from it
    etcd-server etcd-client nftables
)

installed() {  # installed PKG: a real package in state "ii", or a virtual one some installed package provides
    local st
    st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null || true)
    [[ $st == ii* ]] && return 0
    dpkg-query -W -f='${db:Status-Abbrev}|${Provides}\n' 2>/dev/null \
        | awk -F'|' -v p="$1" '$1 ~ /^ii/ { n = split($2, a, /, */); for (i = 1; i <= n; i++) { sub(/ .*/, "", a[i]); if (a[i] == p) found = 1 } } END { exit !found }'
}

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $CHECK_ONLY -eq 1 ]]; then
    echo "missing: ${missing[*]}"
    exit 1
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    echo "install_deps.sh: missing packages: ${missing[*]}; not root and no sudo — install them as root" >&2
    exit 1
fi

echo "install_deps.sh: installing ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

still=()
for p in "${missing[@]}"; do installed "$p" || still+=("$p"); done
if [[ ${#still[@]} -gt 0 ]]; then
    echo "install_deps.sh: still missing after apt-get install: ${still[*]}" >&2
    exit 1
fi
echo "install_deps.sh: done"
