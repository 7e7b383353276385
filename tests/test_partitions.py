"""Daily partitions (migration 7, streamer/partitions.py): where rows land, retention, and the in-place upgrade."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from streamer.enrich import database_rows
from streamer.errors import ConfigError
from streamer.partitions import PartitionKeeper, maintain, parse_retention
from streamer.sink import PostgresSink
from testkit.clients import query
from tests.test_sink import Columns, event

NOW = datetime.now(UTC)


def events_on(days_ago: list[int], start: int = 0):
    out = []
    for i, ago in enumerate(days_ago):
        e = event(start + i)
        e.event_time = NOW - timedelta(days=ago)
        out.append(e)
    return out


def where_rows_are(url: str, table: str) -> dict[str, int]:
    return dict(query(url, f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1"))


def test_retention_text():
    assert parse_retention("30d") == timedelta(days=30)
    assert parse_retention(" 12h ") == timedelta(hours=12)
    assert parse_retention("2w") == timedelta(weeks=2)
    assert parse_retention("") is None and parse_retention("0") is None and parse_retention(None) is None
    with pytest.raises(ConfigError, match="STREAMER_RETENTION='30 days'"):
        parse_retention("30 days")


def test_rows_land_in_their_days_partition_and_far_off_times_in_the_default(migrated_db_url):
    sink = PostgresSink(migrated_db_url)
    batch = events_on([0, 0, 1, 900])
    assert sink.write(database_rows(batch, Columns(4))) == []
    assert sink.write(database_rows(batch, Columns(4))) == []  # redelivered: the same keys, no new row
    sink.close()
    day = lambda ago: f"_p{(NOW - timedelta(days=ago)).date():%Y%m%d}"  # noqa: E731
    assert where_rows_are(migrated_db_url, "log_entries") == {
        f"log_entries{day(0)}": 2,
        f"log_entries{day(1)}": 1,
        "log_entries_default": 1,
    }
    assert where_rows_are(migrated_db_url, "ml_predictions") == {
        f"ml_predictions{day(0)}": 2,
        f"ml_predictions{day(1)}": 1,
        "ml_predictions_default": 1,
    }


def test_retention_drops_whole_days_of_both_tables_while_ingest_goes_on(migrated_db_url):
    with psycopg.connect(migrated_db_url, autocommit=True) as conn:
        for ago in range(2, 8):  # a week of history: its days' partitions first
            conn.execute("SELECT streamer_day_partition(%s)", ((NOW - timedelta(days=ago)).date(),))
    sink = PostgresSink(migrated_db_url)
    history = events_on([ago for ago in range(0, 8) for _ in range(500)] + [40] * 10)
    assert sink.write(database_rows(history, Columns(len(history)))) == []

    # A writer keeps storing today's events while retention runs.
    stop, written, errors = threading.Event(), [0], []

    def ingest():
        n = 100_000
        while not stop.is_set():
            batch = events_on([0] * 200, start=n)
            try:
                assert sink.write(database_rows(batch, Columns(200))) == []
                written[0] += 200
            except Exception as err:  # noqa: BLE001 (reported by the assertion below)
                errors.append(err)
            n += 200

    writer = threading.Thread(target=ingest)
    writer.start()
    time.sleep(0.5)
    with psycopg.connect(migrated_db_url, autocommit=True) as conn:
        started = time.monotonic()
        done = maintain(conn, timedelta(days=3))
        took = time.monotonic() - started
    before = written[0]
    time.sleep(0.5)
    stop.set()
    writer.join()
    sink.close()

    assert not errors and not done.skipped, (errors, done.skipped)
    assert written[0] > before  # ingest went on after the drop
    # Days ended before now - 3 days: 4..7 days ago (4 partitions per table) and the default's 40-day-old rows.
    assert len(done.dropped) == 8 and done.deleted_from_default == 20
    assert took < 1.0, f"retention took {took:.2f}s"
    oldest = query(migrated_db_url, "SELECT min(event_time) FROM log_entries")[0][0]
    assert oldest >= NOW - timedelta(days=4)
    entries, predictions = (
        query(migrated_db_url, f"SELECT count(*) FROM {t}")[0][0] for t in ("log_entries", "ml_predictions")
    )
    assert entries == predictions == 4 * 500 + written[0]
    # The expired hours of severity_hours went with their days: what is left counts exactly the rows left.
    assert done.deleted_hours > 0
    assert query(migrated_db_url, "SELECT sum(events) FROM severity_hours")[0][0] == entries


def test_the_keeper_makes_days_ahead_and_only_one_member_works_at_a_time(migrated_db_url):
    keeper = PartitionKeeper(migrated_db_url, retention=None)
    with psycopg.connect(migrated_db_url, autocommit=True) as other:
        other.execute("SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (0x5354524E,))
        assert keeper.run_once() is None  # another member holds the lock
    done = keeper.run_once()
    assert done is not None and not done.skipped
    ahead = (NOW + timedelta(days=3)).date()
    assert query(migrated_db_url, "SELECT to_regclass(%s) IS NOT NULL", (f"log_entries_p{ahead:%Y%m%d}",)) == [(True,)]


def test_upgrade_partitions_an_existing_database_in_place(db_url):
    from streamer.db import connect
    from streamer.db.migrations import migrate

    with connect(db_url) as conn:
        migrate(conn, up_to=6)
    old = [(0, NOW - timedelta(days=2)), (1, NOW - timedelta(days=2)), (2, NOW), (3, None)]
    for offset, t in old:
        query(
            db_url,
            "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, event_time, message) "
            "VALUES ('raw', 0, %s, %s, 'old')",
            (offset, t),
        )
        query(
            db_url,
            "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, model_version, "
            "severity) VALUES ('raw', 0, %s, 'm1', 'low')",
            (offset,),
        )
    query(
        db_url,
        "INSERT INTO anomaly_labels (kafka_topic, kafka_partition, kafka_offset, is_anomaly, labelled_by) "
        "VALUES ('raw', 0, 1, true, 'test')",
    )
    with connect(db_url) as conn:
        assert 7 in migrate(conn)
    assert query(db_url, "SELECT relkind FROM pg_class WHERE oid = 'log_entries'::regclass") == [("p",)]
    assert query(db_url, "SELECT count(*), count(event_time) FROM log_entries") == [(4, 4)]
    # Each prediction carries its entry's event time; the row without one got the time it was stored.
    assert query(
        db_url,
        "SELECT count(*) FROM ml_predictions p JOIN log_entries e "
        "USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)",
    ) == [(4,)]
    two_days_ago = f"log_entries_p{(NOW - timedelta(days=2)).date():%Y%m%d}"
    assert where_rows_are(db_url, "log_entries")[two_days_ago] == 2
    assert query(db_url, "SELECT count(*) FROM anomaly_labels") == [(1,)]
