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
    require,
    syslog_ng_version,
)

pytestmark = pytest.mark.integration

HOST, PROGRAM = "shipper-host", "checkout"
# The README's format-json snippet: RFC 5424 macros (HOST, PROGRAM, PRIORITY, MESSAGE…) plus ISODATE.
FORMAT_JSON = 'message("$(format-json --scope rfc5424 --scope nv-pairs --key ISODATE)")'


def syslog_ng_conf(version: str, log_file: Path, bootstrap: str, topic: str, message: str) -> str:
    """A whole syslog-ng.conf of the test's own: one file source (the application's log, no syslog header to
    parse) and one kafka-c destination; no system() source, so the machine's logging is never read."""
    return f"""@version: {version}
options {{ stats-freq(0); }};
source s_app {{
  file("{log_file}" flags(no-parse) program-override("{PROGRAM}") host-override("{HOST}") follow-freq(1));
}};
destination d_kafka {{
  kafka-c(bootstrap-servers("{bootstrap}") topic("{topic}") {message}
          config("queue.buffering.max.ms" => "50"));
}};
log {{ source(s_app); destination(d_kafka); }};
"""


@pytest.fixture
def syslog_ng(ship_app_log, pipeline):
    """ship(message_option) -> (rows, since): syslog-ng -F with its own config, pid, persist and control files."""
    binary = require(SYSLOG_NG if SYSLOG_NG.exists() else None, "syslog-ng (private copy)", "run scripts/syslog-ng.sh")
    version = syslog_ng_version(binary)

    def ship(message: str):
        return ship_app_log(
            "syslog-ng",
            lambda log_file, work: syslog_ng_conf(version, log_file, pipeline.bootstrap, pipeline.topic, message),
            lambda conf, work: [binary, "-F", "--no-caps", "-f", str(conf), "-p", str(work / "syslog-ng.pid"),
                                "-R", str(work / "syslog-ng.persist"), "-c", str(work / "syslog-ng.ctl")])

    return ship


def test_default_message_template(syslog_ng):
    """kafka-c's default `$ISODATE $HOST $MSGHDR$MSG`: `2026-12-02T15:04:05+00:00 shipper-host checkout: <line>`,
    no severity in the record."""
    rows, since = syslog_ng("")
    check_rows(rows, APP_LOG, host=HOST, service=PROGRAM, envelope_level=None, since=since)


def test_format_json(syslog_ng):
    """`{"PROGRAM": …, "PRIORITY": "notice", "MESSAGE": <line>, "HOST": …, "ISODATE": …}`: the line's own header
    is parsed out of MESSAGE and its level outranks the file source's default `notice`."""
    rows, since = syslog_ng(FORMAT_JSON)
    check_rows(rows, APP_LOG, host=HOST, service=PROGRAM, envelope_level="INFO", since=since)
