"""OTLP logs as the OpenTelemetry Collector's kafka exporter writes them: one Kafka message, many log records.

The exporter's `encoding` is `otlp_proto` by default (the binary protobuf of ExportLogsServiceRequest, which
has the same wire format as LogsData: field 1 = repeated ResourceLogs) or `otlp_json` (the protobuf JSON
mapping: camelCase names, resourceLogs/scopeLogs/logRecords, AnyValue as {"stringValue": …}, 64-bit integers as
strings). See the exporter's README, "encoding" (opentelemetry-collector-contrib, exporter/kafkaexporter) and
the OTLP specification, "JSON Protobuf Encoding" (opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding).

decode_otlp() gives one plain dict per log record, or None when the bytes are not OTLP at all, so the caller
(streamer/decode.py) can go on with its own formats.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.logs.v1.logs_pb2 import LogsData

from streamer.levels import _from_otel_number, normalise

# Field 1 (resource_logs), wire type 2 (length-delimited): the first byte of every non-empty OTLP protobuf.
_PROTO_FIRST_BYTE = 0x0A
_JSON_MARKER = b'"resourceLogs"'


def decode_otlp(value: bytes) -> list[dict] | None:
    """One dict per log record: message, time, level, host, service, attributes.

    None when `value` is not OTLP; ValueError(reason) when it is OTLP but broken.
    """
    if not value:
        return None
    first = value.lstrip()[:1]
    if first == b"{":
        if _JSON_MARKER not in value:  # the cheap test: any other JSON object is not ours
            return None
        logs = _parse_json(value)
        return None if logs is None else _records(logs)
    try:
        value.decode("utf-8")
        is_text = True
    except UnicodeDecodeError:
        is_text = False
    # Text lines are not tried as protobuf unless they start with the right tag (a line starting "\n").
    if is_text and value[0] != _PROTO_FIRST_BYTE:
        return None
    logs = LogsData()
    try:
        logs.ParseFromString(value)
    except DecodeError as err:
        if value[0] == _PROTO_FIRST_BYTE and not is_text:
            raise ValueError(f"broken OTLP protobuf: {err}") from None
        return None
    if not logs.resource_logs:  # parsed as nothing but unknown fields: some other binary
        return None
    return _records(logs)


def _parse_json(value: bytes) -> LogsData | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as err:
        raise ValueError(f"broken OTLP JSON: {err}") from None
    if not isinstance(doc, dict) or "resourceLogs" not in doc:
        return None  # an ordinary event that merely mentions resourceLogs
    _drop_ids(doc)
    try:
        return json_format.ParseDict(doc, LogsData(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError) as err:
        raise ValueError(f"broken OTLP JSON: {err}") from None


def _drop_ids(doc: dict) -> None:
    # OTLP/JSON writes traceId/spanId as hex, not the base64 of the generic mapping; we store neither.
    for resource_logs in _list(doc.get("resourceLogs")):
        for scope_logs in _list(resource_logs.get("scopeLogs") if isinstance(resource_logs, dict) else None):
            records = scope_logs.get("logRecords") if isinstance(scope_logs, dict) else None
            for record in _list(records):
                if isinstance(record, dict):
                    record.pop("traceId", None)
                    record.pop("spanId", None)


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _records(logs: LogsData) -> list[dict]:
    out: list[dict] = []
    for resource_logs in logs.resource_logs:
        resource = _attributes(resource_logs.resource.attributes)
        host = _text_or_none(resource.get("host.name"))
        service = _text_or_none(resource.get("service.name"))
        for scope_logs in resource_logs.scope_logs:
            scope = _attributes(scope_logs.scope.attributes)
            for record in scope_logs.log_records:
                attributes = {**resource, **scope, **_attributes(record.attributes)}
                out.append(
                    {
                        "message": _body_text(record),
                        "time": _time(record.time_unix_nano or record.observed_time_unix_nano),
                        "level": _level(record.severity_text, record.severity_number),
                        "host": host,
                        "service": service,
                        "attributes": attributes,
                    }
                )
    return out


def _level(text: str, number: int) -> str | None:
    if text:
        level = normalise(text)
        if level is not None:
            return level
    return _from_otel_number(number) if number else None


def _time(nanos: int) -> datetime | None:
    if not nanos:
        return None
    seconds, rest = divmod(nanos, 1_000_000_000)
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
    except (OverflowError, ValueError, OSError):
        return None


def _body_text(record) -> str:
    if not record.HasField("body"):
        return ""
    body = _any_value(record.body)
    if isinstance(body, str):
        return body
    return orjson.dumps(body).decode()


def _text_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else None


def _attributes(key_values) -> dict:
    return {kv.key: _any_value(kv.value) for kv in key_values}


def _any_value(value):
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        raw = value.bytes_value
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode()
    return getattr(value, kind)  # string_value, bool_value, int_value, double_value
