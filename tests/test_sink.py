"""PostgresSink against the real database: one row per event however often it is written, and a poison row
is isolated while the rest of its batch lands."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

from streamer.decode import DeadLetter, Event
from streamer.enrich import database_rows
from streamer.sink import PostgresSink
from testkit.clients import query

pytestmark = pytest.mark.integration


class Columns:
    """What Scorer.score returns, for n events, without a model."""

    def __init__(self, n: int, version: str = "v-test"):
        self.predicted_level = ["INFO"] * n
        self.level_confidence = np.full(n, 0.9, dtype=np.float32)
        self.is_anomaly = np.zeros(n, dtype=bool)
        self.anomaly_score = np.full(n, 0.1, dtype=np.float32)
        self.severity = ["low"] * n
        self.model_version = version


def event(offset: int, message: str = "ok", raw_json: str | None = None) -> Event:
    return Event(
        "logs.raw",
        0,
        offset,
        None,
        None,
        message,
        datetime(2024, 1, 1, tzinfo=UTC),
        "INFO",
        "h",
        "svc",
        raw_json if raw_json is not None else '{"message": "ok"}',
        True,
    )


def counts(url: str) -> tuple[int, int]:
    return (
        query(url, "select count(*) from log_entries")[0][0],
        query(url, "select count(*) from ml_predictions")[0][0],
    )


def test_redelivered_batch_adds_no_rows(migrated_db_url):
    sink = PostgresSink(migrated_db_url)
    events = [event(i) for i in range(100)]
    assert sink.write(database_rows(events, Columns(100))) == []
    assert sink.write(database_rows(events[50:], Columns(50))) == []
    assert counts(migrated_db_url) == (100, 100)
    # A second model version adds predictions, not entries.
    assert sink.write(database_rows(events, Columns(100, "v-two"))) == []
    assert counts(migrated_db_url) == (100, 200)
    sink.close()


_HOURS_FROM_ROWS = """
    SELECT date_trunc('hour', p.event_time, 'UTC'), e.service, p.severity, p.model_version, count(*)
    FROM ml_predictions p
    JOIN log_entries e USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"""
_HOURS = "SELECT hour, service, severity, model_version, events FROM severity_hours ORDER BY 1, 2, 3, 4"


def test_a_partly_stored_batch_lands_its_new_rows_and_every_event_is_counted_once(migrated_db_url):
    # A fresh batch is copied straight into the tables; one with stored rows fails that COPY on the primary key
    # and goes the staged way, which skips them. severity_hours counts exactly the rows stored, per hour.
    sink = PostgresSink(migrated_db_url)
    events = [event(i) for i in range(150)]
    for i, e in enumerate(events):
        e.event_time = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=7 * i)
        e.service = f"svc-{i % 3}"
    assert sink.write(database_rows(events[:100], Columns(100))) == []
    assert sink.write(database_rows(events[50:], Columns(100))) == []  # 50..99 redelivered, 100..149 new
    assert counts(migrated_db_url) == (150, 150)
    assert sink.write(database_rows(events, Columns(150, "v-two"))) == []  # a replay: new predictions only
    assert sink.write(database_rows(events[140:], Columns(10, "v-two"))) == []
    sink.close()
    assert counts(migrated_db_url) == (150, 300)
    hours = query(migrated_db_url, _HOURS)
    assert hours == query(migrated_db_url, _HOURS_FROM_ROWS)
    assert sum(n for *_, n in hours) == 300 and len({h for h, *_ in hours}) > 10


def test_poison_rows_are_isolated_and_the_rest_lands(migrated_db_url):
    sink = PostgresSink(migrated_db_url)
    events = [event(i) for i in range(1000)]
    events[317] = event(317, message="NUL \x00 byte")  # text cannot hold NUL
    events[808] = event(808, raw_json='{"message": "\\u0000"}')  # jsonb cannot hold \u0000
    rejected = sink.write(database_rows(events, Columns(1000)))
    assert sorted(i for i, _, _ in rejected) == [317, 808]
    classes = {i: cls for i, cls, _ in rejected}
    assert classes[808].startswith("db_22") and all(reason for _, _, reason in rejected)
    assert counts(migrated_db_url) == (998, 998)
    stored = {r[0] for r in query(migrated_db_url, "select kafka_offset from log_entries")}
    assert stored == set(range(1000)) - {317, 808}
    sink.close()


def test_values_reach_the_tables_unchanged(migrated_db_url):
    # Binary COPY: no escaping, so what COPY's text format would escape must arrive byte for byte.
    tricky = [
        "tab\there",
        "new\nline\r\n",
        "back\\slash \\N",
        "\\.",
        "emoji 🚀 ünïcödé ١٢٣",
        "x" * 100_000,
        "ctrl \x01\x1b[0m",
    ]
    events = [
        Event(
            "logs.raw",
            3,
            i,
            None,
            None,
            m,
            datetime(1999, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
            None,
            None if i % 2 else "h\tost",
            "svc",
            orjson.dumps({"message": m, "n": [i, None]}).decode(),
            True,
        )
        for i, m in enumerate(tricky)
    ]
    cols = Columns(len(events))
    cols.level_confidence[0], cols.anomaly_score[1], cols.is_anomaly[2] = 0.123456, 1.0, True
    sink = PostgresSink(migrated_db_url)
    assert sink.write(database_rows(events, cols)) == []
    sink.close()
    rows = query(
        migrated_db_url,
        "select e.kafka_offset, e.message, e.event_time, e.level, e.host, e.raw, "
        "p.level_confidence, p.anomaly_score, p.is_anomaly from log_entries e join ml_predictions p "
        "using (kafka_topic, kafka_partition, kafka_offset) order by 1",
    )
    assert [r[1] for r in rows] == tricky
    assert {r[2] for r in rows} == {events[0].event_time} and {r[3] for r in rows} == {None}
    assert [r[4] for r in rows] == [e.host for e in events]
    assert [r[5] for r in rows] == [orjson.loads(e.raw_json) for e in events]  # jsonb, parsed by the server
    assert rows[0][6] == pytest.approx(0.123456, rel=1e-6) and rows[1][7] == 1.0
    assert [r[8] for r in rows] == [i == 2 for i in range(len(tricky))]


def test_unreachable_database_is_transient(migrated_db_url):
    from streamer.errors import TransientError

    sink = PostgresSink("postgresql://streamer:streamer@127.0.0.1:1/streamer", connect_timeout=2)
    with pytest.raises(TransientError) as err:
        sink.write(database_rows([event(0)], Columns(1)))
    assert "streamer:streamer" not in str(err.value)


def test_kafka_sink_dead_letters_keep_bytes_or_coordinates(kafka_bootstrap, topics):
    from streamer.decode import DeadLetter
    from streamer.sink import Deliveries, KafkaSink
    from testkit.clients import consume_all

    sink = KafkaSink(
        {"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4000}, topics.scored, topics.deadletter
    )
    small = DeadLetter("raw", 1, 7, b"k", [("trace", b"1")], b"\xff\xfe", "invalid_utf8", "not UTF-8", "decode")
    huge = DeadLetter("raw", 2, 9, None, None, b"x" * 10_000, "too_large", "10000 bytes", "decode")
    deliveries = Deliveries()
    sink.publish_dead_letters([small, huge], deliveries)
    sink.flush(30, deliveries)
    assert deliveries.failures == 0
    got = {r.header("source.offset"): r for r in consume_all(kafka_bootstrap, topics.deadletter, expected=2)}
    assert got[b"7"].value == b"\xff\xfe" and got[b"7"].key == b"k" and got[b"7"].header("trace") == b"1"
    assert got[b"7"].header("deadletter.error_class") == b"invalid_utf8"
    assert got[b"7"].header("deadletter.stage") == b"decode" and got[b"7"].header("source.partition") == b"1"
    assert got[b"9"].value is None and got[b"9"].header("deadletter.value_omitted")
    assert got[b"9"].header("deadletter.error_class") == b"too_large"


def test_kafka_sink_flush_fails_when_a_record_is_refused(kafka_bootstrap, topics):
    from streamer.errors import TransientError
    from streamer.sink import Deliveries, KafkaSink

    sink = KafkaSink(
        {"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 2000},
        f"{topics.scored}-missing",
        topics.deadletter,
    )  # topics are never auto-created
    ok, failing = Deliveries(), Deliveries()
    sink.publish_dead_letters([DeadLetter("raw", 0, 1, None, None, b"x", "empty", "", "decode")], ok)
    sink.publish_scored([(None, b'{"message": "m"}', [])], failing)
    with pytest.raises(TransientError, match="refused 1 records"):
        sink.flush(30, failing)
    sink.flush(30, ok)  # another batch's records all arrived: its flush succeeds


def test_records_of_one_message_are_rows_of_their_own_and_redelivery_adds_none(migrated_db_url):
    from dataclasses import replace

    sink = PostgresSink(migrated_db_url)
    records = [replace(event(5, message=f"record {i}"), record_index=i) for i in range(3)] + [event(6)]
    assert sink.write(database_rows(records, Columns(4))) == []
    assert sink.write(database_rows(records[1:], Columns(3))) == []  # redelivered: the keys take record_index
    assert counts(migrated_db_url) == (4, 4)
    assert sink.write(database_rows(records, Columns(4, "v-two"))) == []
    assert counts(migrated_db_url) == (4, 8)
    assert query(migrated_db_url, "select kafka_offset, record_index, message from log_entries order by 1, 2") == [
        (5, 0, "record 0"),
        (5, 1, "record 1"),
        (5, 2, "record 2"),
        (6, 0, "ok"),
    ]
    sink.close()


def _unique_text(n: int, seed: int = 1) -> str:
    import random

    rng = random.Random(seed)  # incompressible, so PostgreSQL cannot shrink it below the index row limit
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


@pytest.mark.parametrize(
    "bad, sqlstate_class",
    [
        (lambda e: replace(e, service=_unique_text(3000)), "54"),  # index row too big: OperationalError in psycopg
        (lambda e: replace(e, message="NUL \x00 byte"), "22"),  # text cannot hold NUL (22021)
        (lambda e: replace(e, raw_json='{"message": "\\u0000"}'), "22"),  # jsonb cannot hold \u0000
        (lambda e: replace(e, service=_unique_text(300)), None),  # a long but fine service: control
    ],
)
def test_each_class_of_data_error_is_isolated_not_retried(migrated_db_url, bad, sqlstate_class):
    sink = PostgresSink(migrated_db_url)
    events = [event(i) for i in range(200)]
    events[123] = bad(events[123])
    rejected = sink.write(database_rows(events, Columns(200)))
    if sqlstate_class is None:
        assert rejected == [] and counts(migrated_db_url) == (200, 200)
    else:
        assert [i for i, _, _ in rejected] == [123]
        assert rejected[0][1] == f"db_{sqlstate_class}" or rejected[0][1].startswith(f"db_{sqlstate_class}")
        assert counts(migrated_db_url) == (199, 199)
    sink.close()


def test_an_integrity_violation_is_isolated(migrated_db_url):
    # 23: a row with no topic (NOT NULL).
    sink = PostgresSink(migrated_db_url)
    events = [event(i) for i in range(50)]
    rows = database_rows(events, Columns(50))
    rows[7] = (None, *rows[7][1:])  # NOT NULL kafka_topic: SQLSTATE 23502
    rejected = sink.write(rows)
    assert [(i, c) for i, c, _ in rejected] == [(7, "db_23502")]
    assert counts(migrated_db_url) == (49, 49)
    sink.close()


def test_a_table_locked_by_another_session_is_a_bounded_transient_error_naming_the_blocker(
    migrated_db_url, monkeypatch
):
    import psycopg

    from streamer import sink as sink_module
    from streamer.errors import TransientError

    monkeypatch.setattr(sink_module, "LOCK_TIMEOUT_MS", 500)
    blocker = psycopg.connect(migrated_db_url)
    blocker.execute("LOCK TABLE log_entries IN ACCESS EXCLUSIVE MODE")  # held until rollback
    sink = PostgresSink(migrated_db_url)
    try:
        with pytest.raises(TransientError, match=r"lock timeout.*blocked by pid \d+ holding AccessExclusiveLock"):
            sink.write(database_rows([event(1)], Columns(1)))
    finally:
        blocker.rollback()
        blocker.close()
    assert sink.write(database_rows([event(1)], Columns(1))) == []  # released: the same batch lands
    assert counts(migrated_db_url) == (1, 1)
    sink.close()


def test_a_dead_letter_the_broker_refuses_for_its_size_goes_out_truncated(kafka_bootstrap, topics):
    # Issue 11 row 4: a dead-letter topic with max.message.bytes 100 KB and a 1 MB malformed record used to be
    # retried forever. Now the dead letter is sent again, truncated, with the original size and digest.
    import hashlib
    import random

    from confluent_kafka.admin import AdminClient, NewTopic

    from streamer.sink import TRUNCATED_BYTES, Deliveries, KafkaSink
    from testkit.clients import consume_all

    small_dlq = f"{topics.deadletter}-small"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(small_dlq, 1, 1, config={"max.message.bytes": "100000"})])[small_dlq].result(30)
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap}, topics.scored, small_dlq)
    value = b"{" + random.Random(5).randbytes(1_000_000)  # incompressible: lz4 would shrink a run of x's
    deliveries = Deliveries()
    sink.publish_dead_letters(
        [DeadLetter("raw", 0, 42, b"k", None, value, "malformed_json", "bad", "decode")], deliveries
    )
    sink.flush(30, deliveries)  # used to raise TransientError("Kafka refused 1 records") on every retry
    [got] = consume_all(kafka_bootstrap, small_dlq, expected=1)
    assert got.value == value[:TRUNCATED_BYTES] and got.key == b"k"
    assert got.header("deadletter.truncated") == b"true"
    assert got.header("deadletter.original_size") == b"1000001"
    assert got.header("deadletter.original_sha256") == hashlib.sha256(value).hexdigest().encode()
    assert got.header("source.offset") == b"42" and got.header("deadletter.error_class") == b"malformed_json"


_ORPHANS = (
    "SELECT count(*) FROM ml_predictions p LEFT JOIN log_entries e "
    "USING (kafka_topic, kafka_partition, kafka_offset, record_index) WHERE e.kafka_topic IS NULL"
)


def test_no_prediction_is_ever_stored_without_its_entry(migrated_db_url):
    # Migration 5 dropped the foreign key that checked this per row; the sink's one transaction per batch must
    # keep it true through redelivery, poison rows and a second model version.
    assert not query(
        migrated_db_url, "SELECT 1 FROM pg_constraint WHERE contype = 'f' AND conrelid = 'ml_predictions'::regclass"
    )
    sink = PostgresSink(migrated_db_url)
    events = [event(i) for i in range(300)]
    events[42] = event(42, message="NUL \x00 byte")
    assert [i for i, _, _ in sink.write(database_rows(events, Columns(300)))] == [42]
    sink.write(database_rows(events[100:], Columns(200)))  # redelivered, poison row included
    sink.write(database_rows(events, Columns(300, "v-two")))
    sink.close()
    assert counts(migrated_db_url) == (299, 598)
    assert query(migrated_db_url, _ORPHANS) == [(0,)]
    assert query(migrated_db_url, _HOURS) == query(migrated_db_url, _HOURS_FROM_ROWS)
