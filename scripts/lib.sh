# Shared helpers for the stack scripts (sourced, not run).
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="$ROOT/.stack"
HOST=127.0.0.1

log() { printf '%s\n' "$*" >&2; }
# One clear line, no stack trace; `make` shows the target that failed.
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Python with the project installed (make up builds .venv first); scripts use it for readiness checks.
python_bin() {
  if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"; else echo python3; fi
}

port_open() { # port_open PORT: something accepts TCP connections on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

port_owner() { # port_owner PORT: "pid 123 (java ...)" of the listener, or "an unknown process"
  local pid=""
  if command -v ss >/dev/null 2>&1; then
    pid="$(ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true)"
  fi
  if [[ -n "$pid" && -r "/proc/$pid/cmdline" ]]; then
    printf 'pid %s (%s)' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" | cut -c1-100)"
  else
    printf 'an unknown process'
  fi
}

port_pid() { # port_pid PORT: pid of the listener, empty when unknown
  command -v ss >/dev/null 2>&1 || return 0
  ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

pid_cmd_has() { # pid_cmd_has PID TEXT: the process's command line contains TEXT
  [[ -r "/proc/$1/cmdline" ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}
