"""Daily partitions of log_entries and ml_predictions: made ahead of time, dropped when older than retention.

Migration 7 partitions both tables by event time (UTC days, plus a default partition for times far off).
`streamer run` keeps them: at start and every hour one member (a session advisory lock elects it) makes the
partitions from yesterday to DAYS_AHEAD days ahead and, with STREAMER_RETENTION set, drops both tables'
partitions whose day ended before now - retention, and deletes expired rows from the default partitions and
the expired hours of severity_hours.
Every statement runs with a short lock_timeout, and drops take their locks without waiting at all (see _drop):
partition DDL needs a brief exclusive lock on the tables, and waiting for one would queue the pipeline's
inserts behind it (or deadlock with one); a step that cannot get its locks is tried again at the next round. A partition cannot be made for a day the default partition already holds
rows of (PostgreSQL refuses): those rows stay in the default partition, which is why days are made ahead.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from streamer.db import one
from streamer.errors import ConfigError, one_line

log = logging.getLogger("streamer.partitions")

DAYS_AHEAD = 3
INTERVAL_S = 3600.0
LOCK_TIMEOUT_MS = 2_000
DEFAULT_DELETE_CHUNK = 50_000
LOCKED_WITHIN_S = 5.0  # how long partition DDL keeps trying for a moment between batches
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
    deleted_hours: int = 0  # rows of severity_hours
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
            out.append((parent, name, datetime.fromisoformat(m.group(1)).astimezone(UTC)))
    return out


def maintain(
    conn: psycopg.Connection,
    retention: timedelta | None,
    now: datetime | None = None,
    days_ahead: int = DAYS_AHEAD,
    delete_chunk: int = DEFAULT_DELETE_CHUNK,
) -> Round:
    """One round on an autocommit connection; the caller holds the advisory lock (see PartitionKeeper)."""
    now = now or datetime.now(UTC)
    done = Round()
    conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
    today = now.astimezone(UTC).date()
    days = [today + timedelta(days=offset) for offset in range(-1, days_ahead + 1)]
    missing = [
        d
        for d in days
        if one(
            conn,
            "SELECT to_regclass(%s) IS NULL OR to_regclass(%s) IS NULL",
            (f"log_entries_p{d:%Y%m%d}", f"ml_predictions_p{d:%Y%m%d}"),
        )[0]
    ]
    for day in missing:  # one at a time: rows of that day already in the default partition refuse only it
        problem = _with_tables_locked(conn, [sql.SQL("SELECT streamer_day_partition({})").format(sql.Literal(day))])
        if problem is None:
            done.made.append(day)
        else:
            done.skipped.append(f"make {day}: {problem}")
    if retention is None:
        return done
    cutoff = now - retention
    expired = sorted(name for _, name, upper in _day_partitions(conn) if upper <= cutoff)
    if expired:
        problem = _with_tables_locked(conn, [sql.SQL("DROP TABLE {}").format(sql.Identifier(name)) for name in expired])
        if problem is None:
            done.dropped += expired
        else:
            done.skipped.append(f"drop {len(expired)} expired partitions: {problem}")
    try:  # the hours of severity_hours (migration 8) that ended before the cutoff, as their partitions
        done.deleted_hours = conn.execute(
            "DELETE FROM severity_hours WHERE hour + interval '1 hour' <= %s", (cutoff,)
        ).rowcount
    except psycopg.Error as err:
        done.skipped.append(f"delete expired severity hours: {one_line(err)}")
    for parent in reversed(_PARENTS):
        while True:
            try:
                default = sql.Identifier(f"{parent}_default")
                cur = conn.execute(
                    sql.SQL(
                        "DELETE FROM {} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {} WHERE event_time < %s LIMIT %s))"
                    ).format(default, default),
                    (cutoff, delete_chunk),
                )
            except psycopg.Error as err:
                done.skipped.append(f"delete from {parent}_default: {one_line(err)}")
                break
            done.deleted_from_default += cur.rowcount
            if cur.rowcount < delete_chunk:
                break
    return done


def _with_tables_locked(
    conn: psycopg.Connection, statements: list[sql.Composed], within_s: float = LOCKED_WITHIN_S
) -> str | None:
    """Run partition DDL in one transaction that holds both tables; None when done, else why not.

    The tables (and so all their partitions) are locked with NOWAIT, retried between the pipeline's batches:
    a keeper that never waits for a lock can never be part of a deadlock (waiting, it deadlocked with inserts
    that held a partition, e.g. the default one, and wanted the table), and batches wait at most the
    milliseconds the DDL itself takes."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with conn.transaction():
                conn.execute("LOCK TABLE log_entries, ml_predictions IN ACCESS EXCLUSIVE MODE NOWAIT")
                for statement in statements:
                    conn.execute(statement)
            return None
        except psycopg.errors.LockNotAvailable as err:
            if time.monotonic() >= deadline:
                return f"the tables stayed busy for {within_s:.0f} s ({one_line(err)})"
            time.sleep(0.02)
        except psycopg.Error as err:
            return one_line(err)


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
            log.info(
                "partitions: made %s; dropped %d expired (%s); %d expired rows deleted from the default partitions",
                ", ".join(str(d) for d in done.made) or "none",
                len(done.dropped),
                ", ".join(done.dropped) or "-",
                done.deleted_from_default,
            )
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
