"""What the sinks write: logs.scored records keep the event byte for byte and add the `streamer` member."""

import numpy as np
import orjson

from streamer.decode import Decoder
from streamer.enrich import database_rows, scored_records


class Columns:
    def __init__(self, n):
        self.predicted_level = ["ERROR"] * n
        self.level_confidence = np.full(n, 0.876543, dtype=np.float32)
        self.is_anomaly = np.ones(n, dtype=bool)
        self.anomaly_score = np.full(n, 0.5, dtype=np.float32)
        self.severity = ["critical"] * n
        self.model_version = "m-1"


def decoded(*values):
    d = Decoder()
    return [
        item
        for i, v in enumerate(values)
        for item in d.decode(v, topic="raw", partition=2, offset=10 + i, key=b"key", headers=[("trace", b"t1")])
    ]


def test_scored_record_is_the_event_plus_streamer():
    inputs = [
        b'{"message": "disk full", "n": 1.50, "nested": {"a": [1, 2]}}  \n',
        b"2024-01-01 00:00:00 ERROR plain line",
        b'{"message": "has its own", "streamer": {"old": true}}',
    ]
    events = decoded(*inputs)
    records = list(scored_records(events, Columns(3)))
    expected = {
        "predicted_level": "ERROR",
        "level_confidence": 0.8765,
        "is_anomaly": True,
        "anomaly_score": 0.5,
        "severity": "critical",
        "model_version": "m-1",
    }
    for i, (event, (key, value, headers)) in enumerate(zip(events, records)):
        body = orjson.loads(value)
        assert body["streamer"] == {
            **expected,
            "level_source": event.level_source,
            "source": {"topic": "raw", "partition": 2, "offset": 10 + i, "record_index": 0},
        }
        assert {k: v for k, v in body.items() if k != "streamer"} == {
            k: v for k, v in event.raw.items() if k != "streamer"
        }
        assert key == b"key"
        assert headers == [
            ("trace", b"t1"),
            ("source.topic", b"raw"),
            ("source.partition", b"2"),
            ("source.offset", str(10 + i).encode()),
        ]
    assert [orjson.loads(v)["streamer"]["level_source"] for _, v, _ in records] == ["none", "line", "none"]
    # JSON input is kept byte for byte (1.50 stays 1.50), only the member is added.
    assert records[0][1].startswith(b'{"message": "disk full", "n": 1.50, "nested": {"a": [1, 2]},"streamer":')


def test_database_rows_follow_stage_columns():
    from streamer.sink import STAGE_COLUMNS

    events = decoded(b'{"message": "m", "log.level": "warn", "host.name": "h", "service.name": "s"}')
    (row,) = database_rows(events, Columns(1))
    named = dict(zip(STAGE_COLUMNS, row))
    assert (named["kafka_topic"], named["kafka_partition"], named["kafka_offset"]) == ("raw", 2, 10)
    assert (named["level"], named["message"], named["host"], named["service"]) == ("WARN", "m", "h", "s")
    assert named["model_version"] == "m-1" and named["severity"] == "critical" and named["is_anomaly"] is True
    assert orjson.loads(named["raw"]) == events[0].raw
    assert named["record_index"] == 0


def test_a_later_record_of_a_message_is_named_in_source_headers_and_row():
    from dataclasses import replace

    from streamer.decode import DeadLetter
    from streamer.enrich import dead_letter_headers
    from streamer.sink import STAGE_COLUMNS

    (first,) = decoded(b'{"message": "record zero"}')
    later = replace(first, message="record two", record_index=2)
    records = list(scored_records([first, later], Columns(2)))
    assert [orjson.loads(v)["streamer"]["source"]["record_index"] for _, v, _ in records] == [0, 2]
    assert [dict(h).get("source.record_index") for _, _, h in records] == [None, b"2"]  # only when > 0
    rows = [dict(zip(STAGE_COLUMNS, r)) for r in database_rows([first, later], Columns(2))]
    assert [(r["kafka_offset"], r["record_index"], r["message"]) for r in rows] == [
        (10, 0, "record zero"),
        (10, 2, "record two"),
    ]
    dead = DeadLetter.of_event(later, "score_failed", "boom", "score")
    assert dead.record_index == 2
    assert dict(dead_letter_headers(dead))["source.record_index"] == b"2"
    assert "source.record_index" not in dict(dead_letter_headers(DeadLetter.of_event(first, "x", "y", "score")))
