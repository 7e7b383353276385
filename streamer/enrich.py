"""Build what the sinks write from a scored batch: logs.scored records and database rows.

Column-oriented on purpose: the model's arrays are turned into Python lists once per batch, and each event's
output is assembled in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from streamer.decode import DeadLetter, Event


@dataclass(frozen=True, slots=True)
class ScoredRecord:
    """One record for logs.scored."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def source_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
    ]


def scored_records(events: list[Event], columns) -> Iterator[ScoredRecord]:
    """The original event plus a `streamer` object; the input's key and headers are kept."""
    levels = columns.predicted_level
    confidences = columns.level_confidence.tolist()
    anomalies = columns.is_anomaly.tolist()
    scores = columns.anomaly_score.tolist()
    severities = columns.severity
    version = columns.model_version
    dumps = orjson.dumps
    for i, event in enumerate(events):
        out = dict(event.raw)
        out["streamer"] = {
            "predicted_level": levels[i],
            "level_confidence": round(confidences[i], 4),
            "is_anomaly": anomalies[i],
            "anomaly_score": round(scores[i], 4),
            "severity": severities[i],
            "model_version": version,
            "source": {"topic": event.topic, "partition": event.partition, "offset": event.offset},
        }
        headers = list(event.headers) if event.headers else []
        headers.extend(source_headers(event.topic, event.partition, event.offset))
        yield ScoredRecord(event.key, dumps(out), headers)


def database_rows(events: list[Event], columns) -> list[tuple]:
    """Rows for the staging table, in STAGE_COLUMNS order (see sink.py)."""
    confidences = columns.level_confidence.tolist()
    anomalies = columns.is_anomaly.tolist()
    scores = columns.anomaly_score.tolist()
    levels = columns.predicted_level
    severities = columns.severity
    version = columns.model_version
    return [
        (e.topic, e.partition, e.offset, e.event_time, e.level, e.message, e.host, e.service, e.raw_json,
         version, levels[i], confidences[i], anomalies[i], scores[i], severities[i])
        for i, e in enumerate(events)
    ]


def dead_letter_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    headers = list(dead.headers) if dead.headers else []
    headers.extend([
        ("deadletter.error_class", dead.error_class.encode()),
        ("deadletter.reason", dead.reason.encode("utf-8", "replace")[:1000]),
        ("deadletter.stage", dead.stage.encode()),
    ])
    headers.extend(source_headers(dead.topic, dead.partition, dead.offset))
    return headers
