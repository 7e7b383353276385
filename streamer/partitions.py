"""Daily partitions of log_entries and ml_predictions: made ahead of time, dropped when older than retention.

Migration 7 partitions both tables by event time (UTC days, plus a default partition for times far off).
`streamer run` keeps them: at start and every hour one member (a session advisory lock elects it) makes the
partitions from yesterday to DAYS_AHEAD days ahead and, with STREAMER_RETENTION set, drops both tables'
partitions whose day ended before now - retention, and deletes expired rows from the default partitions.
Every statement runs with a short lock_timeout: partition DDL needs a brief exclusive lock on the parent, and
waiting behind a long transaction would queue the pipeline's inserts behind it; a timed-out step is simply
tried again at the next round. A partition cannot be made for a day the default partition already holds
rows of (PostgreSQL refuses): those rows stay in the default partition, which is why days are made ahead.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg

from streamer.db import one
from streamer.errors import ConfigError, one_line

log = logging.getLogger("streamer.partitions")

DAYS_AHEAD = 3
INTERVAL_S = 3600.0
LOCK_TIMEOUT_MS = 2_000
DEFAULT_DELETE_CHUNK = 50_000
_ADVISORY_KEY = 0x5354524E  # "STRN", with the schema: one partition keeper at a time per schema
_PARENTS = ("log_entries", "ml_predictions")
_DURATION = re.compile(r"^\s*(\d+)\s*([dhw])\s*$")


def parse_retention(text: str | None) -> timedelta | None:
    """'30d', '12h', '2w' -> timedelta; '' / '0' / None -> None (keep everything)."""
    if text is None or text.strip() in ("", "0"):
        return None
    m = _DURATION.match(text.lower())
    if not m:
        raise ConfigError(f"STREAMER_RETENTION={text!r}: expected a number and d, h or w, e.g. 30d")
    n, unit = int(m.group(1)), m.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]


def is_partitioned(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass('log_entries')").fetchone()
    return row is not None and row[0] == "p"


@dataclass
class Round:
    """What one maintenance round did."""

    made: list[date] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted_from_default: int = 0
    skipped: list[str] = field(default_factory=list)  # steps that timed out on a lock or were refused


def _day_partitions(conn: psycopg.Connection) -> list[tuple[str, str, datetime]]:
    """(parent, partition, upper bound) of every day partition of both tables."""
    rows = conn.execute("""
        SELECT p.relname, c.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        WHERE i.inhparent IN (to_regclass('log_entries'), to_regclass('ml_predictions'))""").fetchall()
    out = []
    for parent, name, bound in rows:
        m = re.search(r"TO \('([^']+)'\)", bound or "")
        if m:  # the default partition has no bounds
            out.append((parent, name, datetime.fromisoformat(m.group(1)).astimezone(timezone.utc)))
    return out


def maintain(conn: psycopg.Connection, retention: timedelta | None, now: datetime | None = None,
             days_ahead: int = DAYS_AHEAD, delete_chunk: int = DEFAULT_DELETE_CHUNK) -> Round:
    """One round on an autocommit connection; the caller holds the advisory lock (see PartitionKeeper)."""
    now = now or datetime.now(timezone.utc)
    done = Round()
    conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    today = now.astimezone(timezone.utc).date()
    for offset in range(-1, days_ahead + 1):
        day = today + timedelta(days=offset)
        try:
            if one(conn, "SELECT streamer_day_partition(%s)", (day,))[0]:
                done.made.append(day)
        except psycopg.Error as err:  # a lock timeout, or rows of that day already in the default partition
            done.skipped.append(f"make {day}: {one_line(err)}")
    if retention is None:
        return done
    cutoff = now - retention
    expired = sorted((p for p in _day_partitions(conn) if p[2] <= cutoff), key=lambda p: (p[2], p[0] != "ml_predictions"))
    for _parent, name, _ in expired:  # predictions first: never an entry gone while its prediction stays
        try:
            conn.execute(f'DROP TABLE "{name}"')
            done.dropped.append(name)
        except psycopg.Error as err:
            done.skipped.append(f"drop {name}: {one_line(err)}")
    for parent in reversed(_PARENTS):
        while True:
            try:
                cur = conn.execute(
                    f"DELETE FROM {parent}_default WHERE ctid = ANY (ARRAY(SELECT ctid FROM {parent}_default "
                    "WHERE event_time < %s LIMIT %s))", (cutoff, delete_chunk))
            except psycopg.Error as err:
                done.skipped.append(f"delete from {parent}_default: {one_line(err)}")
                break
            done.deleted_from_default += cur.rowcount
            if cur.rowcount < delete_chunk:
                break
    return done


class PartitionKeeper:
    """A daemon thread running maintain() at start and every `interval` seconds, on its own connection;
    only the member holding the advisory lock works, the others skip the round."""

    def __init__(self, database_url: str, retention: timedelta | None, interval: float = INTERVAL_S):
        self.database_url = database_url
        self.retention = retention
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="partition-keeper", daemon=True)
        self.rounds = 0

    def start(self) -> PartitionKeeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def run_once(self) -> Round | None:
        """One round; None when the schema is not partitioned or another member holds the lock."""
        with psycopg.connect(self.database_url, autocommit=True, connect_timeout=5) as conn:
            if not is_partitioned(conn):
                return None
            if not one(conn, "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (_ADVISORY_KEY,))[0]:
                return None
            try:
                done = maintain(conn, self.retention)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))", (_ADVISORY_KEY,))
        self.rounds += 1
        if done.made or done.dropped or done.deleted_from_default:
            log.info("partitions: made %s; dropped %d expired (%s); %d expired rows deleted from the default "
                     "partitions", ", ".join(str(d) for d in done.made) or "none", len(done.dropped),
                     ", ".join(done.dropped) or "-", done.deleted_from_default)
        for step in done.skipped:
            log.warning("partitions: %s (tried again in %.0f s)", step, self.interval)
        return done

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as err:  # noqa: BLE001 (the pipeline goes on; the next round retries)
                log.warning("partitions: maintenance failed: %s", one_line(err))
            self._stop.wait(self.interval)
