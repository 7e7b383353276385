#!/usr/bin/env bash
# Local PostgreSQL for streamer on 127.0.0.1:5432 (role streamer / password streamer owning database streamer).
#   scripts/postgres.sh up|down|status
# Choice: we use Debian's own cluster tooling and its default cluster (`main`, whatever version holds port
# 5432; created with pg_createcluster when there is none), not a private data directory: Debian's clusters
# run as the postgres user, which cannot be assumed to reach a checkout under /root. A server already
# answering on 5432 is reused. Only a cluster this checkout started (recorded in .stack/postgres/started) is
# stopped by `down`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PGDIR="$STACK/postgres"
RECORD="$PGDIR/started"
PORT=5432
URL="postgresql://streamer:streamer@$HOST:$PORT/streamer"
export DEBIAN_FRONTEND=noninteractive

# Can role streamer log in to database streamer over TCP? (psycopg from the venv; no psql needed.)
streamer_ok() {
  "$(python_bin)" - "$URL" <<'PY' 2>/dev/null
import sys, psycopg
with psycopg.connect(sys.argv[1], connect_timeout=3) as conn:
    conn.execute("select 1")
PY
}

pg_answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$HOST" -p "$PORT" -t 3
  else
    streamer_ok
  fi
}

as_postgres_psql() { # run SQL from stdin as the postgres superuser over the cluster's Unix socket
  (cd / && su postgres -s /bin/sh -c "psql -X -q -v ON_ERROR_STOP=1 -p $PORT -d postgres")
}

ensure_role_db() {
  streamer_ok && return 0
  command -v psql >/dev/null 2>&1 || die "PostgreSQL on $HOST:$PORT refuses role streamer and psql is missing to create it"
  log "postgres: creating role streamer and database streamer"
  as_postgres_psql >"$PGDIR/setup.log" 2>&1 <<'SQL' || die "PostgreSQL on $HOST:$PORT refuses role streamer and 'su postgres -c psql' could not create it: $(tail -n1 "$PGDIR/setup.log")"
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'streamer') THEN
    CREATE ROLE streamer LOGIN PASSWORD 'streamer';
  ELSE
    ALTER ROLE streamer LOGIN PASSWORD 'streamer';
  END IF;
END $$;
SELECT 'CREATE DATABASE streamer OWNER streamer'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'streamer')\gexec
ALTER DATABASE streamer OWNER TO streamer;
SQL
  streamer_ok || die "created role streamer but it still cannot log in over TCP at $HOST:$PORT (check pg_hba.conf allows scram-sha-256/md5 from 127.0.0.1)"
}

install_postgres() {
  command -v pg_ctlcluster >/dev/null 2>&1 && return 0
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root (apt-get install -y postgresql)"
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and there is no apt-get to install it"
  log "postgres: installing Debian's postgresql package (apt-get) ..."
  { apt-get update -q && apt-get install -y -q postgresql; } >"$PGDIR/apt.log" 2>&1 \
    || die "apt-get install postgresql failed: $(tail -n1 "$PGDIR/apt.log") (full log: .stack/postgres/apt.log)"
  command -v pg_ctlcluster >/dev/null 2>&1 || die "installed postgresql but pg_ctlcluster is still missing (see .stack/postgres/apt.log)"
}

cluster_on_port() { # "VERSION NAME STATUS" of the Debian cluster configured for port 5432
  pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p {print $1, $2, $4; exit}'
}

create_cluster() {
  local ver name=main
  ver="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n1)"
  [[ -n "$ver" ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  # `main` may exist on another port; then ours gets its own name.
  pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$ver main" && name=streamer
  log "postgres: creating cluster $ver/$name on port $PORT"
  pg_createcluster "$ver" "$name" --port "$PORT" >"$PGDIR/createcluster.log" 2>&1 \
    || die "pg_createcluster $ver $name failed: $(tail -n1 "$PGDIR/createcluster.log")"
}

wait_ready() {
  local deadline=$((SECONDS + 60))
  until pg_isready -q -h "$HOST" -p "$PORT" -t 2; do
    ((SECONDS < deadline)) || die "PostgreSQL did not accept connections on $HOST:$PORT within 60s; see $1"
    sleep 0.5
  done
}

up() {
  mkdir -p "$PGDIR"
  if port_open "$PORT"; then
    pg_answers || die "port $PORT is held by $(port_owner "$PORT"), which does not answer as PostgreSQL; stop it or free the port"
    ensure_role_db
    if [[ -f "$RECORD" ]]; then
      log "postgres: running (cluster $(cat "$RECORD"), started by this checkout) on $HOST:$PORT"
    else
      log "postgres: reusing the PostgreSQL server already on $HOST:$PORT (make down here leaves it running)"
    fi
    return 0
  fi
  local installed_now=0
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then install_postgres; installed_now=1; fi
  local c ver name status
  c="$(cluster_on_port)"
  [[ -n "$c" ]] || { create_cluster; c="$(cluster_on_port)"; }
  read -r ver name status <<<"$c"
  if [[ "$status" != online* ]] || ! port_open "$PORT"; then
    log "postgres: starting cluster $ver/$name on $HOST:$PORT"
    pg_ctlcluster "$ver" "$name" start >"$PGDIR/start.log" 2>&1 \
      || die "pg_ctlcluster $ver $name start failed: $(tail -n1 "$PGDIR/start.log") (log: /var/log/postgresql/postgresql-$ver-$name.log)"
  elif ((installed_now == 0)); then
    log "postgres: cluster $ver/$name already online"
  fi
  # Installing the package may start the cluster itself; either way this checkout brought it up.
  echo "$ver $name" >"$RECORD"
  wait_ready "/var/log/postgresql/postgresql-$ver-$name.log"
  ensure_role_db
  log "postgres: ready (cluster $ver/$name) on $HOST:$PORT"
}

down() {
  if [[ ! -f "$RECORD" ]]; then
    if port_open "$PORT"; then
      log "postgres: not started by this checkout; leaving the server on $HOST:$PORT running"
    else
      log "postgres: not running"
    fi
    return 0
  fi
  local ver name
  read -r ver name <"$RECORD"
  log "postgres: stopping cluster $ver/$name"
  pg_ctlcluster "$ver" "$name" stop -m fast >/dev/null 2>&1 || true
  rm -f "$RECORD"
  log "postgres: stopped"
}

status() {
  if [[ -f "$RECORD" ]] && port_open "$PORT"; then
    echo "postgres: running here (cluster $(cat "$RECORD")) on $HOST:$PORT"
  elif port_open "$PORT"; then
    echo "postgres: a server on $HOST:$PORT (not started by this checkout)"
  else
    echo "postgres: not running"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: scripts/postgres.sh up|down|status" ;;
esac
