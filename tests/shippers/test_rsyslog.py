"""Debian's rsyslog (imfile → omkafka) ships an application's log file through the real broker into a real
`streamer run`; per line, PostgreSQL must hold the line's own time and level (else the shipper's), the host and
tag rsyslog stamped, and the message without any header."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.shippers.support import APP_LOG, check_rows, require, which

pytestmark = pytest.mark.integration

HOST, TAG = "shipper-host", "checkout"

# The JSON template of the README's snippet (rsyslog's own JSON idiom: a list template with option.jsonf).
JSON_TEMPLATE = """
template(name="streamer_json" type="list" option.jsonf="on") {
  property(outname="@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
  property(outname="host" name="hostname" format="jsonf")
  property(outname="severity" name="syslogseverity-text" format="jsonf")
  property(outname="programname" name="programname" format="jsonf")
  property(outname="message" name="msg" format="jsonf")
}
"""


def rsyslog_conf(work: Path, log_file: Path, bootstrap: str, topic: str, template: str) -> str:
    """A whole rsyslog.conf of the test's own: imfile → omkafka only (no imuxsock, no imklog: the machine's
    logging is never read), state in the test's work directory."""
    return f"""
global(workDirectory="{work}" localHostname="{HOST}")
module(load="imfile")
module(load="omkafka")
{JSON_TEMPLATE}
input(type="imfile" file="{log_file}" tag="{TAG}:" ruleset="to_kafka")
ruleset(name="to_kafka") {{
  action(type="omkafka" broker=["{bootstrap}"] topic="{topic}" template="{template}"
         confParam=["queue.buffering.max.ms=50"])
}}
"""


@pytest.fixture
def rsyslog(ship_app_log, pipeline):
    """ship(template) -> (rows, since): rsyslogd -n with its own config, pid file and work directory ships APP_LOG."""
    binary = require(which("rsyslogd"), "rsyslogd", "apt-get install rsyslog rsyslog-kafka")
    if not list(Path("/usr/lib").glob("*/rsyslog/omkafka.so")):
        require(None, "rsyslog's omkafka module", "apt-get install rsyslog-kafka")

    def ship(template: str):
        return ship_app_log(
            "rsyslogd", lambda log_file, work: rsyslog_conf(work, log_file, pipeline.bootstrap, pipeline.topic, template),
            lambda conf, work: [binary, "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")])

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
    """`{"@timestamp": …, "host": …, "severity": "notice", "programname": …, "message": <line>}`: the line's own
    header is parsed out of `message`; its level outranks the `notice` imfile stamps on every line."""
    rows, since = rsyslog("streamer_json")
    check_rows(rows, APP_LOG, host=HOST, service=TAG, envelope_level="INFO", since=since)
