"""Line headers: each format's time/level/host/service parsed off, the content left as the message."""

from datetime import UTC, datetime

import pytest

from streamer.lineformats import parse_line


@pytest.mark.parametrize(
    "line, level, host, service, message",
    [
        (
            '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] '
            "An application event",
            "INFO",
            "mymachine.example.com",
            "evntslog",
            "An application event",
        ),
        (
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            "FATAL",
            "mymachine",
            "su",
            "'su root' failed for lonvick on /dev/pts/8",
        ),
        (
            "Dec  2 13:15:55 web-1 sshd[4242]: Accepted publickey for bob",
            None,
            "web-1",
            "sshd",
            "Accepted publickey for bob",
        ),
        (
            "2024-12-02T13:15:55.123+00:00 web-1 nginx[12]: upstream timed out",
            None,
            "web-1",
            "nginx",
            "upstream timed out",
        ),
        (
            "2024-05-01 10:00:00,123 [main] ERROR com.acme.Db - connection refused",
            "ERROR",
            None,
            "com.acme.Db",
            "connection refused",
        ),
        ("2024-05-01 10:00:00,123 - payments - WARNING - card declined", "WARN", None, "payments", "card declined"),
        ("2024-03-01 12:00:00,123 - WARN  [pool-1] - queue full", "WARN", None, None, "queue full"),
        (
            "2024-03-01 12:00:00,123 ERROR [main] com.acme.Db - connection refused",
            "ERROR",
            None,
            "com.acme.Db",
            "connection refused",
        ),
        ("2024-03-01 12:00:00,123 ERROR [main] connection refused", "ERROR", None, None, "[main] connection refused"),
        ("ERROR:root:disk full", "ERROR", None, "root", "disk full"),
        ("E1202 15:04:05.000000     123 reflector.go:42] watch failed", "ERROR", None, None, "watch failed"),
        (
            "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
            "ERROR",
            None,
            None,
            "mod_jk child workerEnv in error state 6",
        ),
        ("2024/01/01 10:00:00 [notice] 1#1: signal process started", "INFO", None, None, "signal process started"),
        (
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
            "DEBUG",
            None,
            "WindowManager",
            "printFreezingDisplayLogs",
        ),
        (
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
            "INFO",
            None,
            "dfs.DataNode$PacketResponder",
            "PacketResponder 1 terminating",
        ),
        (
            "2024-01-01T10:00:00.000000001Z stdout F 2024-01-01 10:00:00 WARN low memory",
            "WARN",
            None,
            None,
            "low memory",
        ),
        # syslog tags with what daemons add before the colon, and an unpadded day
        ("Jun 19 04:09:11 combo syslogd 1.4.1: restart.", None, "combo", "syslogd", "restart."),
        ("Jul  7 08:06:15 combo  -- root[2421]: ROOT LOGIN ON tty2", None, "combo", "root", "ROOT LOGIN ON tty2"),
        (
            "Jul  1 09:29:02 mac-1 sandboxd[129] ([31211]): deny network-outbound",
            None,
            "mac-1",
            "sandboxd",
            "deny network-outbound",
        ),
        (
            "Nov 9 12:01:01 dn228/dn228 crond[2916]: (root) CMD (run-parts)",
            None,
            "dn228/dn228",
            "crond",
            "(root) CMD (run-parts)",
        ),
        # OpenStack oslo.log, with the collector's file-name prefix and without
        (
            "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server "
            '[req-38 113d - - -] 10.11.10.1 "GET /v2 HTTP/1.1" status: 200',
            "INFO",
            None,
            "nova-api",
            '10.11.10.1 "GET /v2 HTTP/1.1" status: 200',
        ),
        (
            "2017-05-16 00:00:10.302 2931 WARNING nova.virt.libvirt.driver [-] [instance: b900] spawned",
            "WARN",
            None,
            "nova.virt.libvirt.driver",
            "[instance: b900] spawned",
        ),
        # BlueGene/L RAS and Thunderbird syslog behind the CFDR alert-tagged prefix
        (
            "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO "
            "instruction cache parity error corrected",
            "INFO",
            "R02-M1-N0-C:J12-U11",
            "KERNEL",
            "instruction cache parity error corrected",
        ),
        (
            "KERNDTLB 1118536327 2005.06.11 R30-M0-N9-C:J16-U01 2005-06-11-17.32.07.581048 R30-M0-N9-C:J16-U01 RAS KERNEL "
            "FATAL data TLB error interrupt",
            "FATAL",
            "R30-M0-N9-C:J16-U01",
            "KERNEL",
            "data TLB error interrupt",
        ),
        (
            "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
            None,
            "dn228",
            "crond(pam_unix)",
            "session closed for user root",
        ),
        (
            "- 1131567043 2005.11.09 tbird-admin1 Nov 9 12:10:43 local@tbird-admin1 Memory for crash kernel",
            None,
            "tbird-admin1",
            None,
            "Memory for crash kernel",
        ),
        # LANL HPC event log, Huawei's pipe-separated Android services, Proxifier
        (
            "134681 node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change: alt0",
            None,
            "node-246",
            "unix.hw",
            "Component State Change: alt0",
        ),
        ("2286759 full partition status 1061219795 -1 running", None, "full", "partition", "running"),
        (
            "20171223-22:16:0:119|Step_LSC|30002312|onStandStepChanged 3579",
            None,
            None,
            "Step_LSC",
            "onStandStepChanged 3579",
        ),
        (
            "[10.30 16:49:06] chrome.exe *64 - proxy.example.org:5070 open through proxy",
            None,
            None,
            "chrome.exe",
            "proxy.example.org:5070 open through proxy",
        ),
    ],
)
def test_headers(line, level, host, service, message):
    head = parse_line(line)
    assert head is not None
    assert (head.level, head.host, head.service, head.message) == (level, host, service, message)


def test_pri_level_is_marked_as_from_pri_and_time_parsed():
    head = parse_line("<165>1 2003-10-11T22:14:15.003Z host app - - - hello")
    assert head.level_from_pri and head.message == "hello"
    assert head.time == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.675872 R02 RAS KERNEL INFO x",
            datetime(2005, 6, 3, 22, 42, 50, tzinfo=UTC),
        ),  # the epoch field, UTC (the local stamp is PDT)
        ("20171223-22:16:0:119|Step_LSC|1|x", datetime(2017, 12, 23, 22, 16, 0, 119000, tzinfo=UTC)),
        (
            "2017-05-16 00:00:10.302 2931 INFO nova.compute [-] x",
            datetime(2017, 5, 16, 0, 0, 10, 302000, tzinfo=UTC),
        ),
        ("1 node-1 unix.hw state 1077804742 1 x", datetime(2004, 2, 26, 14, 12, 22, tzinfo=UTC)),
        ("[Sun Dec 04 04:47:44 2005] [error] x", datetime(2005, 12, 4, 4, 47, 44, tzinfo=UTC)),  # Apache error log
        ("[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 1] x", datetime(2000, 10, 11, 14, 32, 52, 123456, UTC)),
        (  # access log (Common Log Format): the stated zone, in UTC
            'web.example.com - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326',
            datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC),
        ),
        (
            '10.0.0.5 - - [03/Dec/2026:10:00:01 +0200] "GET / HTTP/1.1" 500 12 "-" "curl/8"',
            datetime(2026, 12, 3, 8, 0, 1, 0, UTC),
        ),
    ],
)
def test_header_times(line, expected):
    assert parse_line(line).time == expected


def test_times_without_a_year_take_the_current_one():
    year = datetime.now(UTC).year
    assert parse_line("Nov 9 12:01:01 h app: x").time == datetime(year, 11, 9, 12, 1, 1, tzinfo=UTC)
    assert parse_line("[10.30 16:49:06] a.exe - x").time == datetime(year, 10, 30, 16, 49, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    "line",
    [
        "service started on port 8080",
        "12345 is a number",
        "2024-05-01 is the day we shipped",
        "Dec is the month",
        "KERNEL 12 things",
        "[notes] nothing here",
    ],
)
def test_plain_words_have_no_header(line):
    assert parse_line(line) is None


@pytest.mark.parametrize(
    "line, level, from_pri, time, message",
    [
        # rsyslog's traditional file format around a log4j line: the line's own time, level and content
        (
            "Dec  2 15:04:05 shipper-host checkout: 2024-06-01 12:00:00,123 ERROR com.example.Payment - card expired",
            "ERROR",
            False,
            datetime(2024, 6, 1, 12, 0, 0, 123000, tzinfo=UTC),
            "card expired",
        ),
        # the forward format's PRI (imfile's local0.notice) is outranked by the line's own level
        (
            "<133>2026-12-02T15:04:05.123+00:00 shipper-host checkout: FATAL out of memory in worker 3",
            "FATAL",
            False,
            None,
            "out of memory in worker 3",
        ),
        # ... and is the level of a line that states none
        (
            "<133>2026-12-02T15:04:05.123+00:00 shipper-host checkout: GET /api/orders/42 200 12ms",
            "INFO",
            True,
            datetime(2026, 12, 2, 15, 4, 5, 123000, tzinfo=UTC),
            "GET /api/orders/42 200 12ms",
        ),
        # an inner header that states no level leaves the content alone (macOS agents stamp their own time)
        (
            "Jul  1 19:46:26 mac GoogleSoftwareUpdateAgent[31702]: 2017-07-01 19:46:26.133 GoogleSoftwareUpdateAgent x",
            None,
            False,
            None,
            "2017-07-01 19:46:26.133 GoogleSoftwareUpdateAgent x",
        ),
    ],
)
def test_a_shipped_line_inside_a_syslog_record(line, level, from_pri, time, message):
    head = parse_line(line)
    assert (head.level, head.level_from_pri, head.message) == (level, from_pri, message)
    assert head.host in ("shipper-host", "mac") and head.service in ("checkout", "GoogleSoftwareUpdateAgent")
    if time is not None:
        assert head.time == time


@pytest.mark.parametrize(
    "line",
    ["a.log " * 20000 + "x", "2024-01-01T00:00:00Z stdout F " * 20000 + "x", "<13>Oct 11 22:14:15 h a: " * 20000 + "x"],
)
def test_repeated_wrappers_do_not_recurse_without_bound(line):
    head = parse_line(line)  # was a RecursionError: one level of recursion per repeated prefix
    assert head is None or head.message


@pytest.mark.parametrize(
    "line, level, message",
    [
        ("[info] cache warm", "INFO", "cache warm"),
        ("<Warn> disk 91 %", "WARN", "disk 91 %"),
        ("ERROR: disk full", "ERROR", "disk full"),
        ("WARN low memory", "WARN", "low memory"),
    ],
)
def test_bare_levels_bracketed_in_any_case_or_in_capitals(line, level, message):
    head = parse_line(line)
    assert (head.level, head.message) == (level, message)


@pytest.mark.parametrize(
    "line",
    [
        "Error returned from iconservicesagent: (null)",
        "Trace cache: 12K uops",
        "error: Received disconnect from 10.0.0.1",
        "Warning: using default config",
    ],
)
def test_a_level_word_in_a_sentence_is_not_a_header(line):
    assert parse_line(line) is None


def test_an_access_log_line_keeps_its_request_and_states_no_level_host_or_service():
    line = '192.168.1.20 - - [03/Dec/2026:10:00:01 +0000] "GET /index.html HTTP/1.1" 503 1043 "-" "curl/8.0"'
    head = parse_line(line)
    assert head.message == line  # the request and status are the message
    assert (head.level, head.host, head.service) == (None, None, None)  # a client is not the host; 503 not a level
