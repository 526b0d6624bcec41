#!/usr/bin/env bash
# callgrind.sh — deterministic cost of pgswitch per statement (`make bench-callgrind`).
#
# Starts a throwaway primary (tests/pg_cluster.sh, no replicas, so every statement takes the
# same path), `pgbench -i -s 1` on it, then pgswitch (session mode, workers = 1, health checks
# once an hour so that no timer work lands in the measured window) under
#   valgrind --tool=callgrind
# and drives fixed scripts through it. Each workload runs twice on one pgswitch process, with
# N and 2N statements on one client connection; callgrind_control zeroes the counters before
# and dumps them after each run, so
#   instructions per statement = (Ir(2N run) - Ir(N run)) / N
# in which login, connection set-up and teardown cancel out. Workloads:
#   simple       psql -f: N lines `SELECT abalance FROM pgbench_accounts WHERE aid = K;`, every K new
#   simple_same  the same with one K throughout (one statement text)
#   extended     pgbench -n -S -M extended -t N -c 1 --random-seed=1
#   prepared     pgbench -n -S -M prepared -t N -c 1 --random-seed=1
# Writes bench/results/callgrind.md (figures, command, commit, date, and per workload the top
# functions by inclusive and exclusive instructions per statement, from the same N / 2N
# difference: bench/callgrind_top.py) and appends one JSON line to
# bench/results/callgrind.jsonl. The cluster and pgswitch are started and stopped by PID.
#
# Environment: CALLGRIND_N (statements in the short run; default 2000),
#              CALLGRIND_WORKLOADS (comma list; default simple,simple_same,extended,prepared),
#              PGSWITCH_BIN (default $BUILD_DIR/proxy/pgswitch), KEEP_TMP=1 keeps the work dir.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
BUILD_DIR=${BUILD_DIR:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$REPO/$BUILD_DIR
PGSWITCH_BIN=${PGSWITCH_BIN:-$BUILD_DIR/proxy/pgswitch}
N=${CALLGRIND_N:-2000}
WORKLOADS=${CALLGRIND_WORKLOADS:-simple,simple_same,extended,prepared}
RESULTS=$REPO/bench/results
OUT_MD=$RESULTS/callgrind.md
OUT_JSON=$RESULTS/callgrind.jsonl

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in valgrind callgrind_control callgrind_annotate; do
    command -v $t >/dev/null || die "$t not found (Debian package valgrind)"
done
[[ -x $PGSWITCH_BIN ]] || die "$PGSWITCH_BIN not found — make build"
[[ -x $PGBIN/pgbench ]] || die "$PGBIN/pgbench not found (postgresql-15)"

WORK=$(mktemp -d /tmp/pgswitch-callgrind.XXXXXX)
chmod 755 "$WORK"
CLUSTER_DIR=$WORK/cluster
CLUSTER_STARTED=0
VG_PID=

cleanup() {
    local rc=$?
    if [[ -n $VG_PID ]] && kill -0 "$VG_PID" 2>/dev/null; then
        kill -TERM "$VG_PID" 2>/dev/null || true
        # valgrind writes its final dump on exit; give it a bounded time, polled
        for _ in $(seq 1 300); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$VG_PID" 2>/dev/null || true
    fi
    if [[ $CLUSTER_STARTED = 1 ]]; then
        bash "$REPO/tests/pg_cluster.sh" stop --dir "$CLUSTER_DIR" >/dev/null 2>&1 || true
    fi
    if [[ -n ${KEEP_TMP:-} ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# poll CMD until it succeeds or SECONDS pass
wait_until() {
    local what=$1 secs=$2; shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        [[ -n $VG_PID ]] && ! kill -0 "$VG_PID" 2>/dev/null && die "pgswitch (valgrind) exited; see $WORK/pgswitch.log"
        (( $(date +%s) < deadline )) || die "timed out after ${secs}s waiting for $what"
        sleep 0.2
    done
}

log "starting PostgreSQL (primary only) in $CLUSTER_DIR"
CLUSTER_STARTED=1
bash "$REPO/tests/pg_cluster.sh" start --dir "$CLUSTER_DIR" --replicas 0 >"$WORK/cluster.log" 2>&1 \
    || { cat "$WORK/cluster.log" >&2; die "cluster start failed"; }
# shellcheck disable=SC1091
source "$CLUSTER_DIR/cluster.env"
export PGPASSWORD=$APP_PASSWORD PGCONNECT_TIMEOUT=60
unset PGHOST PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS
"$PGBIN/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$PRIMARY_PORT" -U "$APP_USER" "$APP_DB" >"$WORK/pgbench-init.log" 2>&1 \
    || { cat "$WORK/pgbench-init.log" >&2; die "pgbench -i failed"; }

PORT=$(free_port); ADMIN=$(free_port)
cat >"$WORK/pgswitch.toml" <<EOF
# written by bench/callgrind.sh
[proxy]
listen = "127.0.0.1:$PORT"
pool_mode = "session"
workers = 1

[admin]
listen = "127.0.0.1:$ADMIN"

[health]
interval_ms = 3600000
user = "$SUPERUSER"
password = "$SUPERPASS"

[[backends]]
name = "primary"
host = "127.0.0.1"
port = $PRIMARY_PORT

[[users]]
name = "$APP_USER"
password = "$APP_PASSWORD"
EOF

VG_CMD=(valgrind --tool=callgrind --dump-instr=no --compress-strings=no
        "--callgrind-out-file=$WORK/callgrind.out.%p" "$PGSWITCH_BIN" -c "$WORK/pgswitch.toml")
log "pgswitch under callgrind: ${VG_CMD[*]}"
PGSWITCH_LOG=warning setsid "${VG_CMD[@]}" </dev/null >"$WORK/pgswitch.log" 2>&1 &
VG_PID=$!

psql_app() { "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U "$APP_USER" -d "$APP_DB" "$@"; }
health_up() { [[ $(/usr/bin/python3 -c "import json,urllib.request; d=json.load(urllib.request.urlopen('http://127.0.0.1:$ADMIN/backends', timeout=5)); b=d.get('backends', d) if isinstance(d, dict) else d; print(all(x.get('state')=='up' for x in b))") == True ]]; }
wait_until "pgswitch's admin API (under valgrind)" 180 health_up
wait_until "a query through pgswitch" 120 psql_app -c "select 1"

# The scripts: fixed content. `simple` uses a literal never sent before in this pgswitch
# process (K = 10000 + a counter across all runs, always five digits), so every statement
# costs what a new statement text costs — a cache keyed by the text misses, one that ignores
# literals hits; `simple_same` repeats one statement text (the cache-hit path in any case).
K_NEXT=10000
gen_simple() {  # $1 = statements, $2 = file; K from K_NEXT on
    awk -v n="$1" -v k="$K_NEXT" 'BEGIN { for (i = 0; i < n; i++) printf "SELECT abalance FROM pgbench_accounts WHERE aid = %d;\n", k + i }' >"$2"
    K_NEXT=$((K_NEXT + $1))
}
gen_same() {  # $1 = statements, $2 = file
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) print "SELECT abalance FROM pgbench_accounts WHERE aid = 4242;" }' >"$2"
}
PGBENCH=("$PGBIN/pgbench" -n -S -c 1 --random-seed=1 -h 127.0.0.1 -p "$PORT" -U "$APP_USER")

run_workload() {  # $1 workload, $2 statements
    local f=$WORK/script.sql
    case $1 in
        simple)      gen_simple "$2" "$f"; psql_app -f "$f" >/dev/null ;;
        simple_same) gen_same "$2" "$f"; psql_app -f "$f" >/dev/null ;;
        extended)    "${PGBENCH[@]}" -M extended -t "$2" "$APP_DB" >/dev/null 2>&1 ;;
        prepared)    "${PGBENCH[@]}" -M prepared -t "$2" "$APP_DB" >/dev/null 2>&1 ;;
        *) die "unknown workload $1" ;;
    esac
}

# zero the counters, run, dump; prints the dump file's name. pgswitch sits in epoll_wait
# between runs, so the counters hold the run and (nearly) nothing else.
measure() {  # $1 workload, $2 statements, $3 label
    callgrind_control -z "$VG_PID" >/dev/null 2>&1
    run_workload "$1" "$2" || die "$1 run with $2 statements failed"
    callgrind_control -d "$3" "$VG_PID" >/dev/null 2>&1
    # the dump whose trigger names this run (callgrind numbers its parts itself)
    local f=
    find_dump() { f=$(grep -l -x "desc: Trigger: dump $1" "$WORK"/callgrind.out.*.* 2>/dev/null | head -n 1); [[ -n $f ]]; }
    wait_until "callgrind dump '$3'" 60 find_dump "$3"
    find_dump "$3"
    # a dump is complete once its totals line is written
    wait_until "callgrind dump $f to complete" 60 grep -q '^totals:' "$f"
    echo "$f"
}
# summary: what callgrind_annotate calls PROGRAM TOTALS (the totals: line can carry costs
# from before the last zeroing)
ir_of() { awk '/^summary:/ {print $2; exit}' "$1"; }

# warm-up: the statement cache, the pool and the allocator reach their steady state
for w in ${WORKLOADS//,/ }; do run_workload "$w" 200 || die "warm-up $w failed"; done

declare -A IR_N IR_2N PER_STMT DUMP_N DUMP_2N
for w in ${WORKLOADS//,/ }; do
    log "$w: $N and $((2 * N)) statements"
    f1=$(measure "$w" "$N" "$w-N")
    f2=$(measure "$w" $((2 * N)) "$w-2N")
    IR_N[$w]=$(ir_of "$f1"); IR_2N[$w]=$(ir_of "$f2"); DUMP_N[$w]=$f1; DUMP_2N[$w]=$f2
    PER_STMT[$w]=$(( (IR_2N[$w] - IR_N[$w]) / N ))
    log "$w: Ir ${IR_N[$w]} (N) / ${IR_2N[$w]} (2N) -> ${PER_STMT[$w]} instructions per statement"
done

GIT=$(git -C "$REPO" rev-parse --short HEAD)
[[ -z $(git -C "$REPO" status --porcelain --untracked-files=no) ]] || GIT="$GIT+dirty"
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
VG_VER=$(valgrind --version)
BUILDTYPE=$(/usr/bin/python3 -c "import json; print(next(o['value'] for o in json.load(open('$BUILD_DIR/meson-info/intro-buildoptions.json')) if o['name']=='buildtype'))" 2>/dev/null || echo unknown)

mkdir -p "$RESULTS"
annotate() {  # $1 N dump, $2 2N dump, $3 inclusive|exclusive
    /usr/bin/python3 "$REPO/bench/callgrind_top.py" "$1" "$2" "$N" "$3" 10 || true
}
first=${WORKLOADS%%,*}
{
    echo "# pgswitch — instructions per statement under callgrind"
    echo
    echo "$DATE, git $GIT ($BUILDTYPE build of $PGSWITCH_BIN), $VG_VER, N = $N."
    echo
    echo "| workload | Ir, N statements | Ir, 2N statements | **instructions per statement** = (Ir(2N) − Ir(N)) / N |"
    echo "|---|---:|---:|---:|"
    for w in ${WORKLOADS//,/ }; do
        echo "| $w | ${IR_N[$w]} | ${IR_2N[$w]} | **${PER_STMT[$w]}** |"
    done
    echo
    echo "Reproduce: \`make bench-callgrind\` (bench/callgrind.sh; CALLGRIND_N=$N). pgswitch runs as"
    echo "\`${VG_CMD[*]//$WORK/\$WORK}\`"
    echo "(session mode, workers = 1, one primary, health checks hourly). Each workload runs with N and 2N"
    echo "statements on one connection; callgrind_control zeroes the counters before and dumps them after"
    echo "each run, so the difference cancels login and connection set-up. simple = psql -f with"
    echo "\`SELECT abalance FROM pgbench_accounts WHERE aid = K;\` lines, K never sent before (a new"
    echo "statement text each time); simple_same = one K throughout; extended / prepared ="
    echo "\`pgbench -n -S -M extended|prepared -c 1 -t N --random-seed=1\`. Counts include everything pgswitch executes"
    echo "(kernel time excluded): relay, parsing, classification, routing, allocation, syscall wrappers."
    echo "Repeat runs on the same binary have differed by up to ±1.5 % (how many reads and epoll"
    echo "wake-ups a reply takes depends on timing), so only a change beyond ~3 % is a signal."
    echo
    echo "Where the instructions go, per statement: for each function, (its Ir in the 2N run − in the"
    echo "N run) / N, from callgrind_annotate (bench/callgrind_top.py). Inclusive = with callees (main()"
    echo "and the event loop, ~100 %, left out); exclusive = the function's own instructions."
    echo
    for w in ${WORKLOADS//,/ }; do
        echo "## $w: top 10 functions, instructions per statement"
        echo
        echo "Inclusive:"
        echo
        echo '```'
        annotate "${DUMP_N[$w]}" "${DUMP_2N[$w]}" inclusive
        echo '```'
        echo
        echo "Exclusive (self):"
        echo
        echo '```'
        annotate "${DUMP_N[$w]}" "${DUMP_2N[$w]}" exclusive
        echo '```'
        echo
    done
} >"$OUT_MD"

json="{\"date_utc\": \"$DATE\", \"git\": \"$GIT\", \"binary\": \"$PGSWITCH_BIN\", \"buildtype\": \"$BUILDTYPE\", \"valgrind\": \"$VG_VER\", \"n\": $N"
for w in ${WORKLOADS//,/ }; do
    json+=", \"${w}_ir_per_stmt\": ${PER_STMT[$w]}, \"${w}_ir_n\": ${IR_N[$w]}, \"${w}_ir_2n\": ${IR_2N[$w]}"
done
json+="}"
echo "$json" >>"$OUT_JSON"
cat "$OUT_MD"
log "wrote $OUT_MD and a line in $OUT_JSON"
