"""Training from the stored history (streamer.ml.history, `streamer train --from-postgres`) against the real
database: chronological rows with their labels, a clear refusal on too little data, a loadable model."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from testkit.clients import query

pytestmark = pytest.mark.integration

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def store(url: str, rows: list[dict], topic: str = "logs.raw") -> None:
    """Insert rows into log_entries as the pipeline would (offsets in insertion order, 3 partitions)."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, event_time, level, message, "
            "service) VALUES (%s, %s, %s, coalesce(%s, now()), %s, %s, %s)",  # no time: when stored, as run does
            [
                (topic, i % 3, i // 3, r.get("time"), r.get("level"), r["message"], r.get("service", "shop"))
                for i, r in enumerate(rows)
            ],
        )


def label(url: str, coords: list[tuple[int, int]], is_anomaly: bool = True, topic: str = "logs.raw") -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.cursor().executemany(
            "INSERT INTO anomaly_labels (kafka_topic, kafka_partition, kafka_offset, is_anomaly, labelled_by) "
            "VALUES (%s, %s, %s, %s, 'test')",
            [(topic, p, o, is_anomaly) for p, o in coords],
        )


def train_cli(url: str, models_dir, *args: str) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(STREAMER_DATABASE_URL=url, STREAMER_MODELS_DIR=str(models_dir))
    return subprocess.run(
        [sys.executable, "-m", "streamer", "train", "--from-postgres", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_read_history_is_chronological_with_labels_and_filters(migrated_db_url):
    from streamer.db import connect
    from streamer.ml.history import read_history

    # Stored out of time order; row 4 has no event time (its ingestion time, now, orders it last).
    times = [T0 + timedelta(seconds=s) for s in (30, 10, 20, 10)] + [None]
    store(
        migrated_db_url,
        [
            {"message": f"m{i}", "level": "INFO" if i % 2 else None, "time": t, "service": "api" if i == 2 else "shop"}
            for i, t in enumerate(times)
        ],
    )
    label(migrated_db_url, [(1, 0)])  # row 1 = partition 1, offset 0
    with connect(migrated_db_url) as conn:
        h = read_history(conn)
        assert h.messages == ["m3", "m1", "m2", "m0", "m4"]  # by time, ties by (partition, offset)
        assert h.levels == ["INFO", "INFO", None, None, None]
        assert h.is_anomaly == [None, True, None, None, None] and h.marked == 1 and not h.supervised_anomaly
        assert h.timestamps[0] == "2024-06-01T12:00:10.000000Z"
        assert read_history(conn, unmarked_normal=True).is_anomaly == [False, True, False, False, False]
        assert read_history(conn, unmarked_normal=True).supervised_anomaly
        part = read_history(conn, since=T0 + timedelta(seconds=15), until=T0 + timedelta(seconds=30))
        assert part.messages == ["m2"]
        assert read_history(conn, service="api").messages == ["m2"]


def test_too_little_labelled_data_is_refused_in_one_line(migrated_db_url, tmp_path):
    rows = [{"message": f"user {i} logged in", "level": "INFO" if i % 2 else "WARN", "time": T0} for i in range(150)]
    rows += [{"message": f"no level {i}", "time": T0} for i in range(500)]
    store(migrated_db_url, rows)
    proc = train_cli(migrated_db_url, tmp_path / "models")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        "streamer train: too little labelled data: 150 stored events with a declared level "
        "(of 650 selected), need at least 200; widen --since/--until/--service or ingest more\n"
    )

    store(
        migrated_db_url,
        [{"message": f"ok {i}", "level": "INFO", "time": T0, "service": "other"} for i in range(300)],
        topic="other",
    )
    proc = train_cli(migrated_db_url, tmp_path / "models", "--since", "2024-06-01T12:00:00Z", "--service", "shop")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "too little labelled data: 150" in proc.stderr
    query(migrated_db_url, "DELETE FROM log_entries WHERE kafka_topic = 'logs.raw'")
    proc = train_cli(migrated_db_url, tmp_path / "models")
    assert proc.returncode == 2
    assert "every one of the 300 events with a declared level is INFO" in proc.stderr
    assert not (tmp_path / "models-versions").exists() or not any((tmp_path / "models-versions").iterdir())


def test_enough_history_trains_a_loadable_new_version(migrated_db_url, tmp_path):
    from streamer.levels import normalise
    from streamer.ml.artifacts import load_model
    from streamer.ml.corpus import generate

    events = generate(1500, seed=5)
    store(
        migrated_db_url,
        [
            {
                "message": e["message"],
                "level": normalise(e.get("log.level")),
                "time": datetime.fromisoformat(e["@timestamp"]),
                "service": e["service.name"],
            }
            for e in events
        ],
    )
    label(migrated_db_url, [(i % 3, i // 3) for i, e in enumerate(events) if e["labels"]["is_anomaly"]])
    proc = train_cli(migrated_db_url, tmp_path / "models", "--unmarked-normal", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert "anomaly detector supervised" in proc.stdout
    versions = [p for p in (tmp_path / "models-versions").iterdir() if not p.name.startswith(".")]
    assert len(versions) == 1 and versions[0].name.startswith("m-")
    meta, objects = load_model(versions[0])
    assert meta["model_version"] == versions[0].name and len(objects) == 3
    assert meta["training_data"]["rows"] == 1500 and meta["training_data"]["order"] == "timestamps"
    assert meta["training_data"]["anomaly_labels"] is True
    assert meta["training_data"]["source"].startswith("PostgreSQL log_entries")
    assert meta["metrics"]["level"]["macro_f1"] > 0.5
    assert not (tmp_path / "models").exists(), "training from history must not replace the default model"


def test_labels_belong_to_one_record_of_a_multi_record_message(migrated_db_url):
    from streamer.db import connect
    from streamer.ml.history import read_history

    # One Kafka message (offset 4) holding three records with the same time; only record 1 is labelled.
    query(
        migrated_db_url,
        "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, record_index, event_time, message) "
        "SELECT 'logs.raw', 0, 4, i, %s, 'record ' || i FROM generate_series(2, 0, -1) AS i",
        (T0,),
    )
    query(
        migrated_db_url,
        "INSERT INTO anomaly_labels (kafka_topic, kafka_partition, kafka_offset, record_index, is_anomaly, "
        "labelled_by) VALUES ('logs.raw', 0, 4, 1, true, 'test')",
    )
    with connect(migrated_db_url) as conn:
        h = read_history(conn)
    assert h.messages == ["record 0", "record 1", "record 2"]
    assert h.is_anomaly == [None, True, None]
