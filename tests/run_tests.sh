#!/usr/bin/env bash
# run_tests.sh — run every doctest binary and print one total.
#
#   tests/run_tests.sh           unit binaries, then the end-to-end binary against a fresh cluster
#   tests/run_tests.sh --unit    unit binaries only
#
# Unit binaries are the executables named in tests/unit/meson.build, under build/tests/unit/;
# an expected one that is missing counts as 1 failure. The end-to-end binary
# (build/tests/integration/integration_e2e) runs, if it was built, against a cluster started by
# tests/pg_cluster.sh in .cluster-test/ (always stopped afterwards), with
#   PGSWITCH_CLUSTER_ENV=<that dir>/cluster.env  PGSWITCH_BIN=<repo>/build/proxy/pgswitch
# Each binary's "[doctest] test cases: T | P passed | F failed | S skipped" line is added up;
# a binary that exits non-zero without such a line (crash, timeout) counts as 1 failure.
# The last line printed is always "N passed, M failed"; exit status 0 iff M == 0.
# BUILD_DIR (default build) and UNIT_TIMEOUT / E2E_TIMEOUT (seconds) can be set in the environment.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
[[ $BUILD = /* ]] || BUILD=$REPO/$BUILD
UNIT_TIMEOUT=${UNIT_TIMEOUT:-600}
E2E_TIMEOUT=${E2E_TIMEOUT:-1800}
TEST_CLUSTER_DIR=$REPO/.cluster-test

UNIT_ONLY=0
case ${1:-} in
    --unit) UNIT_ONLY=1 ;;
    "") ;;
    *) echo "usage: $0 [--unit]" >&2; exit 2 ;;
esac

PASSED=0
FAILED=0
SUMMARY=()          # one line per binary, repeated at the end
CLUSTER_STARTED=0

CHILD_PID=
TAIL_PID=
finish() {
    local rc=$?
    if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID" 2>/dev/null     # timeout(1) passes it on to the test binary
        wait "$CHILD_PID" 2>/dev/null
    fi
    [[ -n $TAIL_PID ]] && kill "$TAIL_PID" 2>/dev/null
    if [[ $CLUSTER_STARTED -eq 1 ]]; then
        bash "$REPO/tests/pg_cluster.sh" stop --dir "$TEST_CLUSTER_DIR" >/dev/null 2>&1 \
            || echo "run_tests.sh: warning: could not stop the test cluster in $TEST_CLUSTER_DIR"
        CLUSTER_STARTED=0
    fi
    if [[ ${FINISHED:-0} -ne 1 ]]; then      # interrupted: still end with the totals line
        FAILED=$((FAILED + 1))
        echo "run_tests.sh: interrupted (status $rc)"
        echo "$PASSED passed, $FAILED failed"
    fi
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_binary NAME PATH TIMEOUT: run one doctest binary, add its counts to the totals.
run_binary() {
    local name=$1 path=$2 limit=$3 out rc line t p f s
    out=$(mktemp)
    echo "=== $name"
    # In the background, so a Ctrl-C/SIGTERM reaches our trap at once (finish() ends it).
    timeout -k 10 "$limit" "$path" >"$out" 2>&1 </dev/null &
    CHILD_PID=$!
    tail -n +1 -f --pid="$CHILD_PID" "$out" &
    TAIL_PID=$!
    wait "$CHILD_PID"; rc=$?
    wait "$TAIL_PID" 2>/dev/null
    CHILD_PID='' TAIL_PID=''
    line=$(sed -E 's/\x1b\[[0-9;]*m//g' "$out" | grep -E '^\[doctest\] test cases:' | tail -n1)
    rm -f "$out"
    if [[ $line =~ test\ cases:\ *([0-9]+)\ *\|\ *([0-9]+)\ passed\ *\|\ *([0-9]+)\ failed(\ *\|\ *([0-9]+)\ skipped)? ]]; then
        t=${BASH_REMATCH[1]} p=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]} s=${BASH_REMATCH[5]:-0}
        if [[ $rc -ne 0 && $f -eq 0 ]]; then
            f=1     # summary says all passed but the process failed (crash at exit, leak checker, ...)
            SUMMARY+=("$name: $p passed, $f failed ($t test cases, $s skipped; exit status $rc despite no failed test case)")
        else
            SUMMARY+=("$name: $p passed, $f failed ($t test cases, $s skipped)")
        fi
    else
        p=0
        if [[ $rc -eq 0 ]]; then
            f=0
            SUMMARY+=("$name: no doctest summary line, exit status 0 (counted as nothing)")
        else
            f=1
            case $rc in
                124|137) SUMMARY+=("$name: FAILED — timed out after ${limit}s, no doctest summary (counted as 1 failure)") ;;
                *) SUMMARY+=("$name: FAILED — exit status $rc$( ((rc > 128)) && echo " (signal $((rc - 128)))"), no doctest summary (counted as 1 failure)") ;;
            esac
        fi
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
    echo "--- ${SUMMARY[-1]}"
}

# ---------------------------------------------------------------- unit tests
UNIT_NAMES=$(grep -oE "executable\(\s*'unit_[A-Za-z0-9_]+'" "$REPO/tests/unit/meson.build" 2>/dev/null \
             | sed -E "s/.*'(unit_[A-Za-z0-9_]+)'/\1/" | awk '!seen[$0]++')
[[ -n $UNIT_NAMES ]] || UNIT_NAMES="unit_pg_wire unit_routing unit_proxy"

for name in $UNIT_NAMES; do
    bin=$BUILD/tests/unit/$name
    if [[ -x $bin ]]; then
        run_binary "$name" "$bin" "$UNIT_TIMEOUT"
    else
        echo "=== $name"
        SUMMARY+=("$name: FAILED — $bin was not built (counted as 1 failure)")
        FAILED=$((FAILED + 1))
        echo "--- ${SUMMARY[-1]}"
    fi
done

# ------------------------------------------------------------- formatting
echo "=== format"
if bash "$REPO/scripts/check_format.sh"; then
    SUMMARY+=("format: 1 passed, 0 failed (scripts/check_format.sh)")
    PASSED=$((PASSED + 1))
else
    SUMMARY+=("format: 0 passed, 1 failed (scripts/check_format.sh; make format fixes it)")
    FAILED=$((FAILED + 1))
fi
echo "--- ${SUMMARY[-1]}"

# --------------------------------------------------------- end-to-end tests
if [[ $UNIT_ONLY -eq 0 ]]; then
    e2e=$BUILD/tests/integration/integration_e2e
    if [[ ! -x $e2e ]]; then
        SUMMARY+=("integration_e2e: not built ($e2e) — skipped, counted as nothing")
        echo "note: ${SUMMARY[-1]}"
    else
        echo "=== starting a PostgreSQL cluster in $TEST_CLUSTER_DIR"
        CLUSTER_STARTED=1
        if bash "$REPO/tests/pg_cluster.sh" start --dir "$TEST_CLUSTER_DIR" --replicas 2; then
            export PGSWITCH_CLUSTER_ENV=$TEST_CLUSTER_DIR/cluster.env
            export PGSWITCH_BIN=$BUILD/proxy/pgswitch
            # node-postgres for the driver tests (npm registry; a failure here
            # shows up as that test's failure, with this message above it)
            export PGSWITCH_NODE_MODULES=$BUILD/drivers/node/node_modules
            bash "$REPO/tests/drivers/setup.sh" "$BUILD/drivers/node" || echo "run_tests.sh: warning: node-postgres not installed"
            run_binary integration_e2e "$e2e" "$E2E_TIMEOUT"
        else
            SUMMARY+=("integration_e2e: FAILED — tests/pg_cluster.sh start failed (counted as 1 failure)")
            FAILED=$((FAILED + 1))
            echo "--- ${SUMMARY[-1]}"
        fi
        bash "$REPO/tests/pg_cluster.sh" stop --dir "$TEST_CLUSTER_DIR" >/dev/null 2>&1 \
            || echo "run_tests.sh: warning: could not stop the test cluster in $TEST_CLUSTER_DIR"
        CLUSTER_STARTED=0
    fi
fi

# ------------------------------------------------------------------- totals
echo
echo "=== summary"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
FINISHED=1
echo "$PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
