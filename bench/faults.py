"""Real faults for the chaos drill: restart the Kafka broker that scripts/kafka.sh started, and restart the
PostgreSQL cluster serving the database port with Debian's pg_ctlcluster. No proxies: the servers really go
away (connections reset, new ones refused) and come back.

Each fault refuses with FaultUnavailable, before doing anything, when this machine cannot inject it (a broker
this checkout did not start, no pg_ctlcluster), so a drill never half-breaks a stack it does not own.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
KAFKA_DIR = ROOT / ".stack" / "kafka"
PG_RECORD = ROOT / ".stack" / "postgres" / "started"


class FaultUnavailable(Exception):
    """This fault cannot be injected here; str() says why."""


class FaultFailed(Exception):
    """The fault was injected but the service did not come back; str() says what to look at."""


def broker_pid() -> int | None:
    """Pid of the broker scripts/kafka.sh started from this checkout, if it is still running."""
    try:
        pid = int((KAFKA_DIR / "broker.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    return pid if str(KAFKA_DIR / "server.properties").encode() in cmdline else None


def check_broker() -> None:
    if broker_pid() is None:
        raise FaultUnavailable("the Kafka broker was not started by this checkout's scripts/kafka.sh "
                               "(no live pid in .stack/kafka/broker.pid); run `make up` here")


def restart_broker() -> float:
    """Stop the broker (SIGTERM, as `make down` does) and start it again; returns the seconds it was away."""
    check_broker()
    started = time.monotonic()
    for step in ("down", "up"):
        done = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), step], cwd=ROOT, capture_output=True,
                              text=True, timeout=180)
        if done.returncode != 0:
            raise FaultFailed(f"scripts/kafka.sh {step} failed: {_last_line(done)}")
    return time.monotonic() - started


def database_cluster(url: str) -> tuple[str, str]:
    """(version, name) of the Debian cluster serving the database URL's port."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        raise FaultUnavailable("pg_ctlcluster/pg_lsclusters not found: restarting PostgreSQL needs Debian's "
                               "postgresql-common (the make up stack)")
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise FaultUnavailable(f"the database is on {parts.hostname}, not this machine")
    port = str(parts.port or 5432)
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == port and fields[3].startswith("online"):
            return fields[0], fields[1]
    raise FaultUnavailable(f"no online Debian PostgreSQL cluster on port {port} (pg_lsclusters)")


def restart_database(url: str, timeout: float = 90.0) -> float:
    """`pg_ctlcluster VER NAME restart -m fast` (every connection is closed), then wait until `url` accepts
    connections again; returns the seconds the database was away."""
    import psycopg

    ver, name = database_cluster(url)
    started = time.monotonic()
    done = subprocess.run(["pg_ctlcluster", ver, name, "restart", "-m", "fast"], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise FaultFailed(f"pg_ctlcluster {ver} {name} restart failed: {_last_line(done)}")
    deadline = started + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return time.monotonic() - started
        except psycopg.OperationalError as err:
            if time.monotonic() > deadline:
                raise FaultFailed(f"PostgreSQL did not accept connections {timeout:.0f}s after the restart: "
                                  f"{str(err).strip().splitlines()[0]}") from None
            time.sleep(0.3)


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"
