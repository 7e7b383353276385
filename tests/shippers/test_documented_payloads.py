"""Shippers Debian does not package (Vector, Fluent Bit, Filebeat, Logstash, Fluentd, the OpenTelemetry
Collector): the Kafka records their documentation says they produce by default, for the same application log
the real shippers read, produced into the real broker and read by a real `streamer run`. Each payload cites the
page it follows; where a record's shape depends on a setting, the README's snippet sets it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from testkit.clients import produce
from tests.shippers.support import APP_LOG, Line, check_rows, utc

pytestmark = pytest.mark.integration

HOST = "web-1"
FILE = "/var/log/checkout/app.log"
READ_AT = utc("2024-06-01 12:00:10.123")  # when the shipper read the lines
READ_AT_NS = 1_717_243_210_123_000_000  # the same instant, exact (a float of it is not)
READ_AT_S = READ_AT_NS / 1e9
READ_AT_ISO = "2024-06-01T12:00:10.123Z"


def vector(line: str) -> bytes:
    # file source → kafka sink with `encoding.codec = "json"` (the sink requires a codec). The file source's event:
    # file, host, message, source_type, timestamp (RFC 3339, ns).
    # https://vector.dev/docs/reference/configuration/sources/file/#output-data
    # https://vector.dev/docs/reference/configuration/sinks/kafka/
    return orjson.dumps(
        {
            "file": FILE,
            "host": HOST,
            "message": line,
            "source_type": "file",
            "timestamp": "2024-06-01T12:00:10.123000000Z",
        }
    )


def fluent_bit(line: str) -> bytes:
    # tail input (the line under `log`) → kafka output defaults: format json, timestamp_key @timestamp,
    # timestamp_format double. https://docs.fluentbit.io/manual/pipeline/outputs/kafka
    # https://docs.fluentbit.io/manual/pipeline/inputs/tail
    return orjson.dumps({"@timestamp": READ_AT_S, "log": line})


def filebeat(line: str) -> bytes:
    # filestream input → Kafka output; without a codec section events are JSON-encoded, ECS fields, @metadata.
    # https://www.elastic.co/guide/en/beats/filebeat/current/kafka-output.html
    # https://www.elastic.co/guide/en/beats/filebeat/current/exported-fields-log.html
    return orjson.dumps(
        {
            "@timestamp": READ_AT_ISO,
            "@metadata": {"beat": "filebeat", "type": "_doc", "version": "8.15.0"},
            "log": {"offset": 0, "file": {"path": FILE}},
            "message": line,
            "input": {"type": "filestream"},
            "ecs": {"version": "8.0.0"},
            "host": {"name": HOST},
            "agent": {"type": "filebeat", "version": "8.15.0", "name": HOST, "id": "1b8c7d2e", "ephemeral_id": "5e2f"},
        }
    )


def logstash_json(line: str) -> bytes:
    # file input → kafka output with `codec => json` (ECS on, Logstash 8).
    # https://www.elastic.co/guide/en/logstash/current/plugins-outputs-kafka.html
    return orjson.dumps(
        {
            "@timestamp": READ_AT_ISO,
            "@version": "1",
            "message": line,
            "host": {"name": HOST},
            "log": {"file": {"path": FILE}},
            "event": {"original": line},
        }
    )


def logstash_plain(line: str) -> bytes:
    # The kafka output's default codec is plain, which writes `<@timestamp> <host> <message>`.
    # https://www.elastic.co/guide/en/logstash/current/plugins-outputs-kafka.html#plugins-outputs-kafka-codec
    # https://github.com/logstash-plugins/logstash-output-kafka/issues/64
    return f"{READ_AT_ISO} {HOST} {line}".encode()


def fluentd(line: str) -> bytes:
    # in_tail with `<parse> @type none` (the line under `message`) → out_kafka2 `<format> @type json`, and an
    # `<inject>` of hostname_key/time_key (time_type float, the default).
    # https://docs.fluentd.org/output/kafka https://docs.fluentd.org/configuration/inject-section
    return orjson.dumps({"message": line, "hostname": HOST, "time": READ_AT_S})


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _otlp(records: list[LogRecord], service: str | None) -> ExportLogsServiceRequest:
    attrs = [_kv("host.name", HOST)] + ([_kv("service.name", service)] if service else [])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=Resource(attributes=attrs), scope_logs=[ScopeLogs(log_records=records)])]
    )


def otel_filelog(lines: list[str]) -> ExportLogsServiceRequest:
    # filelog receiver, no operators: the line is the body, only the observed time is set, no severity;
    # resourcedetection (system) adds host.name. Kafka exporter default encoding otlp_proto, one
    # ExportLogsServiceRequest per batch.
    # https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/receiver/filelogreceiver
    # https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/exporter/kafkaexporter
    return _otlp(
        [
            LogRecord(
                observed_time_unix_nano=READ_AT_NS,
                body=AnyValue(string_value=line),
                attributes=[_kv("log.file.name", "app.log")],
            )
            for line in lines
        ],
        None,
    )


# An application using an OpenTelemetry SDK (otlp receiver → kafka exporter): structured records.
SDK_RECORDS = [
    Line("payment 17 declined: card expired", "payment 17 declined: card expired", "ERROR", READ_AT),
    Line("GET /api/orders/42 200 12ms", "GET /api/orders/42 200 12ms", "INFO", READ_AT),
]


def otel_sdk() -> ExportLogsServiceRequest:
    numbers = {"ERROR": SeverityNumber.SEVERITY_NUMBER_ERROR, "INFO": SeverityNumber.SEVERITY_NUMBER_INFO}
    return _otlp(
        [
            LogRecord(
                time_unix_nano=READ_AT_NS,
                severity_number=numbers[r.level],
                severity_text=r.level,
                body=AnyValue(string_value=r.text),
            )
            for r in SDK_RECORDS
        ],
        "checkout",
    )


def per_line(build: Callable[[str], bytes]) -> list[bytes]:
    return [build(line.text) for line in APP_LOG]


# (payloads, lines, host, service, envelope level, the shipper's time, extra streamer environment)
CASES = {
    "vector": (per_line(vector), APP_LOG, HOST, None, None, READ_AT, {}),
    "fluent-bit": (per_line(fluent_bit), APP_LOG, None, None, None, READ_AT, {}),
    "filebeat": (per_line(filebeat), APP_LOG, HOST, None, None, READ_AT, {}),
    "logstash-json": (per_line(logstash_json), APP_LOG, HOST, None, None, READ_AT, {}),
    # Its host word cannot be told from a message's first word: the README's snippet names the format.
    "logstash-plain": (
        per_line(logstash_plain),
        APP_LOG,
        HOST,
        None,
        None,
        READ_AT,
        {"STREAMER_LINE_FORMAT": "<Timestamp> <Host> <Content>"},
    ),
    "fluentd": (per_line(fluentd), APP_LOG, HOST, None, None, READ_AT, {}),
    "otel-filelog-proto": (
        [otel_filelog([line.text for line in APP_LOG]).SerializeToString()],
        APP_LOG,
        HOST,
        None,
        None,
        READ_AT,
        {},
    ),
    "otel-filelog-json": (
        [json_format.MessageToJson(otel_filelog([line.text for line in APP_LOG]), indent=None).encode()],
        APP_LOG,
        HOST,
        None,
        None,
        READ_AT,
        {},
    ),
    "otel-sdk-proto": ([otel_sdk().SerializeToString()], SDK_RECORDS, HOST, "checkout", None, READ_AT, {}),
}


@pytest.mark.parametrize(("case", "pipeline_env"), [(name, c[-1]) for name, c in CASES.items()], ids=list(CASES))
def test_documented_payload_through_streamer_run(case, pipeline_env, pipeline):
    payloads, lines, host, service, envelope_level, shipped_at, _ = CASES[case]
    since = datetime.now(UTC)
    produce(pipeline.bootstrap, pipeline.topic, payloads)
    check_rows(
        pipeline.rows(len(lines)),
        lines,
        host=host,
        service=service,
        envelope_level=envelope_level,
        since=since,
        shipped_at=shipped_at,
    )
