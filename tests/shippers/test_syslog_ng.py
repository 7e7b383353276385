"""Debian's syslog-ng with its Kafka module (kafka-c), unpacked privately by scripts/syslog-ng.sh (it conflicts
with rsyslog, so it is never installed), ships an application's log file through the real broker into a real
`streamer run`: its default Kafka message template and `format-json`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shippers.support import (
    APP_LOG,
    SYSLOG_NG,
    check_rows,
    readme_snippet,
    require,
    syslog_ng_version,
)

pytestmark = pytest.mark.integration
PRIVATE_SYSLOG_NG = (SYSLOG_NG if SYSLOG_NG.exists() else None, "syslog-ng (private copy)", "run scripts/syslog-ng.sh")
require(*PRIVATE_SYSLOG_NG, module=True)

HOST, PROGRAM = "shipper-host", "checkout"
README_CONF = "# /etc/syslog-ng/conf.d/streamer.conf"
FORMAT_JSON = '\n          message("$(format-json --scope rfc5424 --scope nv-pairs --key ISODATE)")'


def syslog_ng_conf(version: str, log_file: Path, bootstrap: str, topic: str, json: bool) -> str:
    """The README's snippet as a whole syslog-ng.conf of the test's own (no system() source: the machine's
    logging is never read), with a fixed host name; json=False drops its message(), leaving kafka-c's default."""
    return f"@version: {version}\noptions {{ stats-freq(0); }};\n" + readme_snippet(
        README_CONF,
        {
            "/var/log/checkout/app.log": str(log_file),
            '"127.0.0.1:9092"': f'"{bootstrap}"',
            '"logs.raw"': f'"{topic}"',
            'program-override("checkout")': f'program-override("{PROGRAM}") host-override("{HOST}") follow-freq(1)',
            FORMAT_JSON: FORMAT_JSON if json else "",
        },
    )


@pytest.fixture
def syslog_ng_binary():
    return require(*PRIVATE_SYSLOG_NG)


@pytest.fixture
def syslog_ng(syslog_ng_binary, ship_app_log, pipeline):
    """ship(json) -> (rows, since): syslog-ng -F with its own config, pid, persist and control files."""
    binary = syslog_ng_binary
    version = syslog_ng_version(binary)

    def ship(json: bool):
        return ship_app_log(
            "syslog-ng",
            lambda log_file, work: syslog_ng_conf(version, log_file, pipeline.bootstrap, pipeline.topic, json),
            lambda conf, work: [
                binary,
                "-F",
                "--no-caps",
                "-f",
                str(conf),
                "-p",
                str(work / "syslog-ng.pid"),
                "-R",
                str(work / "syslog-ng.persist"),
                "-c",
                str(work / "syslog-ng.ctl"),
            ],
        )

    return ship


def test_default_message_template(syslog_ng):
    """kafka-c's default `$ISODATE $HOST $MSGHDR$MSG`: `2026-12-02T15:04:05+00:00 shipper-host checkout: <line>`,
    no severity in the record."""
    rows, since = syslog_ng(json=False)
    check_rows(rows, APP_LOG, host=HOST, service=PROGRAM, envelope_level=None, since=since)


def test_format_json(syslog_ng):
    """The README's `format-json`, `{"PROGRAM": …, "PRIORITY": "notice", "MESSAGE": <line>, "HOST": …, "ISODATE":
    …}`: the line's own header is parsed out of MESSAGE and its level outranks the file source's `notice`."""
    rows, since = syslog_ng(json=True)
    check_rows(rows, APP_LOG, host=HOST, service=PROGRAM, envelope_level="INFO", since=since)
