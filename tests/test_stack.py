"""Smoke tests of the stack itself: the real broker, the real database, migrations and `streamer init`."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from streamer.db import connect
from streamer.db.migrations import MIGRATIONS, applied_versions, latest_version, migrate
from testkit.clients import consume_all, produce, query

pytestmark = pytest.mark.integration


def test_produce_consume_round_trip(kafka_bootstrap, topics):
    values = [{"n": i, "message": f"event {i}"} for i in range(100)]
    coords = produce(
        kafka_bootstrap, topics.raw, values, keys=[f"k{i % 7}" for i in range(100)], headers=[("source", b"test")]
    )
    assert len(set(coords)) == 100

    got = consume_all(kafka_bootstrap, topics.raw, expected=100)

    assert sorted(r.json()["n"] for r in got) == list(range(100))
    assert {r.topic for r in got} == {topics.raw}
    assert all(r.header("source") == b"test" and r.timestamp for r in got)
    # Same key, same partition: ordering per key holds.
    by_key: dict[bytes, set[int]] = {}
    for r in got:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_consume_all_reads_to_end_without_expected(kafka_bootstrap, topics):
    assert consume_all(kafka_bootstrap, topics.deadletter) == []
    produce(kafka_bootstrap, topics.deadletter, [b"a", b"b"], partition=0)
    assert [r.value for r in consume_all(kafka_bootstrap, topics.deadletter)] == [b"a", b"b"]


def test_topics_have_the_partitions_asked_for(kafka_bootstrap, topics):
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert [len(md.topics[n].partitions) for n in topics.names] == [6, 6, 1]


def test_sasl_listener_accepts_streamer_and_refuses_a_wrong_password(kafka_sasl_config, topics):
    produce(kafka_sasl_config["bootstrap.servers"], topics.deadletter, [b"over sasl"], config=kafka_sasl_config)
    assert [r.value for r in consume_all("", topics.deadletter, config=kafka_sasl_config)] == [b"over sasl"]

    wrong = {**kafka_sasl_config, "sasl.password": "not-" + kafka_sasl_config["sasl.password"]}
    with pytest.raises(AssertionError):
        produce(wrong["bootstrap.servers"], topics.deadletter, [b"x"], config=wrong, timeout=2)


def test_db_url_is_an_empty_schema_of_its_own(db_url):
    schema = query(db_url, "select current_schema()")[0][0]
    assert schema.startswith("t_")
    assert query(db_url, "select count(*) from pg_tables where schemaname = current_schema()") == [(0,)]


def test_migrate_twice_is_a_no_op(db_url):
    with connect(db_url) as conn:
        assert migrate(conn) == [m.version for m in MIGRATIONS]
        assert migrate(conn) == []
        assert applied_versions(conn) == [m.version for m in MIGRATIONS]
    tables = {row[0] for row in query(db_url, "select tablename from pg_tables where schemaname = current_schema()")}
    assert {"log_entries", "ml_predictions", "schema_migrations"} <= tables
    indexes = {row[0] for row in query(db_url, "select indexname from pg_indexes where schemaname = current_schema()")}
    assert {
        "ml_predictions_anomalies_time",
        "log_entries_service_time",
    } <= indexes


def test_concurrent_migrations_apply_each_version_once(db_url):
    import threading

    results: list[list[int]] = []
    errors: list[BaseException] = []

    def worker():
        try:
            with connect(db_url) as conn:
                results.append(migrate(conn))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(results, key=len) == [[], [], [], [m.version for m in MIGRATIONS]]
    assert query(db_url, "select count(*) from schema_migrations") == [(latest_version(),)]


def test_schema_enforces_levels_severities_and_keys(migrated_db_url):
    import psycopg

    # The key includes the event time (migration 7 partitions by it): one fixed time, as a record carries.
    insert = (
        "insert into log_entries (kafka_topic, kafka_partition, kafka_offset, event_time, level, message) "
        "values ('t', 0, %s, '2026-01-01T00:00:00Z', %s, 'm')"
    )
    query(migrated_db_url, insert, (1, "WARN"))
    query(migrated_db_url, insert, (2, None))
    with pytest.raises(psycopg.errors.CheckViolation):
        query(migrated_db_url, insert, (3, "warning"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        query(migrated_db_url, insert, (1, "INFO"))
    pred = (
        "insert into ml_predictions (kafka_topic, kafka_partition, kafka_offset, event_time, model_version, "
        "severity) values ('t', 0, %s, '2026-01-01T00:00:00Z', 'v1', %s)"
    )
    query(migrated_db_url, pred, (1, "high"))
    with pytest.raises(psycopg.errors.CheckViolation):
        query(migrated_db_url, pred, (2, "urgent"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        query(migrated_db_url, pred, (1, "low"))
    # No foreign key since migration 5: tests/test_sink.py proves no prediction is stored without its entry.


def test_connect_failure_is_one_redacted_line():
    from streamer.errors import StreamerError

    with pytest.raises(StreamerError) as info:
        connect("postgresql://streamer:hunter2@127.0.0.1:1/streamer", connect_timeout=2)
    assert "hunter2" not in str(info.value) and "***" in str(info.value) and "\n" not in str(info.value)


def _init(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamer", "init", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_streamer_init_twice_is_a_no_op(kafka_bootstrap, db_url, request):
    import os

    from confluent_kafka.admin import AdminClient

    from streamer.kafka_admin import delete_topics

    base = f"t-init-{uuid.uuid4().hex[:8]}"
    names = [f"{base}.raw", f"{base}.scored", f"{base}.deadletter"]
    request.addfinalizer(lambda: delete_topics({"bootstrap.servers": kafka_bootstrap}, names))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(STREAMER_BOOTSTRAP_SERVERS=kafka_bootstrap, STREAMER_DATABASE_URL=db_url)
    flags = ["--input-topic", names[0], "--output-topic", names[1], "--dlq-topic", names[2]]

    first = _init(*flags, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count(": created") == 3
    assert f"schema version {latest_version()}" in first.stdout and "applied migration" in first.stdout

    second = _init(*flags, env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count(": exists") == 3 and "up to date" in second.stdout

    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert [len(md.topics[n].partitions) for n in names] == [6, 6, 1]
    assert query(db_url, "select version from schema_migrations order by 1") == [(m.version,) for m in MIGRATIONS]


def test_streamer_init_unreachable_broker_is_one_line(db_url):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env.update(STREAMER_BOOTSTRAP_SERVERS="127.0.0.1:1", STREAMER_DATABASE_URL=db_url)
    res = _init("--timeout", "3", "--input-topic", "t-never.raw", env=env)
    assert res.returncode == 2
    assert res.stderr.strip().startswith("streamer init: ") and "Traceback" not in res.stderr
