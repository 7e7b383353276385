"""Debian's rsyslog (imfile → omkafka) ships an application's log file through the real broker into a real
`streamer run`; per line, PostgreSQL must hold the line's own time and level (else the shipper's), the host and
tag rsyslog stamped, and the message without any header."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shippers.support import APP_LOG, check_rows, readme_snippet, require, which

pytestmark = pytest.mark.integration
RSYSLOGD = (which("rsyslogd"), "rsyslogd", "apt-get install rsyslog rsyslog-kafka")
require(*RSYSLOGD, module=True)

HOST, TAG = "shipper-host", "checkout"

README_CONF = "# /etc/rsyslog.d/60-streamer.conf"


def rsyslog_conf(work: Path, log_file: Path, bootstrap: str, topic: str, template: str) -> str:
    """The README's snippet as a whole rsyslog.conf of the test's own: imfile → omkafka only (no imuxsock, no
    imklog: the machine's logging is never read), state in the test's work directory."""
    return f'global(workDirectory="{work}" localHostname="{HOST}")\n' + readme_snippet(
        README_CONF,
        {
            "/var/log/checkout/app.log": str(log_file),
            '"127.0.0.1:9092"': f'"{bootstrap}"',
            '"logs.raw"': f'"{topic}"',
            'template="streamer_json")': f'template="{template}")',
        },
    )


@pytest.fixture
def rsyslogd():
    binary = require(*RSYSLOGD)
    if not list(Path("/usr/lib").glob("*/rsyslog/omkafka.so")):
        require(None, "rsyslog's omkafka module", "apt-get install rsyslog-kafka")
    return binary


@pytest.fixture
def rsyslog(rsyslogd, ship_app_log, pipeline):
    """ship(template) -> (rows, since): rsyslogd -n with its own config, pid file and work directory ships APP_LOG."""
    binary = rsyslogd

    def ship(template: str):
        return ship_app_log(
            "rsyslogd",
            lambda log_file, work: rsyslog_conf(work, log_file, pipeline.bootstrap, pipeline.topic, template),
            lambda conf, work: [binary, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
        )

    return ship


def test_traditional_file_format(rsyslog):
    """`Dec  2 15:04:05 shipper-host checkout: <line>`: no severity in the record, so a line without a level of
    its own has none."""
    rows, since = rsyslog("RSYSLOG_TraditionalFileFormat")
    check_rows(rows, APP_LOG, host=HOST, service=TAG, envelope_level=None, since=since)


def test_forward_format(rsyslog):
    """`<133>2026-12-02T15:04:05.123+00:00 shipper-host checkout: <line>`: the PRI (local0.notice, imfile's
    default) gives the level of lines that state none; a line's own level outranks it."""
    rows, since = rsyslog("RSYSLOG_ForwardFormat")
    check_rows(rows, APP_LOG, host=HOST, service=TAG, envelope_level="INFO", since=since)


def test_json_template(rsyslog):
    """The README's template, `{"@timestamp": …, "host": …, "severity": "notice", "programname": …, "message":
    <line>}`: the line's own header is parsed out of `message`; its level outranks imfile's `notice`."""
    rows, since = rsyslog("streamer_json")
    check_rows(rows, APP_LOG, host=HOST, service=TAG, envelope_level="INFO", since=since)
