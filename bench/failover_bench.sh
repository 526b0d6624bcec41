#!/usr/bin/env bash
# failover_bench.sh — the closing-note figures of issue 6: time from kill -9 of the
# primary's postmaster to the first successful write through pgswitch, with write
# errors, read errors and acknowledged commits lost, repeated RUNS times per health
# interval; writes bench/results/failover.md.
#
#   bash bench/failover_bench.sh            # RUNS=5, INTERVALS="1000 500" (1000 = the default)
#   RUNS=3 INTERVALS=200 bash bench/failover_bench.sh
#
# Each run is the e2e test "failover: kill -9 of the primary; ..." (tests/integration/
# test_failover.cpp) run alone, with PGSWITCH_FAILOVER_INTERVAL_MS=<interval>: its own
# throwaway cluster (tests/pg_cluster.sh --sync: primary + 2 replicas, synchronous
# replication ANY 1), a writer loop committing sequential ids and a reader loop through
# pgswitch, kill -9, and the test's own assertions (no read error, at most the write in
# flight fails, nothing acknowledged lost). Other health settings are pgswitch's defaults
# (timeout_ms 1000, failure_threshold 3). The test prints one line per run:
#   FAILOVER_RESULT interval_ms=.. resume_ms=.. write_errors=.. read_errors=.. lost=.. acked=.. reads=..
# Needs `make build` first. The test binary wants a shared-cluster env file only for the
# app's login names (this test does not use that cluster): a stub is written for it.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-$REPO/build}
[[ $BUILD = /* ]] || BUILD=$REPO/$BUILD
E2E=$BUILD/tests/integration/integration_e2e
RUNS=${RUNS:-5}
INTERVALS=${INTERVALS:-"1000 500"}
OUT=${OUT:-$REPO/bench/results/failover.md}
[[ -x $E2E ]] || { echo "failover_bench.sh: $E2E not built (make build)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/pgswitch-failover-bench-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
# Ports 1-3 are never contacted by this test (it runs on its own cluster).
cat >"$TMP/stub.env" <<'EOF'
PGHOST=127.0.0.1
PRIMARY_PORT=1
REPLICA1_PORT=2
REPLICA2_PORT=3
EOF

median() { sort -n | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -A ROWS MEDIAN
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for iv in $INTERVALS; do
    : >"$TMP/results.$iv"
    for run in $(seq 1 "$RUNS"); do
        echo "=== interval_ms=$iv run $run/$RUNS"
        set +e
        PGSWITCH_CLUSTER_ENV=$TMP/stub.env PGSWITCH_BIN=$BUILD/proxy/pgswitch PGSWITCH_FAILOVER_INTERVAL_MS=$iv \
            timeout -k 10 300 "$E2E" -tc="failover: kill -9 of the primary*" >"$TMP/run.log" 2>&1
        rc=$?
        set -e
        line=$(grep -E '^FAILOVER_RESULT' "$TMP/run.log" | tail -n1 || true)
        if [[ -z $line ]]; then
            echo "run failed (exit $rc) without a result:"; tail -n 40 "$TMP/run.log"; exit 1
        fi
        verdict=$([[ $rc -eq 0 ]] && echo pass || echo "FAIL (exit $rc)")
        echo "$line  [$verdict]"
        echo "$line $verdict" >>"$TMP/results.$iv"
    done
    MEDIAN[$iv]=$(sed -E 's/.*resume_ms=([0-9.]+).*/\1/' "$TMP/results.$iv" | median)
done

{
    echo "# Failover figures (issue 6 closing note)"
    echo
    echo "Measured $started on $(hostname) ($(nproc) cores, shared), PostgreSQL $(/usr/lib/postgresql/15/bin/postgres --version | awk '{print $3}'),"
    echo "pgswitch $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- proxy routing || echo '+local changes')."
    echo
    echo "Command: \`RUNS=$RUNS INTERVALS=\"$INTERVALS\" bash bench/failover_bench.sh\` — each run is the e2e test"
    echo "\"failover: kill -9 of the primary; ...\" alone on a fresh synchronous cluster (primary + 2 replicas,"
    echo "\`synchronous_standby_names = 'ANY 1 (replica1, replica2)'\`), a writer committing sequential ids and a"
    echo "reader (\`SELECT count(*) FROM pg_class\`) through pgswitch, then \`kill -9\` of the primary's postmaster."
    echo "resume = time from the kill to the first successful write that started after it and ran on another"
    echo "server than the killed one (\`RETURNING inet_server_port()\`): the killed postmaster's orphaned backends"
    echo "can still commit a few writes after the kill (acked_by_old_after_kill below; they are acknowledged"
    echo "commits and count in \"lost\" like any other) — those are not writes resuming."
    echo "Write errors = writes started after the kill that failed: at most the one in flight on the dead"
    echo "primary's connection when its backend exited (SPEC §4: it fails with a connection error); no write"
    echo "waiting for the new primary failed. Read errors = failed reads of the reader loop (whole run)."
    echo "lost = acknowledged ids missing on the new primary. health.timeout_ms = 1000, failure_threshold = 3"
    echo "(defaults); interval 1000 ms is the default."
    echo
    echo "| health.interval_ms | median resume (ms) | runs: resume ms | write errors | read errors | acked lost | test |"
    echo "|---|---|---|---|---|---|---|"
    for iv in $INTERVALS; do
        res=$(sed -E 's/.*resume_ms=([0-9.]+).*/\1/' "$TMP/results.$iv" | paste -sd, | sed 's/,/, /g')
        we=$(sed -E 's/.*write_errors=([0-9]+).*/\1/' "$TMP/results.$iv" | paste -sd, | sed 's/,/, /g')
        re=$(sed -E 's/.*read_errors=([0-9]+).*/\1/' "$TMP/results.$iv" | paste -sd, | sed 's/,/, /g')
        lo=$(sed -E 's/.*lost=(-?[0-9]+).*/\1/' "$TMP/results.$iv" | paste -sd, | sed 's/,/, /g')
        ok=$(grep -c ' pass$' "$TMP/results.$iv" || true)
        echo "| $iv | ${MEDIAN[$iv]} | $res | $we | $re | $lo | $ok/$RUNS passed |"
    done
    echo
    echo "Raw lines:"
    echo
    echo '```'
    for iv in $INTERVALS; do cat "$TMP/results.$iv"; done
    echo '```'
} >"$OUT"
echo "wrote $OUT"
cat "$OUT"
