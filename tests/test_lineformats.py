"""Line headers: each format's time/level/host/service parsed off, the content left as the message."""

from datetime import datetime, timezone

import pytest

from streamer.lineformats import parse_line


@pytest.mark.parametrize("line, level, host, service, message", [
    ("<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\"] "
     "An application event", "INFO", "mymachine.example.com", "evntslog", "An application event"),
    ("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", "FATAL", "mymachine", "su",
     "'su root' failed for lonvick on /dev/pts/8"),
    ("Dec  2 13:15:55 web-1 sshd[4242]: Accepted publickey for bob", None, "web-1", "sshd",
     "Accepted publickey for bob"),
    ("2024-12-02T13:15:55.123+00:00 web-1 nginx[12]: upstream timed out", None, "web-1", "nginx",
     "upstream timed out"),
    ("2024-05-01 10:00:00,123 [main] ERROR com.acme.Db - connection refused", "ERROR", None, "com.acme.Db",
     "connection refused"),
    ("2024-05-01 10:00:00,123 - payments - WARNING - card declined", "WARN", None, "payments", "card declined"),
    ("ERROR:root:disk full", "ERROR", None, "root", "disk full"),
    ("E1202 15:04:05.000000     123 reflector.go:42] watch failed", "ERROR", None, None, "watch failed"),
    ("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6", "ERROR", None, None,
     "mod_jk child workerEnv in error state 6"),
    ("2024/01/01 10:00:00 [notice] 1#1: signal process started", "INFO", None, None, "signal process started"),
    ("03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs", "DEBUG", None, "WindowManager",
     "printFreezingDisplayLogs"),
    ("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating", "INFO", None,
     "dfs.DataNode$PacketResponder", "PacketResponder 1 terminating"),
    ("2024-01-01T10:00:00.000000001Z stdout F 2024-01-01 10:00:00 WARN low memory", "WARN", None, None,
     "low memory"),
])
def test_headers(line, level, host, service, message):
    head = parse_line(line)
    assert head is not None
    assert (head.level, head.host, head.service, head.message) == (level, host, service, message)


def test_pri_level_is_marked_as_from_pri_and_time_parsed():
    head = parse_line("<165>1 2003-10-11T22:14:15.003Z host app - - - hello")
    assert head.level_from_pri and head.message == "hello"
    assert head.time == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=timezone.utc)


def test_plain_words_have_no_header():
    assert parse_line("service started on port 8080") is None
