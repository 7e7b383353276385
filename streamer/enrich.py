"""Build what the sinks write from a scored batch: logs.scored records and database rows.

Column-oriented on purpose: the model's arrays are turned into Python lists once per batch, and each event's
output is assembled in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson

from streamer.decode import DeadLetter, Event

# One record for logs.scored: (key, value, headers). A plain tuple: one is built per event.
ScoredRecord = tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]


def partition_headers(topic: str, partition: int) -> list[tuple[str, bytes]]:
    return [("source.topic", topic.encode()), ("source.partition", b"%d" % partition)]


def source_headers(topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [*partition_headers(topic, partition), ("source.offset", b"%d" % offset)]


def scored_records(events: list[Event], columns, templates=None) -> Iterator[ScoredRecord]:
    """The original event plus a `streamer` object; the input's key and headers are kept.

    templates (streamer.templates.EventTemplates, after the database write): adds template_id and
    template_new (the event is the first of a template new to its service).

    A JSON input is not re-serialised: the `streamer` member is spliced in before its closing brace, so the
    event's own fields reach logs.scored byte for byte (and it costs a fraction of a dumps of the whole event).
    """
    levels = columns.predicted_level
    confidences = np.round(columns.level_confidence.astype(np.float64), 4).tolist()
    anomalies = columns.is_anomaly.tolist()
    scores = np.round(columns.anomaly_score.astype(np.float64), 4).tolist()
    severities = columns.severity
    version = columns.model_version
    template_ids = templates.ids if templates is not None else None
    new_keys = templates.new_keys if templates is not None else ()
    dumps = orjson.dumps
    per_partition: dict[tuple[str, int], list[tuple[str, bytes]]] = {}  # built once per partition
    for i, event in enumerate(events):
        tp = (event.topic, event.partition)
        fixed = per_partition.get(tp)
        if fixed is None:
            fixed = per_partition[tp] = partition_headers(event.topic, event.partition)
        streamer = {
            "predicted_level": levels[i],
            "level_confidence": confidences[i],
            "is_anomaly": anomalies[i],
            "anomaly_score": scores[i],
            "severity": severities[i],
            "model_version": version,
            "level_source": event.level_source,  # where the stored level came from (decode.LEVEL_SOURCES)
            "source": {
                "topic": event.topic,
                "partition": event.partition,
                "offset": event.offset,
                "record_index": event.record_index,
            },
        }
        if template_ids is not None:
            streamer["template_id"] = template_ids[i]
            streamer["template_new"] = bool(new_keys) and (
                (event.topic, event.partition, event.offset, event.record_index) in new_keys
            )
        original = event.raw_json
        if event.is_json and '"streamer"' not in original:
            value = original.rstrip()[:-1].encode() + b',"streamer":' + dumps(streamer) + b"}"
        else:  # a text line, or an event that has a `streamer` member of its own: ours replaces it
            out = event.raw
            out["streamer"] = streamer
            value = dumps(out)
        headers: list[tuple[str, str | bytes | None]] = list(event.headers) if event.headers else []
        headers += fixed
        headers.append(("source.offset", b"%d" % event.offset))
        if event.record_index:  # one of several records in its Kafka message
            headers.append(("source.record_index", b"%d" % event.record_index))
        yield event.key, value, headers


def database_rows(events: list[Event], columns, templates=None) -> list[tuple]:
    """Rows for the staging table, in STAGE_COLUMNS order (see sink.py)."""
    template_ids = templates.ids if templates is not None else [None] * len(events)
    confidences = columns.level_confidence.tolist()
    anomalies = columns.is_anomaly.tolist()
    scores = columns.anomaly_score.tolist()
    levels = columns.predicted_level
    severities = columns.severity
    version = columns.model_version
    return [
        (
            e.topic,
            e.partition,
            e.offset,
            e.record_index,
            e.event_time,
            e.level,
            e.message,
            e.host,
            e.service,
            e.raw_json,
            version,
            levels[i],
            confidences[i],
            anomalies[i],
            scores[i],
            severities[i],
            template_ids[i],
        )
        for i, e in enumerate(events)
    ]


def dead_letter_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    headers = list(dead.headers) if dead.headers else []
    headers.extend(
        [
            ("deadletter.error_class", dead.error_class.encode()),
            ("deadletter.reason", dead.reason.encode("utf-8", "replace")[:1000]),
            ("deadletter.stage", dead.stage.encode()),
        ]
    )
    headers.extend(source_headers(dead.topic, dead.partition, dead.offset))
    if dead.record_index:
        headers.append(("source.record_index", b"%d" % dead.record_index))
    return headers
