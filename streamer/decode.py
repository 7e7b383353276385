"""Decode one Kafka record into an Event, or into a DeadLetter that keeps the original bytes.

What a record may be:
- a JSON object (ECS / OTel / shipper style): message, time, level, host and service are looked up under
  several names, nested (`{"log": {"level": ..}}`) or dotted (`{"log.level": ..}`);
- a plain UTF-8 text line: an event too, with a leading timestamp and level parsed when present.

What becomes a dead letter (error classes, as written in the `deadletter.error_class` header):
- `empty`            no value, or only white space;
- `too_large`        over the configured size limit (checked before anything else is read);
- `invalid_utf8`     not UTF-8;
- `malformed_json`   starts with `{` but does not parse (also nesting deeper than the parser allows);
- `not_an_object`    valid JSON that is not an object (an array, a string, a number, true/false/null);
- `no_message`       an object without a non-empty string message under any of the message fields.

A line that starts with `[` or `"` but is not JSON (`[INFO] started`) is plain text, not malformed JSON.
The decoder never raises for any input: everything is an Event or a DeadLetter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from streamer.levels import normalise
from streamer.lineformats import compile_line_format, parse_line, parse_with_format

MESSAGE_FIELDS: tuple[str, ...] = ("message", "msg", "log", "MESSAGE", "short_message")
# Shipper spellings: ECS/OTel, journald (__REALTIME_TIMESTAMP µs, PRIORITY, _HOSTNAME, SYSLOG_IDENTIFIER),
# syslog-ng format-json (ISODATE/DATE, HOST, PROGRAM), rsyslog jsonmesg (timereported, syslogseverity, hostname,
# programname), Kubernetes metadata, GELF (Docker's gelf driver: _container_name), Docker (time, container_name),
# log4j2 JsonLayout (instant.epochSecond + nanoOfSecond).
TIME_FIELDS: tuple[str, ...] = (
    "@timestamp",
    "timestamp",
    "time",
    "__REALTIME_TIMESTAMP",
    "ISODATE",
    "DATE",
    "timereported",
    "instant.epochSecond",
)
LEVEL_FIELDS: tuple[str, ...] = ("log.level", "level", "severity", "PRIORITY", "priority", "syslogseverity")
HOST_FIELDS: tuple[str, ...] = ("host.name", "host", "hostname", "_HOSTNAME", "HOST", "kubernetes.host")
SERVICE_FIELDS: tuple[str, ...] = (
    "service.name",
    "service",
    "SYSLOG_IDENTIFIER",
    "PROGRAM",
    "programname",
    "kubernetes.container_name",
    "container_name",
    "_container_name",
    "app",
)
# Where the stored level came from (Event.level_source, in the scored record's `streamer` member).
LEVEL_SOURCES = ("line", "pri", "envelope", "none")

Headers = list[tuple[str, bytes]] | None


@dataclass(slots=True)
class Event:
    """A decodable input record, with the fields the sinks store."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Headers
    message: str
    event_time: datetime
    level: str | None  # the level the event declared, normalised; None when it declared none we know
    host: str | None
    service: str | None
    raw_json: str  # the event as JSON text, for the jsonb column: the input itself when it was a JSON object
    is_json: bool  # the input was a JSON object (the output record splices into raw_json); else a text line
    record_index: int = 0  # which record of its Kafka message (OTLP, JSON array, NDJSON hold several)
    # Where `level` came from: "line" (a word in the text), "pri" (a syslog PRI), "envelope" (a JSON/OTLP field)
    # or "none".
    level_source: str = "none"

    @property
    def raw(self) -> dict:
        """The decoded event (a text line is {"message": line}). Parsed again on demand: batches keep only the
        text, which takes a fraction of the memory of the object."""
        return orjson.loads(self.raw_json)


@dataclass(slots=True)
class DeadLetter:
    """An input record that cannot be processed; `value` is the original bytes, unchanged."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Headers
    value: bytes | None
    error_class: str
    reason: str
    stage: str  # decode (here), score (the scorer failed on it) or store (rejected by the database)
    record_index: int = 0  # which record of its Kafka message

    @classmethod
    def of_event(cls, e: Event, error_class: str, reason: str, stage: str) -> DeadLetter:
        """An event refused after decoding; the value is its JSON text (the input itself for JSON input)."""
        return cls(
            e.topic,
            e.partition,
            e.offset,
            e.key,
            e.headers,
            e.raw_json.encode(),
            error_class,
            reason,
            stage,
            e.record_index,
        )


# A leading timestamp (ISO 8601 / RFC 3339 or "YYYY-MM-DD HH:MM:SS[,.]fff") and/or level in a text line.
_TEXT_HEAD = re.compile(
    r"^\s*(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"\s*(?:[\[<(]?(?P<level>TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|SEVERE|FATAL|CRITICAL|CRIT)"
    r"[\]>)]?(?=[\s:]|$))?",
    re.IGNORECASE,
)
_JSON_SCALAR = re.compile(r"^(?:true|false|null|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)$")


class Decoder:
    """Turns (value, Kafka coordinates) into an Event or a DeadLetter. Stateless apart from its settings."""

    def __init__(
        self,
        max_message_bytes: int = 1024 * 1024,
        message_fields: tuple[str, ...] = MESSAGE_FIELDS,
        line_format: str | None = None,
    ):
        self.max_message_bytes = max_message_bytes
        self.message_fields = message_fields
        # A user-defined line format (STREAMER_LINE_FORMAT) is tried before the built-in ones.
        self._line_format = compile_line_format(line_format) if line_format else None

    def decode(
        self,
        value: bytes | None,
        *,
        topic: str,
        partition: int,
        offset: int,
        timestamp_ms: int | None = None,
        key: bytes | None = None,
        headers: Headers = None,
    ) -> list[Event | DeadLetter]:
        """One Event or DeadLetter per record of the message (a JSON array, NDJSON or OTLP hold several)."""

        def dead(error_class: str, reason: str, index: int = 0) -> DeadLetter:
            return DeadLetter(topic, partition, offset, key, headers, value, error_class, reason, "decode", index)

        if not value or value.isspace():
            return [dead("empty", "the record has no value")]
        if len(value) > self.max_message_bytes:
            return [dead("too_large", f"{len(value)} bytes is over the limit of {self.max_message_bytes}")]
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as err:
            records = _otlp(value)  # binary: maybe an OTLP protobuf export
            if isinstance(records, list):
                return self._from_otlp(records, topic, partition, offset, timestamp_ms, key, headers, dead)
            if isinstance(records, str):
                return [dead("malformed_otlp", records)]
            return [dead("invalid_utf8", f"not UTF-8: {err.reason} at byte {err.start}")]

        # One message rule on every path: strip line terminators, nothing else.
        stripped = text.strip(_TERMINATORS)
        if not stripped or stripped.isspace():  # str also counts Unicode spaces that bytes.isspace() does not
            return [dead("empty", "the record holds only white space")]
        first = stripped[0] if not stripped[0].isspace() else stripped.lstrip()[0]
        if (
            first == "{"
            or (first == "[" and _may_be_array(stripped))
            or first == '"'
            or (first in _SCALAR_STARTS and _JSON_SCALAR.match(stripped.strip()))
        ):
            try:
                obj = orjson.loads(value)
            except orjson.JSONDecodeError as err:
                if first == "{":
                    if "\n" in stripped:
                        return self._from_ndjson(stripped, topic, partition, offset, timestamp_ms, key, headers, dead)
                    return [dead("malformed_json", f"starts like JSON but does not parse: {err}")]
                obj = _NOT_JSON
            except RecursionError:  # defensive: orjson bounds depth itself
                return [dead("malformed_json", "JSON nested too deeply")]
            if obj is not _NOT_JSON:
                if isinstance(obj, dict):
                    if "resourceLogs" in obj:
                        records = _otlp(value)
                        if isinstance(records, list):
                            return self._from_otlp(records, topic, partition, offset, timestamp_ms, key, headers, dead)
                        if isinstance(records, str):
                            return [dead("malformed_otlp", records)]
                    return [self._from_object(obj, text, topic, partition, offset, timestamp_ms, key, headers, dead)]
                if isinstance(obj, list):
                    return self._from_array(obj, topic, partition, offset, timestamp_ms, key, headers, dead)
                return [dead("not_an_object", f"JSON {type(obj).__name__} is not an object")]
        return [self._from_text(stripped, topic, partition, offset, timestamp_ms, key, headers)]

    def _from_array(self, items, topic, partition, offset, timestamp_ms, key, headers, dead):
        """A JSON array of events: each element its own record; a bad element is dead-lettered alone."""
        if not items:
            return [dead("empty", "an empty JSON array holds no record")]
        out: list[Event | DeadLetter] = []
        for index, item in enumerate(items):
            item_dead = _indexed(dead, index)
            if not isinstance(item, dict):
                out.append(item_dead("not_an_object", f"JSON {type(item).__name__} in the array is not an object"))
                continue
            got = self._from_object(
                item, orjson.dumps(item).decode(), topic, partition, offset, timestamp_ms, key, headers, item_dead
            )
            got.record_index = index
            out.append(got)
        return out

    def _from_ndjson(self, text, topic, partition, offset, timestamp_ms, key, headers, dead):
        """Newline-delimited JSON objects: one record per non-blank line; a bad line is dead-lettered alone."""
        out: list[Event | DeadLetter] = []
        lines = [line.strip(_TERMINATORS) for line in text.split("\n")]
        for index, line in enumerate(line for line in lines if line.strip()):
            item_dead = _indexed(dead, index)
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as err:
                out.append(item_dead("malformed_json", f"NDJSON line {index} does not parse: {err}"))
                continue
            if not isinstance(obj, dict):
                out.append(
                    item_dead("not_an_object", f"NDJSON line {index}: JSON {type(obj).__name__} is not an object")
                )
                continue
            got = self._from_object(obj, line, topic, partition, offset, timestamp_ms, key, headers, item_dead)
            got.record_index = index
            out.append(got)
        return out

    def _from_otlp(self, records, topic, partition, offset, timestamp_ms, key, headers, dead):
        if not records:
            return [dead("empty", "the OTLP export holds no log record")]
        out: list[Event | DeadLetter] = []
        for index, rec in enumerate(records):
            message = rec.get("message")
            if not isinstance(message, str) or not message.strip(_TERMINATORS).strip():
                out.append(dead("no_message", f"OTLP log record {index} has no text body", index))
                continue
            raw_json = orjson.dumps(rec, default=str).decode()
            level = normalise(rec["level"]) if rec.get("level") else None
            # a filelog receiver's body is the file's line, header and all
            out.append(
                _json_event(
                    topic,
                    partition,
                    offset,
                    key,
                    headers,
                    message.strip(_TERMINATORS),
                    rec.get("time") or _kafka_time(timestamp_ms),
                    level,
                    rec.get("host"),
                    rec.get("service"),
                    raw_json,
                    index,
                )
            )
        return out

    def _from_object(self, obj, text, topic, partition, offset, timestamp_ms, key, headers, dead):
        message = None
        for name in self.message_fields:
            candidate = obj.get(name, _MISSING)
            if candidate is _MISSING:
                candidate = _lookup(obj, name)
            if isinstance(candidate, list):  # journald writes a MESSAGE that is not valid UTF-8 as a byte array
                candidate = _byte_array_text(candidate)
            if isinstance(candidate, str) and candidate.strip():
                message = candidate.strip(_TERMINATORS)
                break
        if message is None:
            names = ", ".join(self.message_fields)
            return dead("no_message", f"the object has no non-empty string field among {names}")
        event_time = _first_time(obj) or _kafka_time(timestamp_ms)
        level = None
        for name in LEVEL_FIELDS:
            candidate = obj.get(name, _MISSING)
            if candidate is _MISSING:
                candidate = _lookup(obj, name)
            if candidate is not None and not isinstance(candidate, (dict, list)):
                level = normalise(candidate)
                if level is not None:
                    break
        return _json_event(
            topic,
            partition,
            offset,
            key,
            headers,
            message,
            event_time,
            level,
            _first_string(obj, HOST_FIELDS),
            _service(obj),
            text,
            0,
        )

    def _from_text(self, line, topic, partition, offset, timestamp_ms, key, headers) -> Event:
        """A text line: its header (syslog, log4j, klog, ...) parsed off; `message` is the content, raw keeps
        the line."""
        head = None
        line_start = line.lstrip() if line[0].isspace() else line
        if self._line_format is not None:
            head = parse_with_format(*self._line_format, line_start)
            if head is not None and head.level is None and head.message[:1] in _HEADER_STARTS:
                # the format's content may be a line with a header of its own (Logstash plain: time host line)
                inner = parse_line(head.message)
                if inner is not None and inner.message and not inner.message.isspace():
                    head = inner._replace(
                        time=inner.time or head.time,
                        host=head.host or inner.host,
                        service=head.service or inner.service,
                    )
        if head is None:
            head = parse_line(line_start)
        if head is None or not head.message or head.message.isspace():
            return Event(
                topic,
                partition,
                offset,
                key,
                headers,
                line,
                _kafka_time(timestamp_ms),
                None,
                None,
                None,
                orjson.dumps({"message": line}).decode(),
                False,
            )
        level_source = "none" if head.level is None else "pri" if head.level_from_pri else "line"
        return Event(
            topic,
            partition,
            offset,
            key,
            headers,
            head.message,
            head.time or _kafka_time(timestamp_ms),
            head.level,
            head.host,
            head.service,
            orjson.dumps({"message": head.message, "raw": line}).decode(),
            False,
            0,
            level_source,
        )


def _json_event(
    topic, partition, offset, key, headers, message, event_time, level, host, service, raw_json, index
) -> Event:
    """An event of a JSON or OTLP record. A level the line itself states outranks an envelope severity a
    file-reading shipper stamps on every line (rsyslog imfile `severity: notice`); the scored message is the
    content without the line's header; the line's time wins, its host and service fill what the record lacks."""
    level_source = "none" if level is None else "envelope"
    head = parse_line(message) if message[:1] in _HEADER_STARTS else None
    if head is not None and head.message and not head.message.isspace():
        message = head.message
        if head.level is not None:
            level, level_source = head.level, "pri" if head.level_from_pri else "line"
        event_time = head.time or event_time
        host = host or head.host
        service = service or head.service
    return Event(
        topic,
        partition,
        offset,
        key,
        headers,
        message,
        event_time,
        level,
        host,
        service,
        raw_json,
        True,
        index,
        level_source,
    )


_SCALAR_STARTS = frozenset("-0123456789tfn")
_VALUE_STARTS = frozenset('{["-0123456789tfn]')


def _may_be_array(text: str) -> bool:
    """Whether text that starts with `[` can be a JSON array: `[INFO] x`, `[Sun Dec 04 ...]` cannot (a parse
    attempt that fails costs an exception per line)."""
    rest = text.lstrip()[1:].lstrip()
    return not rest or rest[0] in _VALUE_STARTS


_NOT_JSON = object()
_MISSING = object()
_TERMINATORS = "\r\n"
# First characters of the line headers lineformats knows (PRI, brackets, digits, CFDR's `-`, capitals: level words,
# month names, klog letters, alert labels): a JSON message that starts otherwise (most start with a lower-case
# word) is not parsed for a header.
_HEADER_STARTS = frozenset("<[(-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _indexed(dead, index: int):
    return lambda error_class, reason: dead(error_class, reason, index)


def _otlp(value: bytes) -> list[dict] | str | None:
    """H4's OTLP decoder: its records, a reason string for a broken OTLP payload, or None (not OTLP / absent)."""
    try:
        from streamer.otlp import decode_otlp
    except ImportError:
        return None
    try:
        return decode_otlp(value)
    except ValueError as err:
        return f"broken OTLP payload: {err}"


def _lookup(obj: dict, dotted: str):
    """obj["a.b"], else obj["a"]["b"]: shippers write ECS fields either way."""
    value = obj.get(dotted, _MISSING)
    if value is not _MISSING:
        return value
    parts = _DOTTED.get(dotted)
    if parts is None:
        if "." not in dotted:
            return None
        parts = _DOTTED[dotted] = tuple(dotted.split("."))
    if parts[0] not in obj:  # the usual miss, without walking
        return None
    node = obj
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


_DOTTED: dict[str, tuple[str, ...]] = {}  # "a.b" -> ("a", "b"), split once per field name


def _byte_array_text(value: list) -> str | None:
    """journald's byte-array MESSAGE ([104, 105] for "hi") as text; undecodable bytes become U+FFFD."""
    if not value or not all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value):
        return None
    return bytes(value).decode("utf-8", "replace")


def _service(obj: dict) -> str | None:
    """The service; a Kubernetes container is named with its namespace (`payments/api`), the same container name
    in two namespaces being two services."""
    service = _first_string(obj, SERVICE_FIELDS)
    if service is None:
        return None
    if service[0] == "/":  # Docker's fluentd log driver writes container_name as "/name"
        service = service[1:] or None
    if "kubernetes" not in obj and "kubernetes.namespace_name" not in obj:
        return service
    namespace = _lookup(obj, "kubernetes.namespace_name")
    if isinstance(namespace, str) and namespace and service == _lookup(obj, "kubernetes.container_name"):
        return f"{namespace}/{service}"
    return service


def _first_string(obj: dict, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            value = _lookup(obj, name)
        if isinstance(value, str) and value:
            return value
    return None


def _first_time(obj: dict) -> datetime | None:
    for name in TIME_FIELDS:
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            value = _lookup(obj, name)
        if value is not None:
            parsed = _parse_time(value)
            if parsed is not None:
                if name == "instant.epochSecond":
                    nanos = _lookup(obj, "instant.nanoOfSecond")
                    if isinstance(nanos, int) and not isinstance(nanos, bool) and 0 < nanos < 1_000_000_000:
                        parsed = parsed.replace(microsecond=nanos // 1000)
                return parsed
    return None


# Epoch values above this are milliseconds (1e11 s is the year 5138).
_EPOCH_MS_ABOVE = 1e11
_EPOCH_US_ABOVE = 1e14
_EPOCH_NS_ABOVE = 1e17
_MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _parse_time(value) -> datetime | None:
    """ISO 8601 text or epoch seconds/milliseconds -> aware UTC datetime; None when it is neither."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            magnitude = abs(value)
            seconds = (
                value / 1e9
                if magnitude > _EPOCH_NS_ABOVE
                else value / 1e6
                if magnitude > _EPOCH_US_ABOVE
                else value / 1000.0
                if magnitude > _EPOCH_MS_ABOVE
                else float(value)
            )
            return datetime.fromtimestamp(seconds, tz=UTC)
        if isinstance(value, str):
            if value.isdigit():  # journald writes its µs epoch as a string
                return _parse_time(int(value))
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:  # surrounding spaces, or a comma before the fraction ("12:00:00,123")
                parsed = datetime.fromisoformat(value.strip().replace(",", "."))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # shippers that omit the zone mean UTC
            return parsed if parsed >= _MIN_TIME else None
    except (ValueError, OverflowError, OSError):
        return None
    return None


def _kafka_time(timestamp_ms: int | None) -> datetime:
    if timestamp_ms is not None and timestamp_ms > 0:
        return datetime.fromtimestamp(timestamp_ms / 1000.0, tz=UTC)
    return datetime.now(tz=UTC)
