"""OTLP logs in both encodings of the Collector's kafka exporter, built with the official opentelemetry-proto
classes: `otlp_proto` is ExportLogsServiceRequest.SerializeToString() (what the exporter's default proto
marshaler writes), `otlp_json` is its protobuf JSON mapping (camelCase, 64-bit integers as strings)."""

from datetime import UTC, datetime

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from streamer.otlp import decode_otlp

T0 = 1_700_000_000_123_456_789  # ns


def kv(key, value) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def request() -> ExportLogsServiceRequest:
    """Two resources, three records: the shapes a Collector batch carries."""
    records = [
        LogRecord(
            time_unix_nano=T0,
            severity_text="ERROR",
            severity_number=SeverityNumber.SEVERITY_NUMBER_ERROR,
            body=AnyValue(string_value="disk full on /var"),
            attributes=[kv("log.file.name", "app.log")],
        ),
        # No severity text: the number decides; no event time: the observed time stands in.
        LogRecord(
            observed_time_unix_nano=T0 + 1_000,
            severity_number=SeverityNumber.SEVERITY_NUMBER_WARN2,
            body=AnyValue(kvlist_value=KeyValueList(values=[kv("event", "login"), kv("ok", False)])),
            attributes=[kv("scope.level", "record")],
        ),
    ]
    scope = InstrumentationScope(name="io.opentelemetry.filelog", attributes=[kv("scope.level", "scope")])
    first = ResourceLogs(
        resource=Resource(
            attributes=[
                kv("host.name", "web-1"),
                kv("service.name", "checkout"),
                kv("scope.level", "resource"),
                kv("k8s.pod.uid", "abc"),
            ]
        ),
        scope_logs=[ScopeLogs(scope=scope, log_records=records)],
    )
    second = ResourceLogs(
        resource=Resource(attributes=[kv("service.name", "kernel")]),
        scope_logs=[
            ScopeLogs(
                log_records=[
                    LogRecord(
                        time_unix_nano=T0,
                        severity_number=SeverityNumber.SEVERITY_NUMBER_TRACE,
                        body=AnyValue(
                            array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="x")])
                        ),
                    )
                ]
            )
        ],
    )
    return ExportLogsServiceRequest(resource_logs=[first, second])


def as_json(message) -> bytes:
    return json_format.MessageToJson(message, indent=None).encode()


@pytest.mark.parametrize("encode", [lambda r: r.SerializeToString(), as_json], ids=["otlp_proto", "otlp_json"])
def test_each_log_record_is_one_record(encode):
    records = decode_otlp(encode(request()))
    assert [r["message"] for r in records] == ["disk full on /var", '{"event":"login","ok":false}', '[1,"x"]']
    assert [r["level"] for r in records] == ["ERROR", "WARN", "DEBUG"]  # TRACE is stored as DEBUG
    assert [r["host"] for r in records] == ["web-1", "web-1", None]
    assert [r["service"] for r in records] == ["checkout", "checkout", "kernel"]
    assert records[0]["time"] == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert records[1]["time"] == datetime(2023, 11, 14, 22, 13, 20, 123457, tzinfo=UTC)
    # Flat: record over scope over resource.
    assert records[0]["attributes"] == {
        "host.name": "web-1",
        "service.name": "checkout",
        "scope.level": "scope",
        "k8s.pod.uid": "abc",
        "log.file.name": "app.log",
    }
    assert records[1]["attributes"]["scope.level"] == "record"
    assert records[2]["attributes"] == {"service.name": "kernel"}


def test_logs_data_and_the_collector_json_spelling():
    # The Collector writes trace ids as hex and may give severityNumber as a number and times as strings.
    doc = {
        "resourceLogs": [
            {
                "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "h"}}]},
                "scopeLogs": [
                    {
                        "scope": {},
                        "logRecords": [
                            {
                                "timeUnixNano": str(T0),
                                "severityNumber": 9,
                                "severityText": "notice",
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "body": {"stringValue": "started"},
                                "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    [record] = decode_otlp(orjson.dumps(doc))
    assert record["message"] == "started"
    assert record["level"] == "INFO"  # the text wins when it is a level we know
    assert record["host"] == "h" and record["service"] is None
    assert record["attributes"] == {"host.name": "h", "n": 42}


def test_unknown_severity_text_falls_back_to_the_number():
    r = ExportLogsServiceRequest(
        resource_logs=[
            ResourceLogs(
                scope_logs=[
                    ScopeLogs(
                        log_records=[
                            LogRecord(
                                severity_text="Sev-X",
                                severity_number=SeverityNumber.SEVERITY_NUMBER_FATAL,
                                body=AnyValue(string_value="boom"),
                            )
                        ]
                    )
                ]
            )
        ]
    )
    [record] = decode_otlp(r.SerializeToString())
    assert record["level"] == "FATAL" and record["time"] is None


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"plain text line",
        b'{"message": "hello"}',
        b'{"message": "mentions \\"resourceLogs\\" only"}',
        b"[1, 2]",
        "caf\u00e9 au lait".encode(),
        b"\xff\xfe not utf-8 and not protobuf",
    ],
)
def test_not_otlp_is_none(value):
    assert decode_otlp(value) is None


def test_broken_otlp_raises():
    good = request().SerializeToString()
    with pytest.raises(ValueError, match="OTLP protobuf"):
        decode_otlp(good[:-7])  # truncated inside a record
    with pytest.raises(ValueError, match="OTLP JSON"):
        decode_otlp(b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": 5}}]}]}]}')
    with pytest.raises(ValueError, match="OTLP JSON"):
        decode_otlp(b'{"resourceLogs": [{"scopeLogs": [')  # cut short
    with pytest.raises(ValueError, match="OTLP JSON"):
        decode_otlp(b'{"resourceLogs": [{"scopeLogs": "not a list"}]}')


def test_empty_request_has_no_records():
    assert decode_otlp(b'{"resourceLogs": []}') == []
