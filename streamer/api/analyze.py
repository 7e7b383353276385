"""POST /api/analyze: decode posted events exactly as `streamer run` decodes Kafka records, score them with the
same score stage, and answer what logs.scored would carry for each.

Accepted bodies:
- application/json: {"events": [EVENT, ...]} or a bare [EVENT, ...], where an EVENT is a string (a record's
  text, as a shipper would produce it to logs.raw) or a JSON object (a JSON event); a single JSON event object;
  or the original plan's {"log_data": [{"id": 123, "message": "..."}, ...]} (each answer carries its id);
- text/plain or application/x-ndjson: one record per non-blank line (as `streamer score` reads files).
Each posted item is decoded as the record at offset = its index of topic "api", partition 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from streamer.batch import Batch
from streamer.decode import DeadLetter, Decoder
from streamer.enrich import scored_records
from streamer.score import score_batch

SOURCE_TOPIC = "api"
JSON_TYPES = ("application/json",)
LINE_TYPES = ("text/plain", "application/x-ndjson")


class BadRequest(Exception):
    """A request the client must change: status is 400, 413 or 415; the message is safe to show."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_events: int = 1000
    max_event_bytes: int = 1024 * 1024  # the pipeline's STREAMER_MAX_MESSAGE_BYTES
    max_body_bytes: int = 16 * 1024 * 1024


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_items(body: bytes, content_type: str | None, limits: Limits) -> list[tuple[object, bytes]]:
    """(id or None, record value) per posted item; raises BadRequest."""
    kind = media_type(content_type)
    if kind in JSON_TYPES or kind.endswith("+json"):
        items = _json_items(body)
    elif kind in LINE_TYPES:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BadRequest(400, f"the body is not UTF-8 (byte {err.start})") from None
        items = [(None, line.encode()) for line in text.split("\n") if line.strip()]
    else:
        raise BadRequest(
            415,
            f"Content-Type {kind or '(none)'!r} is not accepted; send application/json, "
            "text/plain or application/x-ndjson",
        )
    if not items:
        raise BadRequest(400, "no event in the request")
    if len(items) > limits.max_events:
        raise BadRequest(413, f"{len(items)} events is over the limit of {limits.max_events} per request")
    for index, (_, value) in enumerate(items):
        if len(value) > limits.max_event_bytes:
            raise BadRequest(413, f"event {index} is {len(value)} bytes, over the limit of {limits.max_event_bytes}")
    return items


def _json_items(body: bytes) -> list[tuple[object, bytes]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise BadRequest(400, f"the body is not valid JSON: {err}") from None
    if isinstance(doc, dict) and "log_data" in doc:
        rows = doc["log_data"]
        if not isinstance(rows, list):
            raise BadRequest(400, "log_data must be an array of objects")
        out = []
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest(400, f"log_data[{i}] must be an object with a message")
            out.append((row.get("id"), orjson.dumps(row)))
        return out
    if isinstance(doc, dict) and "events" in doc:
        doc = doc["events"]
        if not isinstance(doc, list):
            raise BadRequest(400, "events must be an array of strings or objects")
    elif isinstance(doc, dict):
        doc = [doc]  # one JSON event
    if not isinstance(doc, list):
        raise BadRequest(400, 'send {"events": [...]}, {"log_data": [...]}, an array of events or one event object')
    out = []
    for i, item in enumerate(doc):
        if isinstance(item, str):
            out.append((None, item.encode()))
        elif isinstance(item, dict):
            out.append((None, orjson.dumps(item)))
        else:
            raise BadRequest(400, f"event {i} must be a string or an object, not {type(item).__name__}")
    return out


def analyze(items: list[tuple[object, bytes]], scorer, decoder: Decoder) -> bytes:
    """The response body: {"model_version", "count", "results": [...]} in posted order, one result per record
    (an item holding a JSON array or NDJSON has several), each {"index", "record_index", "id"?, and either
    "scored": the logs.scored value or "dead_letter": {"error_class", "reason", "stage"}}."""
    batch = Batch()
    for index, (_, value) in enumerate(items):
        for got in decoder.decode(value, topic=SOURCE_TOPIC, partition=0, offset=index):
            batch.add(got)
    batch, columns = score_batch(scorer, batch)
    parts: list[tuple[tuple[int, int], bytes]] = []
    if columns is not None:
        for event, (_, value, _) in zip(batch.events, scored_records(batch.events, columns), strict=False):
            parts.append(
                (
                    (event.offset, event.record_index),
                    _head(items, event.offset, event.record_index) + b',"scored":' + value + b"}",
                )
            )
    for dead in batch.dead_letters:
        parts.append(
            (
                (dead.offset, dead.record_index),
                _head(items, dead.offset, dead.record_index) + b',"dead_letter":' + _dead(dead) + b"}",
            )
        )
    parts.sort(key=lambda p: p[0])
    return (
        b'{"model_version":'
        + orjson.dumps(scorer.model_version)
        + b',"count":%d,"results":[' % len(parts)
        + b",".join(p[1] for p in parts)
        + b"]}"
    )


def _head(items, index: int, record_index: int) -> bytes:
    item_id = items[index][0]
    head = b'{"index":%d,"record_index":%d' % (index, record_index)
    if item_id is not None:
        head += b',"id":' + orjson.dumps(item_id, default=str)
    return head


def _dead(dead: DeadLetter) -> bytes:
    return orjson.dumps({"error_class": dead.error_class, "reason": dead.reason, "stage": dead.stage})
