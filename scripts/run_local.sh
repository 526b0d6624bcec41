#!/usr/bin/env bash
# run_local.sh — try pgswitch on this machine: starts a throwaway PostgreSQL 15 cluster
# (primary + 2 streaming replicas, tests/pg_cluster.sh, in .cluster/), writes
# .run/pgswitch.toml pointing at it, and runs build/proxy/pgswitch in the foreground.
# Ctrl-C (or SIGTERM) stops pgswitch, then the cluster. `make run` builds first and calls this.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD_DIR:-build}
[[ $BUILD = /* ]] || BUILD=$REPO/$BUILD
BIN=${PGSWITCH_BIN:-$BUILD/proxy/pgswitch}
LISTEN_PORT=6432
ADMIN_PORT=6480
CLUSTER_DIR=$REPO/.cluster
RUN_DIR=$REPO/.run
CONF=$RUN_DIR/pgswitch.toml

die() { echo "run_local.sh: error: $*" >&2; exit 1; }

[[ -x $BIN ]] || die "$BIN not found — build it first: make build"

port_taken() {
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
for p in $LISTEN_PORT $ADMIN_PORT; do
    if port_taken "$p"; then
        echo "run_local.sh: port $p on this machine is already in use:" >&2
        ss -Hltnp "sport = :$p" >&2 2>/dev/null || true
        die "pgswitch needs 127.0.0.1:$LISTEN_PORT (SQL) and 127.0.0.1:$ADMIN_PORT (admin); stop whatever holds port $p and retry"
    fi
done

PROXY_PID=
CLEANED=0
cleanup() {
    [[ $CLEANED -eq 1 ]] && return 0
    CLEANED=1
    trap '' INT TERM HUP
    if [[ -n $PROXY_PID ]] && kill -0 "$PROXY_PID" 2>/dev/null; then
        echo
        echo "run_local.sh: stopping pgswitch (pid $PROXY_PID)"
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        # pgswitch lets open transactions finish (shutdown_timeout_ms, 10 s by default)
        for _ in $(seq 1 150); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$PROXY_PID" 2>/dev/null; then
            echo "run_local.sh: pgswitch still running after 15 s, killing it"
            kill -KILL "$PROXY_PID" 2>/dev/null || true
        fi
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    echo "run_local.sh: stopping the PostgreSQL cluster"
    bash "$REPO/tests/pg_cluster.sh" stop --dir "$CLUSTER_DIR" || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

echo "run_local.sh: starting PostgreSQL (primary + 2 replicas) in $CLUSTER_DIR"
bash "$REPO/tests/pg_cluster.sh" start --dir "$CLUSTER_DIR" --replicas 2
# shellcheck disable=SC1091
source "$CLUSTER_DIR/cluster.env"

mkdir -p "$RUN_DIR"
cat >"$CONF" <<TOML
# written by scripts/run_local.sh for the cluster in $CLUSTER_DIR
[proxy]
listen = "127.0.0.1:$LISTEN_PORT"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[health]
user = "$SUPERUSER"
password = "$SUPERPASS"

[[backends]]
name = "primary"
host = "127.0.0.1"
port = $PRIMARY_PORT

[[backends]]
name = "replica1"
host = "127.0.0.1"
port = $REPLICA1_PORT

[[backends]]
name = "replica2"
host = "127.0.0.1"
port = $REPLICA2_PORT

[[users]]
name = "$APP_USER"
password = "$APP_PASSWORD"

[[users]]
name = "$SUPERUSER"
password = "$SUPERPASS"
TOML

cat <<MSG

  PostgreSQL: primary 127.0.0.1:$PRIMARY_PORT, replicas 127.0.0.1:$REPLICA1_PORT and 127.0.0.1:$REPLICA2_PORT
  config:     $CONF

  Connect through pgswitch (in another terminal):
      psql "postgresql://app:app@127.0.0.1:$LISTEN_PORT/app"

  See which server answered a statement:
      SELECT inet_server_port();
  ($PRIMARY_PORT is the primary; $REPLICA1_PORT and $REPLICA2_PORT are the replicas)

  Admin API: http://127.0.0.1:$ADMIN_PORT/health
  Ctrl-C stops pgswitch and the PostgreSQL cluster.

MSG

# In the background, so that this shell sees Ctrl-C/SIGTERM at once and shuts down in order.
"$BIN" -c "$CONF" &
PROXY_PID=$!
set +e
wait "$PROXY_PID"
rc=$?
set -e
PROXY_PID=
echo "run_local.sh: pgswitch exited with status $rc"
exit "$rc"
