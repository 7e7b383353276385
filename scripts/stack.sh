#!/usr/bin/env bash
# The whole local stack: Kafka + PostgreSQL, then `streamer init` (topics + schema).
#   scripts/stack.sh up|down|status
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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
    "$ROOT/scripts/kafka.sh" down
    "$ROOT/scripts/postgres.sh" down
    ;;
  status)
    "$ROOT/scripts/kafka.sh" status
    "$ROOT/scripts/postgres.sh" status
    ;;
  *) die "usage: scripts/stack.sh up|down|status" ;;
esac
