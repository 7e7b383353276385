"""kcat (`kcat -P -l FILE`: one Kafka message per line) produces plain text lines and JSON lines through the real
broker into a real `streamer run`: the headers and field names each line carries are read, nothing is guessed."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime

import orjson
import pytest

from tests.shippers.support import Line, check_rows, require, utc, which, write_app_log

pytestmark = pytest.mark.integration
KCAT = (which("kcat"), "kcat", "apt-get install kcat")
require(*KCAT, module=True)


def _now_bsd() -> tuple[str, datetime]:
    """A BSD syslog stamp of this second (it has no year: only a recent one reads back unambiguously)."""
    now = datetime.now(UTC).replace(microsecond=0)
    return f"{now:%b} {now.day:2d} {now:%H:%M:%S}", now


def plain_lines() -> list[Line]:
    bsd, now = _now_bsd()
    return [
        Line(
            "<11>1 2024-06-01T12:00:00.123Z web-1 nginx 812 - - upstream timed out (110) while reading upstream",
            "upstream timed out (110) while reading upstream",
            "ERROR",
            utc("2024-06-01 12:00:00.123"),
            "web-1",
            "nginx",
        ),
        Line(
            f"<30>{bsd} db-2 postgres[4242]: checkpoint complete: wrote 12 buffers",
            "checkpoint complete: wrote 12 buffers",
            "INFO",
            now,
            "db-2",
            "postgres",
        ),
        Line(
            "2024-06-01T12:00:02.000Z WARN disk usage at 91% on /var/lib/data",
            "disk usage at 91% on /var/lib/data",
            "WARN",
            utc("2024-06-01 12:00:02"),
            None,
            None,
        ),
        Line("worker pool resized to 8", "worker pool resized to 8", None, None, None, None),
    ]


def json_lines() -> list[Line]:
    events = [
        (
            {
                "@timestamp": "2024-06-01T12:00:03.000Z",
                "log.level": "error",
                "message": "payment 17 declined",
                "host": {"name": "web-1"},
                "service": {"name": "shop"},
            },
            Line("", "payment 17 declined", "ERROR", utc("2024-06-01 12:00:03"), "web-1", "shop"),
        ),
        (
            {
                "version": "1.1",
                "host": "gelf-host",
                "short_message": "cache miss storm",
                "level": 4,
                "timestamp": 1717243204.5,
            },  # GELF: syslog level 4 is warning
            Line("", "cache miss storm", "WARN", utc("2024-06-01 12:00:04.5"), "gelf-host", None),
        ),
        (
            {
                "__REALTIME_TIMESTAMP": "1717243205000000",
                "PRIORITY": "3",
                "_HOSTNAME": "node-3",
                "SYSLOG_IDENTIFIER": "kubelet",
                "MESSAGE": "failed to pull image",
            },  # journalctl -o json
            Line("", "failed to pull image", "ERROR", utc("2024-06-01 12:00:05"), "node-3", "kubelet"),
        ),
        (
            {
                "log": "2024-06-01T12:00:06.500Z ERROR connection refused\n",
                "stream": "stderr",
                "time": "2024-06-01T12:00:06.600000000Z",
            },  # Docker json-file: the line's own header wins
            Line("", "connection refused", "ERROR", utc("2024-06-01 12:00:06.5"), None, None),
        ),
        (
            {
                "log": "2024-06-01T12:00:07.250Z WARN watch closed, retrying\n",
                "stream": "stdout",
                "time": "2024-06-01T12:00:07.300000000Z",
                "kubernetes": {
                    "host": "node-7",
                    "namespace_name": "shop",
                    "container_name": "api",
                    "pod_name": "api-5d8f",
                },
            },
            Line("", "watch closed, retrying", "WARN", utc("2024-06-01 12:00:07.25"), "node-7", "shop/api"),
        ),
        ({"message": "order 9 shipped", "level": "info"}, Line("", "order 9 shipped", "INFO", None, None, None)),
    ]
    return [replace(line, text=orjson.dumps(event).decode()) for event, line in events]


@pytest.fixture
def kcat_binary():
    return require(*KCAT)


@pytest.fixture
def kcat(kcat_binary, pipeline, tmp_path):
    """ship(lines) -> (rows, since): `kcat -P -l FILE` produces one message per line."""
    binary = kcat_binary

    def ship(lines: list[Line]):
        path = tmp_path / "lines.txt"
        since = write_app_log(path, lines)
        done = subprocess.run(
            [binary, "-P", "-b", pipeline.bootstrap, "-t", pipeline.topic, "-l", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"kcat exited {done.returncode}: {done.stderr[-2000:]}"
        return pipeline.rows(len(lines)), since

    return ship


def test_plain_lines(kcat):
    """RFC 5424 and RFC 3164 syslog lines, an ISO-stamped line with a level, and a bare line."""
    lines = plain_lines()
    rows, since = kcat(lines)
    check_rows(rows, lines, host=None, service=None, envelope_level=None, since=since)


def test_json_lines(kcat):
    """ECS with dotted and nested keys, GELF, journald's JSON export, Docker and Kubernetes (Fluent Bit's
    kubernetes filter) container lines, and a minimal event."""
    lines = json_lines()
    rows, since = kcat(lines)
    check_rows(rows, lines, host=None, service=None, envelope_level=None, since=since)
