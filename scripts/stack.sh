#!/usr/bin/env bash
# The whole local stack: Kafka + PostgreSQL, then `streamer init` (topics + schema).
#   scripts/stack.sh up|down|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# `make demo` leaves `streamer serve` (the dashboard) running; only that process, by its pid file.
stop_serve() {
  local pid
  pid="$(cat "$STACK/serve.pid" 2>/dev/null || true)"
  if pid_alive "$pid" && pid_cmd_has "$pid" "streamer serve"; then
    kill "$pid"
    for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.2; done
    log "serve: stopped (pid $pid)"
  fi
  rm -f "$STACK/serve.pid"
}

case "${1:-}" in
  up)
    start=$SECONDS
    "$ROOT/scripts/kafka.sh" up
    "$ROOT/scripts/postgres.sh" up
    [[ -x "$ROOT/.venv/bin/streamer" ]] || die "no .venv/bin/streamer: run make venv (make up does it)"
    "$ROOT/.venv/bin/streamer" init >"$STACK/init.log" 2>&1 || die "streamer init failed: $(tail -n1 "$STACK/init.log")"
    log "stack: up in $((SECONDS - start))s — Kafka 127.0.0.1:9092 (SASL 9094), PostgreSQL 127.0.0.1:5432; topics and schema ready"
    ;;
  down)
    stop_serve
    "$ROOT/scripts/kafka.sh" down
    "$ROOT/scripts/postgres.sh" down
    ;;
  status)
    pid="$(cat "$STACK/serve.pid" 2>/dev/null || true)"
    if pid_alive "$pid" && pid_cmd_has "$pid" "streamer serve"; then log "serve: running (pid $pid, started by make demo)"; fi
    "$ROOT/scripts/kafka.sh" status
    "$ROOT/scripts/postgres.sh" status
    ;;
  *) die "usage: scripts/stack.sh up|down|status" ;;
esac
