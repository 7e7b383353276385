"""Real faults for the chaos drill: restart or stop for a while the Kafka broker that scripts/kafka.sh started,
restart or stop for a while the PostgreSQL cluster serving the database port (Debian's pg_ctlcluster): the
servers really go away (connections reset, new ones refused) and come back. A slow or silent database is
testkit.proxies.SlowProxy in front of the real one. Poison records: one of every class the pipeline must
dead-letter.

Each fault refuses with FaultUnavailable, before doing anything, when this machine cannot inject it (a broker
this checkout did not start, no pg_ctlcluster), so a drill never half-breaks a stack it does not own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

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
        raise FaultUnavailable(
            "the Kafka broker was not started by this checkout's scripts/kafka.sh "
            "(no live pid in .stack/kafka/broker.pid); run `make up` here"
        )


def restart_broker() -> float:
    """Stop the broker (SIGTERM, as `make down` does) and start it again; returns the seconds it was away."""
    check_broker()
    started = time.monotonic()
    stop_broker()
    start_broker()
    return time.monotonic() - started


def stop_broker() -> None:
    check_broker()
    _kafka_sh("down")


def start_broker() -> None:
    """`scripts/kafka.sh up`: returns once the broker answers."""
    _kafka_sh("up")


def _kafka_sh(step: str) -> None:
    done = subprocess.run(
        [str(ROOT / "scripts" / "kafka.sh"), step], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0:
        raise FaultFailed(f"scripts/kafka.sh {step} failed: {_last_line(done)}")


def database_cluster(url: str) -> tuple[str, str]:
    """(version, name) of the Debian cluster serving the database URL's port."""
    if shutil.which("pg_ctlcluster") is None or shutil.which("pg_lsclusters") is None:
        raise FaultUnavailable(
            "pg_ctlcluster/pg_lsclusters not found: restarting PostgreSQL needs Debian's "
            "postgresql-common (the make up stack)"
        )
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
    started = time.monotonic()
    _pg_ctlcluster(database_cluster(url), "restart", "-m", "fast", timeout=timeout)
    return _accepting(url, started, timeout)


def stop_database(url: str) -> tuple[str, str]:
    """`pg_ctlcluster VER NAME stop -m fast`: the database is gone until start_database. Returns the cluster."""
    cluster = database_cluster(url)
    _pg_ctlcluster(cluster, "stop", "-m", "fast")
    return cluster


def start_database(url: str, cluster: tuple[str, str], timeout: float = 90.0) -> float:
    """Start the cluster stop_database stopped; returns the seconds until `url` accepted connections."""
    started = time.monotonic()
    _pg_ctlcluster(cluster, "start", timeout=timeout)
    return _accepting(url, started, timeout)


def _pg_ctlcluster(cluster: tuple[str, str], *args: str, timeout: float = 90.0) -> None:
    ver, name = cluster
    done = subprocess.run(["pg_ctlcluster", ver, name, *args], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise FaultFailed(f"pg_ctlcluster {ver} {name} {args[0]} failed: {_last_line(done)}")


def _accepting(url: str, started: float, timeout: float) -> float:
    import psycopg

    deadline = started + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return time.monotonic() - started
        except psycopg.OperationalError as err:
            if time.monotonic() > deadline:
                raise FaultFailed(
                    f"PostgreSQL did not accept connections {timeout:.0f}s after the start: "
                    f"{str(err).strip().splitlines()[0]}"
                ) from None
            time.sleep(0.3)


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {done.returncode}"


# --- poison records: one of every class issue 11 found, each with where it must end up -------------------

POISON_KINDS = ("service_54000", "nul_byte", "nul_json", "oversized_for_dlq", "malformed", "wrong_encoding")
# Decoded fine, refused by PostgreSQL: a store-stage dead letter, no row, nothing on logs.scored.
STORE_POISON = ("service_54000", "nul_byte", "nul_json")
DLQ_LIMIT_BYTES = 1024 * 1024  # the drill's dead-letter topic takes the broker's default, 1 MiB


def poison_value(kind: str, rng) -> bytes:
    import base64

    import orjson

    if kind == "service_54000":  # index row too big on log_entries_service_time (incompressible text)
        service = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(3000))
        return orjson.dumps(
            {
                "message": "service name far too long",
                "service": {"name": service},
                "log": {"level": "ERROR"},
                "n": rng.randrange(10**9),
            }
        )
    if kind == "nul_byte":  # a text line with a raw NUL: PostgreSQL text cannot hold it (22021)
        return b"2024-06-01T12:00:00Z ERROR nul \x00 byte in line %d" % rng.randrange(10**9)
    if kind == "nul_json":  # \u0000 in JSON: jsonb and text refuse it
        return orjson.dumps({"message": f"nul \u0000 escaped {rng.randrange(10**9)}", "level": "WARN"})
    if kind == "oversized_for_dlq":  # over STREAMER_MAX_MESSAGE_BYTES and, even lz4-compressed, over the DLQ's
        return b'{"message": "' + base64.b64encode(rng.randbytes(1_600_000)) + b'"}'
    if kind == "malformed":
        return b'{"message": "unterminated %d' % rng.randrange(10**9)
    if kind == "wrong_encoding":  # UTF-16 with its byte order mark: not UTF-8
        return orjson.dumps({"message": f"utf-16 event {rng.randrange(10**9)}"}).decode().encode("utf-16")
    raise ValueError(kind)


def with_poison(values: list[bytes], invalid: set[int], every: int, rng) -> dict[int, str]:
    """Replace every `every`-th valid value by a poison record, kinds in turn. Decode-stage ones join
    `invalid`; returns index -> kind of all of them."""
    poison: dict[int, str] = {}
    if every <= 0:
        return poison
    for n, i in enumerate(range(every // 2, len(values), every)):
        while i in invalid and i + 1 < len(values):
            i += 1
        kind = POISON_KINDS[n % len(POISON_KINDS)]
        values[i] = poison_value(kind, rng)
        poison[i] = kind
        if kind not in STORE_POISON:
            invalid.add(i)
    return poison
