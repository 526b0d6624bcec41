#!/usr/bin/env bash
# replica-entrypoint.sh — entrypoint of the replica services (official postgres:15 image).
# Waits for the primary, clones it with pg_basebackup -R when $PGDATA is empty (first start),
# then runs postgres as a hot standby streaming from the primary. Later starts reuse the data.
# Environment (defaults match docker/primary-init.sh and docker-compose.yml):
#   PRIMARY_HOST (primary)  PRIMARY_PORT (5432)  REPLICA_NAME (hostname; the
#   application_name in pg_stat_replication)  REPLICATION_USER / REPLICATION_PASSWORD
#   (replicator/replicator)  PGDATA (set by the image)
set -euo pipefail

: "${PRIMARY_HOST:=primary}" "${PRIMARY_PORT:=5432}"
: "${REPLICATION_USER:=replicator}" "${REPLICATION_PASSWORD:=replicator}"
: "${REPLICA_NAME:=$(hostname)}"
: "${PGDATA:=/var/lib/postgresql/data}"

log() { echo "replica-entrypoint ($REPLICA_NAME): $*" >&2; }

# Run as postgres: from root (the image's default user) through gosu, which the image ships.
as_postgres() {
    if [[ $(id -u) -eq 0 ]]; then gosu postgres "$@"; else "$@"; fi
}

log "waiting for the primary at $PRIMARY_HOST:$PRIMARY_PORT"
until pg_isready -q -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$REPLICATION_USER" -d postgres; do
    sleep 1
done

if [[ $(id -u) -eq 0 ]]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
fi
chmod 0700 "$PGDATA"

if [[ -z $(ls -A "$PGDATA") ]]; then
    log "empty $PGDATA: cloning the primary with pg_basebackup"
    conninfo="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER password=$REPLICATION_PASSWORD application_name=$REPLICA_NAME"
    # The primary may still be finishing its first start (init scripts run before it
    # listens on TCP, but retry anyway in case it restarts).
    for attempt in $(seq 1 30); do
        if as_postgres pg_basebackup -D "$PGDATA" -R -X stream -c fast -d "$conninfo"; then
            break
        fi
        [[ $attempt -eq 30 ]] && { log "pg_basebackup failed 30 times, giving up"; exit 1; }
        log "pg_basebackup failed (attempt $attempt), retrying in 2 s"
        as_postgres find "$PGDATA" -mindepth 1 -delete
        sleep 2
    done
    # -R wrote standby.signal and a primary_conninfo; restate it so that it surely carries
    # the password and this replica's application_name (the last setting wins).
    printf "primary_conninfo = '%s'\n" "$conninfo" | as_postgres tee -a "$PGDATA/postgresql.auto.conf" >/dev/null
    chmod 0700 "$PGDATA"
    log "base backup done"
else
    log "$PGDATA is not empty: starting the existing standby"
fi

if [[ $# -eq 0 || ${1:0:1} == - ]]; then
    set -- postgres "$@"
fi
if [[ $(id -u) -eq 0 ]]; then
    exec gosu postgres "$@"
fi
exec "$@"
