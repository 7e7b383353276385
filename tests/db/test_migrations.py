"""Migration 3 upgrades a database in place: rows written under the (topic, partition, offset) keys are kept
with record_index 0, and the new keys take several records of one Kafka message."""

from __future__ import annotations

import psycopg
import pytest

from streamer.db import connect
from streamer.db.migrations import applied_versions, migrate
from testkit.clients import query

pytestmark = pytest.mark.integration

ENTRY = "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, message) VALUES ('raw', 0, %s, %s)"
PREDICTION = (
    "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, model_version, severity) "
    "VALUES ('raw', 0, %s, 'm1', 'low')"
)
LABEL = (
    "INSERT INTO anomaly_labels (kafka_topic, kafka_partition, kafka_offset, is_anomaly, labelled_by) "
    "VALUES ('raw', 0, %s, true, 'test')"
)


def test_upgrade_from_2_keeps_rows_and_keys_take_record_index(db_url):
    with connect(db_url) as conn:
        assert migrate(conn, up_to=2) == [1, 2]
    for offset in (5, 6):
        query(db_url, ENTRY, (offset, f"old {offset}"))
        query(db_url, PREDICTION, (offset,))
    query(db_url, LABEL, (5,))

    with connect(db_url) as conn:
        assert 3 in migrate(conn, up_to=3)  # migration 5 drops the predictions foreign key tested below
        assert 3 in applied_versions(conn)

    assert query(db_url, "SELECT kafka_offset, record_index, message FROM log_entries ORDER BY 1") == [
        (5, 0, "old 5"),
        (6, 0, "old 6"),
    ]
    assert query(db_url, "SELECT kafka_offset, record_index FROM ml_predictions ORDER BY 1") == [(5, 0), (6, 0)]
    assert query(db_url, "SELECT kafka_offset, record_index FROM anomaly_labels") == [(5, 0)]

    # Several records of one message: same coordinates, other record_index.
    entry = (
        "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, record_index, message) "
        "VALUES ('raw', 0, 5, %s, %s)"
    )
    query(db_url, entry, (1, "second record"))
    query(db_url, entry, (2, "third record"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        query(db_url, entry, (1, "the same record again"))
    prediction = (
        "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, record_index, "
        "model_version, severity) VALUES ('raw', 0, 5, %s, %s, 'high')"
    )
    query(db_url, prediction, (1, "m1"))
    query(db_url, prediction, (1, "m2"))  # model_version stays part of the prediction key
    with pytest.raises(psycopg.errors.UniqueViolation):
        query(db_url, prediction, (1, "m1"))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        query(db_url, prediction, (7, "m1"))  # no such record in log_entries
    label = (
        "INSERT INTO anomaly_labels (kafka_topic, kafka_partition, kafka_offset, record_index, is_anomaly, "
        "labelled_by) VALUES ('raw', 0, 5, %s, false, 'test')"
    )
    query(db_url, label, (2,))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        query(db_url, label, (9,))

    # The cascade follows the new key: deleting one record takes its own predictions and label only.
    query(db_url, "DELETE FROM log_entries WHERE kafka_offset = 5 AND record_index = 0")
    assert query(db_url, "SELECT kafka_offset, record_index, model_version FROM ml_predictions ORDER BY 1, 2, 3") == [
        (5, 1, "m1"),
        (5, 1, "m2"),
        (6, 0, "m1"),
    ]
    assert query(db_url, "SELECT kafka_offset, record_index FROM anomaly_labels") == [(5, 2)]


def test_fresh_database_has_the_record_index_keys(migrated_db_url):
    keys = query(
        migrated_db_url,
        """
        SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE contype IN ('p', 'f') AND conrelid::regclass::text IN ('log_entries', 'ml_predictions',
                                                                     'anomaly_labels')""",
    )
    assert all("record_index" in definition for _, definition in keys), keys
    assert len(keys) == 3  # three primary keys; no foreign key (migrations 5 and 7 dropped them, see there)


def test_upgrade_to_8_counts_the_stored_rows_per_hour_and_keeps_only_the_indexes_queries_use(db_url):
    from datetime import UTC, datetime, timedelta

    with connect(db_url) as conn:
        migrate(conn, up_to=7)
    now = datetime.now(UTC)
    stored = [
        (0, now, "api", "low"),
        (1, now, "api", "low"),
        (2, now, None, "high"),
        (3, now - timedelta(hours=2), "db", "low"),
    ]
    for offset, t, service, severity in stored:
        query(
            db_url,
            "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, event_time, message, service) "
            "VALUES ('raw', 0, %s, %s, 'old', %s)",
            (offset, t, service),
        )
        query(
            db_url,
            "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, event_time, model_version, "
            "severity, is_anomaly) VALUES ('raw', 0, %s, %s, 'm1', %s, %s)",
            (offset, t, severity, severity == "high"),
        )
    with connect(db_url) as conn:
        assert migrate(conn) == [8]
    hour = now.replace(minute=0, second=0, microsecond=0)
    assert sorted(
        query(db_url, "SELECT hour, service, severity, model_version, events FROM severity_hours"), key=str
    ) == sorted(
        [
            (hour, "api", "low", "m1", 2),
            (hour, None, "high", "m1", 1),
            (hour - timedelta(hours=2), "db", "low", "m1", 1),
        ],
        key=str,
    )
    indexes = {
        name: definition
        for name, definition in query(
            db_url,
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'ml_predictions'",
        )
    }
    assert set(indexes) == {"ml_predictions_pkey", "ml_predictions_anomalies_time"}
    assert "(event_time DESC) WHERE is_anomaly" in indexes["ml_predictions_anomalies_time"]
