#!/usr/bin/env bash
# pg_cluster.sh — a throwaway PostgreSQL 15 cluster (one primary, N streaming
# replicas) on loopback, for pgswitch's integration tests and `make run`.
#
#   tests/pg_cluster.sh start  [--dir DIR] [--replicas N] [--sync] [--wal-level LEVEL]
#   tests/pg_cluster.sh stop   [--dir DIR]
#   tests/pg_cluster.sh status [--dir DIR]
#
# DIR defaults to <repo>/.cluster. `start` writes DIR/cluster.env (shell-sourceable:
# ports, users, passwords, data dirs, PIDs); everything else reads that file.
# As root the servers run as the `postgres` user (runuser); as anyone else they run
# as that user. When postgres cannot reach DIR (a clone under /root, or a path too
# long for a unix socket), the data lives in a directory under /tmp instead, and
# DIR/cluster.env says where (CLUSTER_DIR).
#
# Logins created (all on database `app`, and every node since replicas are copies):
#   postgres/postgres (superuser, SCRAM)   app/app (owns db app, CREATEDB, SCRAM)
#   md5user/md5user   (hba md5, secret stored as md5)
#   pwuser/pwuser     (hba password, cleartext)
# pg_hba: local trust; replication from 127.0.0.1 trust; other TCP logins need a password.
set -euo pipefail

PROG=$(basename "$0")
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
START_TIMEOUT=${PG_CLUSTER_START_TIMEOUT:-60}     # seconds, per node start / replica catch-up
SOCKET_PATH_MAX=100                               # sun_path is 108 bytes incl. NUL

die()  { echo "$PROG: error: $*" >&2; exit 1; }
note() { echo "$PROG: $*" >&2; }

usage() {
    cat <<EOF
usage: $PROG start  [--dir DIR] [--replicas N] [--sync] [--wal-level LEVEL]
       $PROG stop   [--dir DIR]
       $PROG status [--dir DIR]
  --dir DIR       where cluster.env (and normally the data) lives; default $REPO/.cluster
  --replicas N    streaming replicas to create (default 2, 0 allowed)
  --sync          synchronous replication: synchronous_standby_names = 'ANY 1 (replica1, ...)'
  --wal-level L   the primary's wal_level: logical (default; the result cache decodes it) or replica
EOF
}

# ---------------------------------------------------------------- arguments
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
CMD=$1; shift
DIR=$REPO/.cluster
REPLICAS=2
SYNC=0
WAL_LEVEL=logical
while [[ $# -gt 0 ]]; do
    case $1 in
        --dir)       [[ $# -ge 2 ]] || die "--dir needs a value"; DIR=$2; shift 2 ;;
        --dir=*)     DIR=${1#--dir=}; shift ;;
        --replicas)  [[ $# -ge 2 ]] || die "--replicas needs a value"; REPLICAS=$2; shift 2 ;;
        --replicas=*) REPLICAS=${1#--replicas=}; shift ;;
        --sync)      SYNC=1; shift ;;
        --wal-level) [[ $# -ge 2 ]] || die "--wal-level needs a value"; WAL_LEVEL=$2; shift 2 ;;
        --wal-level=*) WAL_LEVEL=${1#--wal-level=}; shift ;;
        -h|--help)   usage; exit 0 ;;
        *)           usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $WAL_LEVEL == logical || $WAL_LEVEL == replica ]] || die "--wal-level must be logical or replica, got '$WAL_LEVEL'"
[[ $REPLICAS =~ ^[0-9]+$ ]] || die "--replicas must be a non-negative integer, got '$REPLICAS'"
[[ $SYNC -eq 0 || $REPLICAS -ge 1 ]] || die "--sync needs at least one replica"
case $CMD in start|stop|status) ;; -h|--help|help) usage; exit 0 ;; *) usage >&2; die "unknown command: $CMD" ;; esac

mkdir -p "$DIR" || die "cannot create $DIR"
DIR=$(cd "$DIR" && pwd)
ENV_FILE=$DIR/cluster.env
PIDS_FILE=$DIR/cluster.pids

# ------------------------------------------------------------ who runs postgres
if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user (apt-get install postgresql-15, or run as a normal user)"
    command -v runuser >/dev/null || die "runuser not found (util-linux)"
    AS_PG=(runuser -u postgres --)
    PG_OWNER=postgres
else
    AS_PG=()
    PG_OWNER=$(id -un)
fi
pg() { "${AS_PG[@]}" "$@"; }          # run a command as the server's OS user
give_pg() { if [[ ${#AS_PG[@]} -gt 0 ]]; then chown -R "$PG_OWNER" "$@"; fi; }

# --------------------------------------------------------------------- helpers
port_in_use() {  # is anything listening on 127.0.0.1/any address at this TCP port?
    local p=$1
    if command -v ss >/dev/null; then
        [[ -n $(ss -Hltn "sport = :$p" 2>/dev/null) ]]
    else
        ! python3 - "$p" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.close()
PY
    fi
}

TAKEN_PORTS=" "
PICKED=
pick_port() {  # sets PICKED to a free loopback port not handed out earlier in this run
    # Below 32768: the kernel hands out ports above for client sockets
    # (ip_local_port_range), which could take a server's port meanwhile.
    local p tries=0
    while :; do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 12768 ))
        if [[ $TAKEN_PORTS != *" $p "* ]] && ! port_in_use "$p"; then
            TAKEN_PORTS+="$p "
            PICKED=$p; return 0
        fi
        (( ++tries < 500 )) || die "no free TCP port found in 20000-32767"
    done
}

psql_local() {  # psql_local PORT DB SQL... — superuser over the node's unix socket (trust)
    local port=$1 db=$2; shift 2
    pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_ROOT" -p "$port" -U postgres -d "$db" -At "$@"
}

sock_dir_of() { echo "$CLUSTER_DIR/sock/$1"; }

# start_node NAME: pg_ctl start; on a port clash (another cluster grabbed it since
# pick_port), choose another port and retry.
declare -A NODE_PORT
start_node() {
    local name=$1 data=$CLUSTER_DIR/$1 log=$CLUSTER_DIR/$1.log
    for _ in 1 2 3 4 5; do
        # 9>&-: the postmaster must not inherit (and so hold) our lock on DIR/.lock
        if pg "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t "$START_TIMEOUT" start >/dev/null 2>&1 9>&-; then
            return 0
        fi
        if grep -qE 'could not (bind|create lock file)|Address already in use' "$log" 2>/dev/null \
           && ! pg "$PGBIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
            pick_port; NODE_PORT[$name]=$PICKED
            note "$name: port clash, retrying on port ${NODE_PORT[$name]}"
            printf "port = %s\n" "${NODE_PORT[$name]}" | pg tee -a "$data/postgresql.conf" >/dev/null
            continue
        fi
        break
    done
    echo "---- last lines of $log ----" >&2
    tail -n 30 "$log" >&2 || true
    die "$name did not start (data $data, log $log)"
}

postmaster_pid() {  # first line of postmaster.pid, if any
    local f=$1/postmaster.pid
    [[ -r $f ]] && head -n1 "$f" 2>/dev/null || true
}

alive() {  # process exists and is not a zombie waiting for init to reap it
    local st
    st=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $st && $st != Z ]]
}

wait_gone() {  # wait_gone PID TENTHS
    local i
    for ((i = 0; i < $2; i++)); do alive "$1" || return 0; sleep 0.1; done
    ! alive "$1"
}

# stop_node DATADIR: fast shutdown via pg_ctl; if that fails, signal the postmaster
# recorded in DATADIR/postmaster.pid (SIGINT = fast, SIGQUIT = immediate, SIGKILL).
stop_node() {
    local data=$1 pid sig
    [[ -d $data ]] || return 0
    pid=$(postmaster_pid "$data")
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 0
    pg "$PGBIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    wait_gone "$pid" 50 && return 0
    for sig in INT QUIT KILL; do
        # only while it is still this data dir's postmaster
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$data" || break
        note "$(basename "$data"): pg_ctl stop did not finish, sending SIG$sig to $pid"
        kill -s "$sig" "$pid" 2>/dev/null || true
        wait_gone "$pid" 100 && return 0
    done
    alive "$pid" && die "postmaster $pid for $data is still running"
    return 0
}

# Read what a previous `start` recorded (CLUSTER_DIR etc.), without failing on absence.
load_env() {
    CLUSTER_DIR=
    if [[ -r $ENV_FILE ]]; then
        # shellcheck disable=SC1090
        source "$ENV_FILE"
    elif [[ -r $DIR/cluster.datadir ]]; then
        CLUSTER_DIR=$(cat "$DIR/cluster.datadir")
    fi
    [[ -n ${CLUSTER_DIR:-} ]] || CLUSTER_DIR=$DIR
}

node_dirs() {  # data dirs of this cluster that exist, primary first
    local d
    [[ -d $CLUSTER_DIR/primary ]] && echo "$CLUSTER_DIR/primary"
    for d in "$CLUSTER_DIR"/replica*; do
        if [[ -d $d && $(basename "$d") =~ ^replica[0-9]+$ ]]; then echo "$d"; fi
    done
    return 0
}

# ------------------------------------------------------------------------ stop
do_stop() {
    load_env
    local d stopped=0
    # replicas first, so the primary's walsenders don't wait on them
    for d in $(node_dirs | sort -r); do
        stop_node "$d"
        stopped=$((stopped + 1))
    done
    # wipe data, sockets, env; logs stay next to cluster.env for post-mortems
    for d in $(node_dirs); do rm -rf "$d"; done
    rm -rf "$CLUSTER_DIR/sock"
    if [[ $CLUSTER_DIR != "$DIR" && -d $CLUSTER_DIR ]]; then
        mkdir -p "$DIR/logs"
        cp -f "$CLUSTER_DIR"/*.log "$DIR/logs/" 2>/dev/null || true
        rm -rf "$CLUSTER_DIR"
    fi
    rm -f "$ENV_FILE" "$PIDS_FILE" "$DIR/cluster.datadir"
    [[ $stopped -gt 0 ]] && note "stopped and removed cluster in $CLUSTER_DIR" || true
}

# ---------------------------------------------------------------------- status
do_status() {
    if [[ ! -r $ENV_FILE ]]; then
        echo "no cluster in $DIR (no cluster.env)"
        return 3
    fi
    load_env
    local rc=0 name port out
    echo "cluster $CLUSTER_DIR (env $ENV_FILE)"
    for name in primary $(for i in $(seq 1 "${REPLICA_COUNT:-0}"); do echo "replica$i"; done); do
        if [[ $name == primary ]]; then port=$PRIMARY_PORT; else port=$(eval echo "\${${name^^}_PORT}"); fi
        if out=$("$PGBIN/pg_isready" -h 127.0.0.1 -p "$port" -t 3 2>&1); then
            local role=""
            role=$(PGPASSWORD=$SUPERPASS "$PGBIN/psql" -X -At -h 127.0.0.1 -p "$port" -U "$SUPERUSER" -d postgres \
                   -c "select case when pg_is_in_recovery() then 'replica' else 'primary' end" 2>/dev/null || echo "?")
            printf "%-10s port %-5s pid %-8s up (%s)\n" "$name" "$port" "$(postmaster_pid "$CLUSTER_DIR/$name")" "$role"
        else
            printf "%-10s port %-5s down (%s)\n" "$name" "$port" "${out##*- }"
            rc=1
        fi
    done
    return $rc
}

# ----------------------------------------------------------------------- start
do_start() {
    [[ -x $PGBIN/initdb && -x $PGBIN/pg_ctl && -x $PGBIN/pg_basebackup ]] \
        || die "PostgreSQL server binaries not found in $PGBIN (apt-get install postgresql-15, or set PGBIN)"

    # A stale cluster (crashed test, Ctrl-C) in DIR is stopped and wiped first.
    if [[ -e $ENV_FILE || -e $DIR/cluster.datadir || -d $DIR/primary ]]; then
        note "stopping stale cluster in $DIR"
        do_stop
    fi

    # Where the data goes: DIR itself, unless the server user can't use it.
    CLUSTER_DIR=$DIR
    local probe="$DIR/sock/replica$REPLICAS/.s.PGSQL.65535.lock"
    if [[ ${#AS_PG[@]} -gt 0 ]]; then
        chown "$PG_OWNER" "$DIR" 2>/dev/null || true
        if ! pg test -w "$DIR" -a -x "$DIR" 2>/dev/null; then
            CLUSTER_DIR=
            note "user postgres cannot write $DIR (a parent is not traversable); using a directory under /tmp"
        fi
    fi
    if [[ -n $CLUSTER_DIR && ${#probe} -gt $SOCKET_PATH_MAX ]]; then
        CLUSTER_DIR=
        note "$DIR is too long for unix socket paths; using a directory under /tmp"
    fi
    if [[ -z $CLUSTER_DIR ]]; then
        CLUSTER_DIR=$(mktemp -d /tmp/pgswitch-cluster.XXXXXX)
        chmod 755 "$CLUSTER_DIR"
        give_pg "$CLUSTER_DIR"
        echo "$CLUSTER_DIR" >"$DIR/cluster.datadir"    # so `stop` finds it even if start dies
    fi
    # a directory that is never committed, whatever its name (.cluster-test, ...)
    [[ -e $DIR/.gitignore ]] || echo '*' >"$DIR/.gitignore"
    SOCK_ROOT=$(sock_dir_of primary)
    mkdir -p "$SOCK_ROOT"
    give_pg "$CLUSTER_DIR/sock"
    rm -f "$CLUSTER_DIR"/*.log

    # If anything below fails, don't leave half a cluster running.
    trap 'rc=$?; if [[ $rc -ne 0 ]]; then note "start failed; cleaning up"; do_stop || true; fi' EXIT
    trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP

    # ---- primary
    local P=$CLUSTER_DIR/primary i name
    pick_port; NODE_PORT[primary]=$PICKED
    pg "$PGBIN/initdb" -D "$P" -A trust --nosync -U postgres -E UTF8 --locale=C.UTF-8 >"$CLUSTER_DIR/initdb.log" 2>&1 \
        || { cat "$CLUSTER_DIR/initdb.log" >&2; die "initdb failed"; }

    local sync_names=""
    if [[ $SYNC -eq 1 ]]; then
        sync_names=$(for i in $(seq 1 "$REPLICAS"); do printf "replica%s, " "$i"; done)
        sync_names="ANY 1 (${sync_names%, })"
    fi
    pg tee -a "$P/postgresql.conf" >/dev/null <<EOF

# ---- pg_cluster.sh (pgswitch tests) ----
listen_addresses = '127.0.0.1'
port = ${NODE_PORT[primary]}
unix_socket_directories = '$SOCK_ROOT'
max_connections = 200
fsync = off
synchronous_commit = on
wal_level = $WAL_LEVEL
max_wal_senders = 10
max_replication_slots = 10
wal_keep_size = 256MB
wal_log_hints = on
hot_standby = on
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%m [%p] %q%u@%d/%a '
log_min_messages = warning
EOF
    pg tee "$P/pg_hba.conf" >/dev/null <<'EOF'
# pg_cluster.sh (pgswitch tests)
# TYPE  DATABASE     USER     ADDRESS        METHOD
local   all          all                     trust
local   replication  all                     trust
host    replication  all      127.0.0.1/32   trust
host    all          md5user  127.0.0.1/32   md5
host    all          pwuser   127.0.0.1/32   password
host    all          all      127.0.0.1/32   scram-sha-256
EOF
    start_node primary

    psql_local "${NODE_PORT[primary]}" postgres >/dev/null <<'EOF'
ALTER ROLE postgres PASSWORD 'postgres';
CREATE ROLE app LOGIN CREATEDB PASSWORD 'app';
CREATE DATABASE app OWNER app;
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5user';
RESET password_encryption;
CREATE ROLE pwuser LOGIN PASSWORD 'pwuser';
GRANT CONNECT ON DATABASE app TO md5user, pwuser;
EOF

    # ---- replicas
    for i in $(seq 1 "$REPLICAS"); do
        name=replica$i
        local R=$CLUSTER_DIR/$name S
        S=$(sock_dir_of "$name")
        mkdir -p "$S"; give_pg "$S"
        pick_port; NODE_PORT[$name]=$PICKED
        pg "$PGBIN/pg_basebackup" -D "$R" -R -X stream -c fast --no-sync \
            -d "host=127.0.0.1 port=${NODE_PORT[primary]} user=postgres application_name=$name" \
            >"$CLUSTER_DIR/$name.basebackup.log" 2>&1 \
            || { cat "$CLUSTER_DIR/$name.basebackup.log" >&2; die "pg_basebackup for $name failed"; }
        # -R writes primary_conninfo from the connection; make sure application_name is in it
        if ! grep -q "application_name=$name" "$R/postgresql.auto.conf"; then
            local ci
            ci=$(grep -E "^primary_conninfo" "$R/postgresql.auto.conf" | tail -n1 | sed -E "s/^primary_conninfo = '(.*)'$/\1/")
            printf "primary_conninfo = '%s application_name=%s'\n" "$ci" "$name" | pg tee -a "$R/postgresql.auto.conf" >/dev/null
        fi
        printf "\n# ---- pg_cluster.sh: %s ----\nport = %s\nunix_socket_directories = '%s'\n" \
            "$name" "${NODE_PORT[$name]}" "$S" | pg tee -a "$R/postgresql.conf" >/dev/null
        start_node "$name"
    done

    # ---- wait until every replica streams from the primary (deadline, not a sleep)
    if [[ $REPLICAS -gt 0 ]]; then
        local deadline=$((SECONDS + START_TIMEOUT)) n=0
        while :; do
            n=$(psql_local "${NODE_PORT[primary]}" postgres -c \
                "select count(*) from pg_stat_replication where state = 'streaming' and application_name ~ '^replica[0-9]+\$'")
            [[ $n -ge $REPLICAS ]] && break
            [[ $SECONDS -lt $deadline ]] || {
                psql_local "${NODE_PORT[primary]}" postgres -c "select application_name, state, sync_state from pg_stat_replication" >&2 || true
                die "only $n of $REPLICAS replicas streaming after ${START_TIMEOUT}s"
            }
            sleep 0.2
        done
    fi

    # ---- synchronous replication: only now that the standbys stream (earlier, every
    # commit above would have waited for them), and only on the primary (a promoted
    # replica with no standby left would otherwise block every commit).
    if [[ $SYNC -eq 1 ]]; then
        printf "synchronous_standby_names = '%s'\n" "$sync_names" | pg tee -a "$P/postgresql.conf" >/dev/null
        psql_local "${NODE_PORT[primary]}" postgres -c "select pg_reload_conf()" >/dev/null
        local deadline=$((SECONDS + START_TIMEOUT))
        until [[ $(psql_local "${NODE_PORT[primary]}" postgres -c "select count(*) from pg_stat_replication where sync_state in ('sync','quorum')") -ge 1 ]]; do
            [[ $SECONDS -lt $deadline ]] || die "no synchronous standby after ${START_TIMEOUT}s"
            sleep 0.1
        done
    fi

    # ---- cluster.env + pids
    local ports="" tmp
    for i in $(seq 1 "$REPLICAS"); do ports+="${NODE_PORT[replica$i]} "; done
    : >"$PIDS_FILE"
    for name in primary $(for i in $(seq 1 "$REPLICAS"); do echo "replica$i"; done); do
        echo "$name $(postmaster_pid "$CLUSTER_DIR/$name") ${NODE_PORT[$name]} $CLUSTER_DIR/$name" >>"$PIDS_FILE"
    done
    tmp=$ENV_FILE.tmp
    {
        echo "# written by tests/pg_cluster.sh start; source it: . $ENV_FILE"
        kv() { printf "%s=%q\n" "$1" "$2"; }
        kv CLUSTER_DIR "$CLUSTER_DIR"          # where data, sockets and logs live
        kv CLUSTER_ENV_DIR "$DIR"              # where this file lives
        kv PGBIN "$PGBIN"
        kv PG_RUNAS "${AS_PG[*]}"              # prefix for pg_ctl & co ("" when not root)
        kv PGHOST 127.0.0.1
        kv SUPERUSER postgres
        kv SUPERPASS postgres
        kv APP_USER app
        kv APP_PASSWORD app
        kv APP_DB app
        kv MD5_USER md5user
        kv MD5_PASSWORD md5user
        kv PW_USER pwuser
        kv PW_PASSWORD pwuser
        kv SYNC "$SYNC"
        kv REPLICA_COUNT "$REPLICAS"
        kv PRIMARY_PORT "${NODE_PORT[primary]}"
        kv PRIMARY_DATA "$CLUSTER_DIR/primary"
        kv PRIMARY_SOCKET_DIR "$(sock_dir_of primary)"
        kv PRIMARY_LOG "$CLUSTER_DIR/primary.log"
        kv PRIMARY_PID "$(postmaster_pid "$CLUSTER_DIR/primary")"
        kv REPLICA_PORTS "${ports% }"
        for i in $(seq 1 "$REPLICAS"); do
            kv "REPLICA${i}_PORT" "${NODE_PORT[replica$i]}"
            kv "REPLICA${i}_DATA" "$CLUSTER_DIR/replica$i"
            kv "REPLICA${i}_SOCKET_DIR" "$(sock_dir_of "replica$i")"
            kv "REPLICA${i}_LOG" "$CLUSTER_DIR/replica$i.log"
            kv "REPLICA${i}_PID" "$(postmaster_pid "$CLUSTER_DIR/replica$i")"
        done
        kv PIDS_FILE "$PIDS_FILE"              # lines: name pid port datadir
    } >"$tmp"
    mv -f "$tmp" "$ENV_FILE"
    rm -f "$DIR/cluster.datadir"
    trap - EXIT INT TERM HUP

    echo "cluster up: primary 127.0.0.1:${NODE_PORT[primary]}${ports:+, replicas ${ports% }}$([[ $SYNC -eq 1 ]] && echo ' (synchronous)')"
    echo "env: $ENV_FILE"
}

# Serialize start/stop on the same DIR (status needs no lock).
if [[ $CMD != status ]]; then
    exec 9>"$DIR/.lock"
    flock -w 300 9 || die "another pg_cluster.sh has held $DIR/.lock for 300s"
fi

case $CMD in
    start)  do_start ;;
    stop)   do_stop ;;
    status) do_status ;;
esac
