#!/usr/bin/env bash
# primary-init.sh — run once by the official postgres image's entrypoint
# (/docker-entrypoint-initdb.d/) when the primary's data directory is created.
# Makes the node a streaming-replication primary and creates the demo users:
#   postgres/postgres  superuser (POSTGRES_PASSWORD; pgswitch's health user)
#   app/app            owns database app
#   replicator/...     REPLICATION role the replicas use for pg_basebackup and streaming
# Replication logins are accepted from the container's own networks (pg_hba "samenet").
set -euo pipefail

: "${APP_USER:=app}" "${APP_PASSWORD:=app}" "${APP_DB:=app}"
: "${REPLICATION_USER:=replicator}" "${REPLICATION_PASSWORD:=replicator}"

# Settings: ALTER SYSTEM writes postgresql.auto.conf, which pg_basebackup copies to the
# replicas (they need hot_standby; the rest is harmless on a standby and ready for promotion).
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v app_user="$APP_USER" -v app_password="$APP_PASSWORD" -v app_db="$APP_DB" \
     -v repl_user="$REPLICATION_USER" -v repl_password="$REPLICATION_PASSWORD" <<'SQL'
ALTER SYSTEM SET wal_level = 'replica';
ALTER SYSTEM SET max_wal_senders = 10;
ALTER SYSTEM SET max_replication_slots = 10;
ALTER SYSTEM SET wal_keep_size = '256MB';
ALTER SYSTEM SET wal_log_hints = on;
ALTER SYSTEM SET hot_standby = on;
ALTER SYSTEM SET max_connections = 200;
CREATE ROLE :"repl_user" WITH LOGIN REPLICATION PASSWORD :'repl_password';
CREATE ROLE :"app_user" WITH LOGIN CREATEDB PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user";
SQL

# The image has already appended "host all all all scram-sha-256"; "all" does not cover
# replication connections, which need their own line.
cat >>"$PGDATA/pg_hba.conf" <<HBA

# pgswitch compose demo (docker/primary-init.sh): streaming replication from the docker network
host    replication     $REPLICATION_USER     samenet     scram-sha-256
HBA
