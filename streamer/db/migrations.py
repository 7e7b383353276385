"""Versioned schema migrations. Append a (version, description, sql) to MIGRATIONS to change the schema.

Tables are created unqualified, so the connection's search_path chooses the schema (tests use one schema per
test). migrate() is safe to run from several processes at once: a transaction-scoped advisory lock
serialises them and each version is applied exactly once, recorded in schema_migrations.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "log entries and ML predictions",
        """
CREATE TABLE log_entries (
    kafka_topic     text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    event_time      timestamptz,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    level           text        CHECK (level IN ('DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')),
    message         text        NOT NULL,
    host            text,
    service         text,
    raw             jsonb,
    PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset)
);

CREATE TABLE ml_predictions (
    kafka_topic      text        NOT NULL,
    kafka_partition  integer     NOT NULL,
    kafka_offset     bigint      NOT NULL,
    model_version    text        NOT NULL,
    predicted_level  text        CHECK (predicted_level IN ('DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL')),
    level_confidence real,
    is_anomaly       boolean,
    anomaly_score    real,
    severity         text        CHECK (severity IN ('critical', 'high', 'medium', 'low')),
    predicted_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset, model_version),
    FOREIGN KEY (kafka_topic, kafka_partition, kafka_offset)
        REFERENCES log_entries (kafka_topic, kafka_partition, kafka_offset) ON DELETE CASCADE
);

-- Recent anomalies, severity over time, per-service and time-range queries.
CREATE INDEX ml_predictions_recent_anomalies ON ml_predictions (predicted_at DESC) WHERE is_anomaly;
CREATE INDEX ml_predictions_severity_time ON ml_predictions (severity, predicted_at);
CREATE INDEX log_entries_service_time ON log_entries (service, event_time);
CREATE INDEX log_entries_event_time ON log_entries (event_time);
""",
    ),
    # Human anomaly labels for `streamer train --from-postgres` (docs/rescoring.md). One current label per
    # event: relabelling is an upsert. Kept apart from log_entries so the pipeline's inserts never touch them.
    Migration(
        2,
        "anomaly labels for training from history",
        """
CREATE TABLE anomaly_labels (
    kafka_topic     text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    is_anomaly      boolean     NOT NULL,
    labelled_by     text        NOT NULL,
    labelled_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset),
    FOREIGN KEY (kafka_topic, kafka_partition, kafka_offset)
        REFERENCES log_entries (kafka_topic, kafka_partition, kafka_offset) ON DELETE CASCADE
);
""",
    ),
    # One Kafka message may carry many records (OTLP, a JSON array, NDJSON): the record's index inside its
    # message joins every key. In place: existing rows get 0, which is what a one-record message has.
    Migration(
        3,
        "record_index: many records per Kafka message",
        """
ALTER TABLE ml_predictions DROP CONSTRAINT ml_predictions_kafka_topic_kafka_partition_kafka_offset_fkey;
ALTER TABLE anomaly_labels DROP CONSTRAINT anomaly_labels_kafka_topic_kafka_partition_kafka_offset_fkey;

ALTER TABLE log_entries ADD COLUMN record_index integer NOT NULL DEFAULT 0,
    DROP CONSTRAINT log_entries_pkey,
    ADD CONSTRAINT log_entries_pkey PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset, record_index);

ALTER TABLE ml_predictions ADD COLUMN record_index integer NOT NULL DEFAULT 0,
    DROP CONSTRAINT ml_predictions_pkey,
    ADD CONSTRAINT ml_predictions_pkey
        PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset, record_index, model_version),
    ADD CONSTRAINT ml_predictions_log_entry_fkey FOREIGN KEY (kafka_topic, kafka_partition, kafka_offset, record_index)
        REFERENCES log_entries (kafka_topic, kafka_partition, kafka_offset, record_index) ON DELETE CASCADE;

ALTER TABLE anomaly_labels ADD COLUMN record_index integer NOT NULL DEFAULT 0,
    DROP CONSTRAINT anomaly_labels_pkey,
    ADD CONSTRAINT anomaly_labels_pkey PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset, record_index),
    ADD CONSTRAINT anomaly_labels_log_entry_fkey FOREIGN KEY (kafka_topic, kafka_partition, kafka_offset, record_index)
        REFERENCES log_entries (kafka_topic, kafka_partition, kafka_offset, record_index) ON DELETE CASCADE;
""",
    ),
    # Templates mined from the stream (streamer/templates.py), shared by every member of the group. Counts are
    # upserted in each batch's transaction from the rows it inserted, so a replayed batch counts nothing twice.
    Migration(
        4,
        "log templates and the template each prediction saw",
        """
CREATE TABLE log_templates (
    template_id text        PRIMARY KEY,
    service     text        NOT NULL,
    template    text        NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    count       bigint      NOT NULL
);
CREATE INDEX log_templates_first_seen ON log_templates (first_seen);

ALTER TABLE ml_predictions ADD COLUMN template_id text, ADD COLUMN template_new boolean;
""",
    ),
    # The per-row foreign-key check cost PostgreSQL 5–6 µs of its ~23 µs per stored event and guaranteed
    # nothing the sink does not: a prediction is inserted only in the transaction that inserted (or found) its
    # entry. tests/test_sink.py proves no prediction is ever without its entry. Without ON DELETE CASCADE,
    # deleting history means deleting from both tables (retention drops both tables' partitions).
    Migration(
        5,
        "no per-row foreign-key check on ml_predictions",
        """
ALTER TABLE ml_predictions DROP CONSTRAINT IF EXISTS ml_predictions_log_entry_fkey;
""",
    ),
    # Events per template per hour (streamer.sink, same transaction as log_templates): a surge is a recent
    # rate well above the template's own earlier rate, which lifetime counts alone cannot tell.
    Migration(
        6,
        "hourly template counts, for surging templates",
        """
CREATE TABLE log_template_hours (
    template_id text        NOT NULL,
    hour        timestamptz NOT NULL,
    count       bigint      NOT NULL,
    PRIMARY KEY (template_id, hour)
);
CREATE INDEX log_template_hours_hour ON log_template_hours (hour);
""",
    ),
    # Daily partitions by event time (streamer/partitions.py creates them ahead and drops expired ones), plus a
    # default partition for times far off. The event time joins both keys: it is part of the record (or its
    # Kafka timestamp), so a redelivered event has the same key. ml_predictions carries its entry's event time
    # so retention drops the two tables' partitions together. In place: existing rows are copied into
    # partitions made for the days they cover (the last 400 days with data; older ones go to the default).
    Migration(
        7,
        "daily partitions by event time",
        """
ALTER TABLE anomaly_labels DROP CONSTRAINT IF EXISTS anomaly_labels_log_entry_fkey;
UPDATE log_entries SET event_time = ingested_at WHERE event_time IS NULL;

DROP INDEX log_entries_service_time, log_entries_event_time, ml_predictions_recent_anomalies,
    ml_predictions_severity_time;
ALTER TABLE log_entries RENAME TO log_entries_unpartitioned;
ALTER INDEX log_entries_pkey RENAME TO log_entries_unpartitioned_pkey;
ALTER TABLE ml_predictions RENAME TO ml_predictions_unpartitioned;
ALTER INDEX ml_predictions_pkey RENAME TO ml_predictions_unpartitioned_pkey;

CREATE TABLE log_entries (LIKE log_entries_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (event_time);
ALTER TABLE log_entries ALTER COLUMN event_time SET NOT NULL, ALTER COLUMN event_time SET DEFAULT now(),
    ADD PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset, record_index, event_time);
CREATE TABLE ml_predictions (LIKE ml_predictions_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
    event_time timestamptz NOT NULL DEFAULT now()) PARTITION BY RANGE (event_time);
ALTER TABLE ml_predictions
    ADD PRIMARY KEY (kafka_topic, kafka_partition, kafka_offset, record_index, model_version, event_time);
CREATE TABLE log_entries_default PARTITION OF log_entries DEFAULT;
CREATE TABLE ml_predictions_default PARTITION OF ml_predictions DEFAULT;

-- One day's partition of both tables (UTC days); true when it made one. Idempotent.
CREATE FUNCTION streamer_day_partition(day date) RETURNS boolean LANGUAGE plpgsql AS $f$
DECLARE
    made boolean := false;
    parent text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['log_entries', 'ml_predictions'] LOOP
        IF to_regclass(parent || '_p' || to_char(day, 'YYYYMMDD')) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                           parent || '_p' || to_char(day, 'YYYYMMDD'), parent,
                           day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
            made := true;
        END IF;
    END LOOP;
    RETURN made;
END $f$;

DO $d$
DECLARE
    lo date;
    hi date;
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    SELECT min((event_time AT TIME ZONE 'UTC')::date), max((event_time AT TIME ZONE 'UTC')::date)
        INTO lo, hi FROM log_entries_unpartitioned;
    IF lo IS NOT NULL THEN
        FOR day IN 0 .. (hi - greatest(lo, hi - 400)) LOOP
            PERFORM streamer_day_partition(greatest(lo, hi - 400) + day);
        END LOOP;
    END IF;
    FOR day IN -1 .. 2 LOOP
        PERFORM streamer_day_partition(today + day);
    END LOOP;
END $d$;

INSERT INTO log_entries SELECT * FROM log_entries_unpartitioned;
INSERT INTO ml_predictions
    SELECT p.*, e.event_time FROM ml_predictions_unpartitioned p
    JOIN log_entries_unpartitioned e USING (kafka_topic, kafka_partition, kafka_offset, record_index);
DROP TABLE ml_predictions_unpartitioned, log_entries_unpartitioned;

CREATE INDEX ml_predictions_recent_anomalies ON ml_predictions (predicted_at DESC) WHERE is_anomaly;
CREATE INDEX ml_predictions_severity_time ON ml_predictions (severity, predicted_at);
CREATE INDEX log_entries_service_time ON log_entries (service, event_time);
CREATE INDEX log_entries_event_time ON log_entries (event_time);
""",
    ),
    # The user queries at any size (README "Querying what was stored", bench/growth.py). Severity over time per
    # service counts a day of rows, too many to read per query (0.8 s for the 667 k rows of a day at 20 M
    # stored, 0.5 s even index-only): the sink adds each batch's counts per UTC hour, service, severity and
    # model version to severity_hours, in the batch's transaction and from the rows it inserted, so a
    # redelivered event counts once. Recent anomalies walk a partial index on the partition key, newest first.
    # The two indexes on predicted_at served no user query and cost every insert: gone. The primary keys lead
    # with the event time (the same columns, so the same uniqueness): inserts go to the right edge of each
    # day's index, and the key serves newest-first reads, which made log_entries (event_time) redundant
    # (bench.store: 6 µs less PostgreSQL CPU per event). In place: the counts of stored rows are made from them.
    Migration(
        8,
        "hourly severity counts per service; the anomalies index on event time",
        """
CREATE TABLE severity_hours (
    hour          timestamptz NOT NULL,
    service       text,
    severity      text,
    model_version text        NOT NULL,
    events        bigint      NOT NULL,
    CONSTRAINT severity_hours_key UNIQUE NULLS NOT DISTINCT (hour, service, severity, model_version)
);
INSERT INTO severity_hours (hour, service, severity, model_version, events)
SELECT date_trunc('hour', p.event_time, 'UTC'), e.service, p.severity, p.model_version, count(*)
FROM ml_predictions p
JOIN log_entries e USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
GROUP BY 1, 2, 3, 4;

DROP INDEX ml_predictions_recent_anomalies, ml_predictions_severity_time, log_entries_event_time;
CREATE INDEX ml_predictions_anomalies_time ON ml_predictions (event_time DESC) WHERE is_anomaly;
ALTER TABLE log_entries DROP CONSTRAINT log_entries_pkey,
    ADD PRIMARY KEY (event_time, kafka_topic, kafka_partition, kafka_offset, record_index);
ALTER TABLE ml_predictions DROP CONSTRAINT ml_predictions_pkey,
    ADD PRIMARY KEY (event_time, kafka_topic, kafka_partition, kafka_offset, record_index, model_version);
""",
    ),
)

# Any constant shared by every streamer process; only ours take this lock.
_LOCK_KEY = 0x5354524D  # "STRM"


def latest_version() -> int:
    return MIGRATIONS[-1].version if MIGRATIONS else 0


def applied_versions(conn) -> list[int]:
    """Versions recorded in schema_migrations of the current schema ([] when the table is absent)."""
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            return []
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in cur.fetchall()]


def migrate(conn, up_to: int | None = None) -> list[int]:
    """Apply the migrations this schema lacks (those numbered up to `up_to`, default all), in one transaction;
    return the versions newly applied.

    Commits on success, rolls back everything on failure. The connection must not be in autocommit mode.
    """
    _check_order()
    if conn.autocommit:
        raise ValueError("migrate() needs a connection with autocommit off")
    applied: list[int] = []
    with conn.transaction(), conn.cursor() as cur:
        # Held until this transaction ends: a concurrent migrate() waits, then sees our versions.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute("""
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version     integer PRIMARY KEY,
                    description text NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )""")
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for m in MIGRATIONS:
            if m.version in done or (up_to is not None and m.version > up_to):
                continue
            cur.execute(m.sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)", (m.version, m.description)
            )
            applied.append(m.version)
    conn.commit()
    return applied


def _check_order() -> None:
    versions = [m.version for m in MIGRATIONS]
    if versions != list(range(1, len(versions) + 1)):
        raise AssertionError(f"MIGRATIONS must be numbered 1, 2, 3... in order, got {versions}")
