"""The two sinks of a scored batch: Kafka (logs.scored and the dead-letter topic) and PostgreSQL.

Neither commits offsets. PostgresSink.write() is one transaction per batch; KafkaSink produces
asynchronously and only flush() waits for the acknowledgements. The checkpoint commits after both.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections.abc import Iterable

import psycopg
from confluent_kafka import KafkaError, KafkaException, Producer
from psycopg.types.json import set_json_dumps

from streamer.config import redact_url
from streamer.db import severity_hours, template_stats
from streamer.decode import DeadLetter
from streamer.enrich import ScoredRecord, dead_letter_headers
from streamer.errors import Dependency, StreamerError, TransientError, one_line
from streamer.isolate import failing_alone
from streamer.kafka_admin import PRODUCER_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)
# PostgreSQL's first line whole: it names the constraint or value a dead letter's reason must show.
_WHOLE_LINE = 10_000


class Deliveries:
    """Delivery failures of one batch's records (librdkafka reports only failures: no per-record Python)."""

    __slots__ = ("failures", "first_failure", "too_large")

    def __init__(self):
        self.failures = 0
        self.first_failure: str | None = None
        self.too_large: list = []  # messages the broker refused for their size: sent again truncated

    def callback(self, value: bytes | None, headers):
        """The delivery callback for one record. A large one keeps its headers for a truncated resend, as
        delivery reports do not carry them back; the rest share this object (no per-record Python)."""
        if value is None or len(value) < TRUNCATED_BYTES:
            return self
        return lambda err, msg: self(err, msg, headers)

    def __call__(self, err, msg, headers=None) -> None:
        if err is not None:
            if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and msg.value() is not None:
                self.too_large.append((msg, headers))
                return
            self.failures += 1
            if self.first_failure is None:
                self.first_failure = f"{msg.topic()}: {err.str()}"


class KafkaSink:
    """Produces scored records and dead letters; flush() raises TransientError unless every record of the
    batch was acknowledged. Several batches may publish at once, from different threads."""

    def __init__(self, producer_config: dict, output_topic: str, dlq_topic: str):
        config = {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            # Below the topics' max.message.bytes (kafka_admin), so an oversized record fails here, where
            # publish_dead_letters can still send its coordinates, not at the broker.
            "message.max.bytes": PRODUCER_MAX_MESSAGE_BYTES,
            **producer_config,
            "delivery.report.only.error": True,
        }
        self.producer = Producer(config)
        self.output_topic = output_topic
        self.dlq_topic = dlq_topic

    def publish_scored(self, records: Iterable[ScoredRecord], deliveries: Deliveries) -> None:
        produce = self.producer.produce
        topic = self.output_topic
        for key, value, headers in records:
            report = deliveries.callback(value, headers)
            try:
                produce(topic, value, key, headers=headers, on_delivery=report)
            except BufferError:
                self._make_room()
                produce(topic, value, key, headers=headers, on_delivery=report)
            except KafkaException as err:
                raise self._classify(err, topic) from None

    def publish_dead_letters(self, dead_letters: Iterable[DeadLetter], deliveries: Deliveries) -> None:
        for d in dead_letters:
            headers = dead_letter_headers(d)
            try:
                self._produce_dead(d.value, d.key, headers, deliveries)
            except KafkaException as err:
                if err.args[0].code() != KafkaError.MSG_SIZE_TOO_LARGE:
                    raise self._classify(err, self.dlq_topic) from None
                # Too big for the producer even as a dead letter: keep the coordinates so the original can
                # still be read from the source topic, and say why the value is missing.
                headers.append(("deadletter.value_omitted", b"too large to republish"))
                self._produce_dead(None, d.key, headers, deliveries)

    def _produce_dead(self, value, key, headers, deliveries) -> None:
        report = deliveries.callback(value, headers)
        try:
            self.producer.produce(self.dlq_topic, value, key, headers=headers, on_delivery=report)
        except BufferError:
            self._make_room()
            self.producer.produce(self.dlq_topic, value, key, headers=headers, on_delivery=report)

    def _make_room(self) -> None:
        # The local queue is full: serve delivery reports until librdkafka has room again.
        self.producer.poll(0.1)

    def flush(self, timeout: float, deliveries: Deliveries) -> None:
        """Wait until everything produced so far is acknowledged; raise if any of this batch's records failed.

        A record the broker refused for its size (a topic's max.message.bytes below ours) would be refused on
        every retry: it goes to the dead-letter topic once more, value truncated, headers saying so."""
        remaining = self.producer.flush(timeout)
        if not remaining and deliveries.too_large:
            refused, deliveries.too_large = deliveries.too_large, []
            for msg, headers in refused:
                self._produce_dead(*_truncated(msg, headers, self.output_topic), deliveries)
            remaining = self.producer.flush(timeout)
            if deliveries.too_large:  # refused even truncated: keep the coordinates only
                for msg, headers in deliveries.too_large:
                    _, key, headers = _truncated(msg, headers, self.output_topic)
                    self._produce_dead(None, key, [*headers, ("deadletter.value_omitted", b"refused")], deliveries)
                deliveries.too_large = []
                remaining = self.producer.flush(timeout)
        if remaining:
            raise TransientError(f"Kafka did not acknowledge {remaining} records within {timeout:.0f}s")
        if deliveries.failures:
            raise TransientError(f"Kafka refused {deliveries.failures} records ({deliveries.first_failure})")

    def poll(self) -> None:
        self.producer.poll(0)

    @staticmethod
    def _classify(err: KafkaException, topic: str) -> Exception:
        kerr = err.args[0]
        if kerr.fatal():
            return StreamerError(f"Kafka producer failed for {topic}: {kerr.str()}")
        return TransientError(f"cannot produce to {topic}: {kerr.str()}")


# What is left of a value the broker refused for its size: well below any sane max.message.bytes.
TRUNCATED_BYTES = 16 * 1024


def _truncated(msg, headers, output_topic: str) -> tuple[bytes, bytes | None, list[tuple[str, bytes]]]:
    """(value, key, headers) of a dead letter for a record the broker refused for its size."""
    value = msg.value()
    headers = list(headers or msg.headers() or [])
    if msg.topic() == output_topic:  # a scored record: the event is stored; say where it did not go
        headers += [
            ("deadletter.error_class", b"too_large_for_topic"),
            ("deadletter.stage", b"publish"),
            ("deadletter.reason", b"the output topic refused the scored record for its size"),
        ]
    headers += [
        ("deadletter.truncated", b"true"),
        ("deadletter.original_size", b"%d" % len(value)),
        ("deadletter.original_sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    return value[:TRUNCATED_BYTES], msg.key(), headers


# Staging table columns, in the order enrich.database_rows() builds rows.
STAGE_COLUMNS = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "record_index",
    "event_time",
    "level",
    "message",
    "host",
    "service",
    "raw",
    "model_version",
    "predicted_level",
    "level_confidence",
    "is_anomaly",
    "anomaly_score",
    "severity",
    "template_id",
)
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS streamer_stage (
    kafka_topic text, kafka_partition int, kafka_offset bigint, record_index int, event_time timestamptz,
    level text, message text, host text, service text, raw jsonb, model_version text, predicted_level text,
    level_confidence real, is_anomaly bool, anomaly_score real, severity text, template_id text,
    template_new bool NOT NULL DEFAULT false
) ON COMMIT DELETE ROWS
"""
# Binary COPY: about a third of the client CPU of the text format, which matters as it holds the GIL.
STAGE_TYPES = (
    "text",
    "int4",
    "int8",
    "int4",
    "timestamptz",
    "text",
    "text",
    "text",
    "text",
    "jsonb",
    "text",
    "text",
    "float4",
    "bool",
    "float4",
    "text",
    "text",
)
_COPY_STAGE = f"COPY streamer_stage ({', '.join(STAGE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
# The usual batch has no row stored yet: COPY straight into both tables (no staging, no per-row conflict check:
# 40 % less PostgreSQL CPU per event). A redelivered row fails that COPY on the primary key, and the batch
# takes the staged path below instead. A prediction row is its event's key and time, then the model's columns.
ENTRY_COLUMNS = STAGE_COLUMNS[:10]
PREDICTION_COLUMNS = STAGE_COLUMNS[:5] + STAGE_COLUMNS[10:] + ("template_new",)
PREDICTION_TYPES = STAGE_TYPES[:5] + STAGE_TYPES[10:] + ("bool",)
_COPY_ENTRIES = f"COPY log_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_PREDICTIONS = f"COPY ml_predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_INSERT_ENTRIES = """
INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, record_index, event_time, level, message,
                         host, service, raw)
SELECT kafka_topic, kafka_partition, kafka_offset, record_index, event_time, level, message, host, service, raw
FROM streamer_stage
ON CONFLICT (kafka_topic, kafka_partition, kafka_offset, record_index, event_time) DO NOTHING
"""
# With templates, the keys of the entries inserted: only those are counted (a redelivered event conflicts).
_INSERT_ENTRIES_RETURNING = _INSERT_ENTRIES + "RETURNING kafka_topic, kafka_partition, kafka_offset, record_index\n"
_INSERT_PREDICTIONS = """
INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, record_index, model_version,
                            predicted_level, level_confidence, is_anomaly, anomaly_score, severity, template_id,
                            template_new, event_time)
SELECT kafka_topic, kafka_partition, kafka_offset, record_index, model_version, predicted_level,
       level_confidence, is_anomaly, anomaly_score, severity, template_id,
       CASE WHEN template_id IS NOT NULL THEN template_new END, event_time
FROM streamer_stage
ON CONFLICT (kafka_topic, kafka_partition, kafka_offset, record_index, model_version, event_time) DO NOTHING
RETURNING kafka_topic, kafka_partition, kafka_offset, record_index, model_version
"""

# What retrying cannot change: SQLSTATE class 22 (data exception), 23 (integrity constraint violation) and 54
# (program limit exceeded: an index row too big, too many columns). psycopg raises class 54 as OperationalError,
# like a lost connection, so the class decides, not the exception type; psycopg's client-side refusals (a NUL
# byte in text) are DataErrors without a SQLSTATE.
_ROW_CLASSES = ("22", "23", "54")
# Another server error on the same rows this many times in a row is treated as theirs too.
RECURRING_AFTER = 3
# Bounds on every pipeline session: a lock held by someone else, or a stuck statement, fails the attempt (a
# transient error, retried with backoff and visible in /readyz) instead of blocking the member without a word.
STATEMENT_TIMEOUT_MS = 20_000
LOCK_TIMEOUT_MS = 5_000
_LOCK_STATES = ("55P03", "57014")  # lock_not_available (lock_timeout), query_canceled (statement_timeout)
# Who holds a lock on the tables that conflicts with our inserts' ROW EXCLUSIVE.
_BLOCKERS = r"""
SELECT a.pid, l.mode, a.state, a.xact_start, left(regexp_replace(a.query, '\s+', ' ', 'g'), 80)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid()
  AND l.relation IN (to_regclass('log_entries'), to_regclass('ml_predictions'))
  AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
ORDER BY a.xact_start LIMIT 1
"""
DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError)


class _RowsRejected(Exception):
    """A load attempt the rows themselves made fail; carries the database's error."""

    def __init__(self, error: psycopg.Error):
        super().__init__(str(error))
        self.error = error


class PostgresSink:
    """Bulk-loads a batch in one transaction: COPY straight into log_entries and ml_predictions, or, when
    some of its rows are stored already (a redelivery), COPY into a temp staging table and INSERT … ON
    CONFLICT DO NOTHING, so a redelivered event adds no row. The batch's severity counts per hour
    (streamer/db/severity_hours.py) and template statistics (streamer/db/template_stats.py) are added from the
    rows inserted, last before the commit.

    A batch rejected for data reasons is bisected inside the transaction (streamer/isolate.py, one savepoint
    per attempt) until the bad rows are isolated; write() returns their indexes and commits the rest.
    """

    def __init__(self, url: str, connect_timeout: int = 5):
        self.url = url
        self.connect_timeout = connect_timeout
        self.conn: psycopg.Connection | None = None
        self._recurring: tuple | None = None  # (batch key, SQLSTATE, times) of the last failed write
        self.interrupted = False  # by interrupt(): shutting down, no new connection

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            if self.interrupted:
                raise TransientError("shutting down: database work cut at the shutdown bound", Dependency.DATABASE)
            try:
                self.conn = psycopg.connect(self.url, connect_timeout=self.connect_timeout)
            except psycopg.OperationalError as err:
                raise TransientError(
                    f"cannot connect to PostgreSQL at {redact_url(self.url)}: {one_line(err, limit=_WHOLE_LINE)}",
                    Dependency.DATABASE,
                ) from None
            # `raw` is already JSON text (the input itself): the jsonb dumper passes it through unparsed.
            set_json_dumps(_as_is, context=self.conn)
            self.conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self.conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
            self.conn.execute(_CREATE_STAGE)
            self.conn.commit()
        return self.conn

    def write(self, rows: list[tuple], templates=None) -> list[tuple[int, str, str]]:
        """Store rows in one transaction. Returns (index, error_class, reason) of rows the database rejected.

        templates: the rows' streamer.templates.EventTemplates; their statistics are upserted in the same
        transaction and templates.new_keys is set to the keys of the events marked template_new."""
        if not rows:
            return []
        conn = self._connection()
        rejected: list[tuple[int, str, str]] = []
        batch_key = (rows[0][:4], rows[-1][:4], len(rows))
        new_keys: set[tuple] = set()
        texts = templates.texts if templates is not None else None

        def attempt(half: list[int]) -> None:
            try:
                self._load_in_savepoint(conn, [rows[i] for i in half], texts, new_keys)
            except psycopg.Error as err:
                if self._rows_fault(err, batch_key):
                    raise _RowsRejected(err) from None
                raise

        try:
            with conn.transaction():
                try:
                    self._load_in_savepoint(conn, rows, texts, new_keys)  # the fast path: the whole batch
                except psycopg.Error as err:
                    if not self._rows_fault(err, batch_key):
                        raise
                    failing = failing_alone(list(range(len(rows))), _RowsRejected(err), attempt, catch=_RowsRejected)
                    rejected = [_rejection(i, e) for i, e in failing.items()]
        except psycopg.Error as err:
            blocker = self._blocker(conn) if err.sqlstate in _LOCK_STATES else ""
            self._drop_connection()
            if self._rows_fault(err, batch_key):  # cannot happen after isolation; never retry it forever
                raise StreamerError(
                    f"PostgreSQL rejected a batch after isolating bad rows: {one_line(err, limit=_WHOLE_LINE)}"
                ) from None
            if isinstance(err, (psycopg.OperationalError, psycopg.InterfaceError)) or _transient_state(err):
                self._note_failure(err, batch_key)
                raise TransientError(
                    f"PostgreSQL write failed: {one_line(err, limit=_WHOLE_LINE)}{blocker}", Dependency.DATABASE
                ) from None
            raise StreamerError(f"PostgreSQL write failed: {one_line(err, limit=_WHOLE_LINE)}") from None
        self._recurring = None
        if templates is not None:
            templates.new_keys = new_keys
        return rejected

    def _rows_fault(self, err: psycopg.Error, batch_key) -> bool:
        """True when retrying the same rows cannot help: a data or limit error, or the same server error on
        the same rows RECURRING_AFTER times in a row."""
        state = err.sqlstate
        if state is None:
            return isinstance(err, DATA_ERRORS)  # client-side refusal; a lost connection has no SQLSTATE
        if state[:2] in _ROW_CLASSES:
            return True
        if (_transient_state(err) and state not in ("40001", "40P01")) or state == "55P03":
            return False  # the server or the connection, not the rows (deadlocks may recur: rows' fault)
        return (
            self._recurring is not None
            and self._recurring[:2] == (batch_key, state)
            and self._recurring[2] >= RECURRING_AFTER
        )

    def _note_failure(self, err: psycopg.Error, batch_key) -> None:
        if err.sqlstate is None:
            return
        if self._recurring is not None and self._recurring[:2] == (batch_key, err.sqlstate):
            self._recurring = (batch_key, err.sqlstate, self._recurring[2] + 1)
        else:
            self._recurring = (batch_key, err.sqlstate, 1)

    @staticmethod
    def _blocker(conn: psycopg.Connection) -> str:
        """'; blocked by pid … ' naming the session that holds the conflicting lock, or ''."""
        try:
            conn.rollback()
            row = conn.execute(_BLOCKERS).fetchone()
            conn.rollback()
        except psycopg.Error:
            return ""
        if row is None:
            return ""
        pid, mode, state, since, query = row
        since_text = since.strftime("%H:%M:%S") if since else "?"
        return f"; blocked by pid {pid} holding {mode} ({state}, transaction since {since_text}: {query})"

    def _load(self, conn: psycopg.Connection, rows: list[tuple], texts: dict | None = None) -> list[tuple]:
        """Store rows; returns the keys of the rows marked template_new. texts: template id -> (service,
        template), None without templates; only these rows' templates are sent, so a refused row's template
        is isolated with it.

        The rows are copied straight into the tables; a redelivered row makes that COPY fail on the primary
        key, in a savepoint the transaction survives, and the batch goes the staged way. Either way the
        counts (severity hours, templates) are of the rows inserted, added last before the commit."""
        with conn.cursor() as cur:
            try:
                with conn.transaction():
                    self._copy_into_tables(cur, rows)
            except psycopg.errors.UniqueViolation:
                return self._insert_staged(cur, rows, texts)  # some rows are stored already
            severity_hours.add(cur, rows)
            return [] if texts is None else template_stats.add(cur, rows, texts)

    @staticmethod
    def _copy_into_tables(cur: psycopg.Cursor, rows: list[tuple]) -> None:
        with cur.copy(_COPY_ENTRIES) as copy:
            copy.set_types(STAGE_TYPES[:10])
            write_row = copy.write_row
            for row in rows:
                write_row(row[:10])
        with cur.copy(_COPY_PREDICTIONS) as copy:
            copy.set_types(PREDICTION_TYPES)
            write_row = copy.write_row
            # template_new: false for a mined row (template_stats marks its template's first), null unmined
            for row in rows:
                write_row(row[:5] + row[10:] + ((False,) if row[16] is not None else (None,)))

    @staticmethod
    def _insert_staged(cur: psycopg.Cursor, rows: list[tuple], texts: dict | None) -> list[tuple]:
        """COPY into staging, then INSERT … ON CONFLICT DO NOTHING: rows already stored are skipped, and only
        the rows inserted are counted (severity hours by their predictions, templates by their entries)."""
        with cur.copy(_COPY_STAGE) as copy:
            copy.set_types(STAGE_TYPES)
            write_row = copy.write_row
            for row in rows:
                write_row(row)
        cur.execute(_INSERT_PREDICTIONS)
        predicted = set(cur.fetchall())
        cur.execute(_INSERT_ENTRIES if texts is None else _INSERT_ENTRIES_RETURNING)
        entered = set(cur.fetchall()) if texts is not None else set()
        cur.execute("TRUNCATE streamer_stage")
        severity_hours.add(cur, [row for row in rows if (*row[:4], row[10]) in predicted])
        if texts is None:
            return []
        return template_stats.add(cur, [row for row in rows if row[:4] in entered], texts)

    def _load_in_savepoint(
        self, conn: psycopg.Connection, rows: list[tuple], texts: dict | None = None, new_keys: set | None = None
    ) -> None:
        with conn.transaction():  # kept when it succeeds, rolled back alone when it fails
            new = self._load(conn, rows, texts)
        if new_keys is not None:  # only once the savepoint is released: a rolled-back attempt marked nothing
            new_keys.update(new)

    def interrupt(self) -> None:
        """From another thread, at the shutdown bound: make the statement under way fail at once, and refuse
        new connections. Shutting the socket down needs no answer from the server, unlike a cancel request;
        the transaction is not committed and the server rolls it back when it notices."""
        self.interrupted = True
        conn = self.conn
        if conn is None or conn.closed:
            return
        try:
            sock = socket.socket(fileno=os.dup(conn.fileno()))  # a duplicate: psycopg's own fd stays valid
        except (OSError, psycopg.Error):
            return
        with sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already gone
                pass

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # closing a broken connection must not mask the original error
                pass
        self.conn = None

    def close(self) -> None:
        self._drop_connection()


def _as_is(json_text: str) -> str:
    return json_text


# 08 connection exception, 40 transaction rollback (deadlock, serialization), 53 insufficient resources,
# 57 operator intervention (shutdown), 58 system error.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")


def _rejection(index: int, err: BaseException) -> tuple[int, str, str]:
    assert isinstance(err, _RowsRejected), err  # failing_alone(catch=_RowsRejected) isolates only these
    return index, f"db_{err.error.sqlstate or 'client'}", one_line(err.error, limit=_WHOLE_LINE)


def _transient_state(err: psycopg.Error) -> bool:
    return err.sqlstate is not None and err.sqlstate[:2] in _TRANSIENT_CLASSES
