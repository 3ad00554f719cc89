#!/usr/bin/env bash
# A private PostgreSQL 15 cluster on 127.0.0.1:$AUREN_PG_PORT (and $AUREN_SERVICE_HOST, when that is
# another address of this machine, for the host's own subnets): `postgres.sh start|stop`.
# It never touches the machine's own cluster (5432). AUREN_PG_OPTIONS: more server options.
# AUREN_PG_DURABLE=1: PostgreSQL's own durability settings (fsync on, synchronous_commit on) and
# a data folder of its own (pg-durable), so it can run beside the fast one (fsync off) on
# another AUREN_PG_PORT: `make bench` measures the consumer on both.
source "$(dirname "$0")/lib.sh"

if [ "${AUREN_PG_DURABLE:-}" = 1 ]; then
  PGDATA="$AUREN_STATE/pg-durable" FSYNC=on
else
  PGDATA="$AUREN_STATE/pg" FSYNC=off
fi

start_pg() {
  [ -x "$PG_BIN/initdb" ] || die "PostgreSQL 15 binaries missing in $PG_BIN (run scripts/deps.sh)"
  mkdir -p "$AUREN_STATE"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    rm -rf "$PGDATA" && mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$PGDATA" "$AUREN_STATE"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  local listen=127.0.0.1
  if [ "$AUREN_SERVICE_HOST" != 127.0.0.1 ]; then
    listen="127.0.0.1,$AUREN_SERVICE_HOST"
    grep -qx "host all all samenet trust" "$PGDATA/pg_hba.conf" || echo "host all all samenet trust" >>"$PGDATA/pg_hba.conf"
  fi
  if wait_for_port 127.0.0.1 "$AUREN_PG_PORT" 0; then die "port $AUREN_PG_PORT already in use"; fi
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 30 \
    -o "-p $AUREN_PG_PORT -k $PGDATA -c listen_addresses=$listen -c max_connections=300 -c fsync=$FSYNC ${AUREN_PG_OPTIONS:-}" \
    start >/dev/null
  as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$AUREN_PG_PORT" -U postgres -qAt -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
SELECT 'CREATE ROLE auren LOGIN SUPERUSER' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'auren')\gexec
SELECT 'CREATE DATABASE auren OWNER auren' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'auren')\gexec
SQL
  say "postgres up on $listen:$AUREN_PG_PORT (fsync $FSYNC)"
}

stop_pg() {
  [ -f "$PGDATA/postmaster.pid" ] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

case "${1:-}" in
  start) start_pg ;;
  stop) stop_pg ;;
  *) die "usage: postgres.sh start|stop" ;;
esac
