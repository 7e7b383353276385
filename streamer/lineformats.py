"""Parse the header of a plain-text log line: time, level, host, service, and the message without the header.

Formats are tried in an order picked by the line's first character (a cheap dispatch: most lines try one or
two precompiled regexes). What a line states itself is what `parse_line` returns; nothing is guessed.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import NamedTuple

from streamer.levels import normalise


class Header(NamedTuple):
    time: datetime | None
    level: str | None
    host: str | None
    service: str | None
    message: str
    level_from_pri: bool  # the level came from a syslog PRI, not from a word in the line


_SYSLOG_SEVERITY = ("FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG")  # RFC 5424 0..7
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"), 1)}
_LEVEL_WORD = r"(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|SEVERE|FATAL|CRITICAL|CRIT)"
_ISO = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
_BSD_TS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2}"

# <PRI>1 ISO host app procid msgid [SD|-] msg
_RFC5424 = re.compile(r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) \S+ \S+ "
                      r"(?:-|(?:\[[^\]]*\])+) ?(?P<msg>.*)", re.S)
# [<PRI>]Mmm dd hh:mm:ss host tag[pid]: msg  (RFC 3164, and the rsyslog/syslog-ng file format); also ISO stamps
_RFC3164 = re.compile(rf"(?:<(?P<pri>\d{{1,3}})>)?(?P<ts>{_BSD_TS}|{_ISO}) (?P<host>\S+) "
                      r"(?P<app>[^\s:\[]+)(?:\[\d+\])?: ?(?P<msg>.*)", re.S)
# Go klog/glog: I1202 15:04:05.000000 123 file.go:42] msg
_KLOG = re.compile(r"(?P<lvl>[IWEF])(?P<mm>\d{2})(?P<dd>\d{2}) (?P<t>\d{2}:\d{2}:\d{2}(?:\.\d+)?) +\d+ "
                   r"(?P<src>[^\s:]+:\d+)\] ?(?P<msg>.*)", re.S)
# ISO timestamp, then an optional [thread], level, optional logger and " - " or ":" (log4j/logback, Python asctime)
_ISO_LEVEL = re.compile(rf"(?P<ts>{_ISO})(?: \[(?P<thread>[^\]]*)\])? +(?:- )?\[?(?P<lvl>{_LEVEL_WORD})\]?"
                        r"(?: +(?P<logger>[\w.$]+(?:\[[^\]]*\])?)(?=: | +- ))?(?: +- +|: +| +|$)(?P<msg>.*)", re.S | re.I)
# Python logging asctime default: 2024-01-01 10:00:00,123 - name - LEVEL - msg
_PY_ASCTIME = re.compile(rf"(?P<ts>{_ISO}) - (?P<logger>\S+) - (?P<lvl>{_LEVEL_WORD}) - (?P<msg>.*)", re.S | re.I)
# Python logging basicConfig default: LEVEL:logger:msg
_PY_BASIC = re.compile(rf"(?P<lvl>{_LEVEL_WORD}):(?P<logger>[^:\s]*):(?P<msg>.*)", re.S)
# HDFS-style: yymmdd hhmmss pid LEVEL component: msg
_HDFS = re.compile(rf"(?P<d>\d{{6}}) (?P<t>\d{{6}}) +\d+ (?P<lvl>{_LEVEL_WORD}) (?P<comp>[^\s:]+): (?P<msg>.*)",
                   re.S)
# Spark/log4j short: yy/mm/dd hh:mm:ss LEVEL component: msg
_YY_SLASH = re.compile(rf"(?P<d>\d{{2}}/\d{{2}}/\d{{2}}) (?P<t>\d{{2}}:\d{{2}}:\d{{2}}) (?P<lvl>{_LEVEL_WORD}) "
                       r"(?P<comp>[^\s:]+): (?P<msg>.*)", re.S)
# Windows CBS: 2016-09-28 04:30:30, Info   CBS    msg
_WINDOWS = re.compile(rf"(?P<ts>{_ISO}), (?P<lvl>[A-Za-z]+) +(?P<comp>\S+) +(?P<msg>.*)", re.S)
# CRI container runtime: <RFC 3339 ts> stdout|stderr F|P msg
_CRI = re.compile(rf"(?P<ts>{_ISO}) (?:stdout|stderr) [FP] (?P<msg>.*)", re.S)
# Apache/nginx error log: [Sun Dec 04 04:47:44 2005] [error] msg ; nginx: 2024/01/01 10:00:00 [error] 1#1: msg
_APACHE = re.compile(r"\[(?P<ts>[^\]]+)\] \[(?:[\w]+:)?(?P<lvl>emerg|alert|crit|error|warn|notice|info|debug)\] "
                     r"(?P<msg>.*)", re.S)
_NGINX = re.compile(r"(?P<ts>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<lvl>\w+)\] (?:\d+#\d+: )?(?P<msg>.*)", re.S)
# Android logcat threadtime: 03-17 16:13:38.811  1702  2395 D WindowManager: msg
_LOGCAT = re.compile(r"(?P<md>\d{2}-\d{2}) (?P<t>\d{2}:\d{2}:\d{2}\.\d{3}) +\d+ +\d+ (?P<lvl>[VDIWEF]) "
                     r"(?P<tag>[^:]*?) ?: (?P<msg>.*)", re.S)
# A bare leading level: [INFO] msg, ERROR: msg, WARN msg
_BARE_LEVEL = re.compile(rf"[\[<(]?(?P<lvl>{_LEVEL_WORD})[\]>)]?(?::? +|$)(?P<msg>.*)", re.S | re.I)
# Logstash plain codec: <iso ts> <host> <msg>, and ISO then message
_ISO_ONLY = re.compile(rf"(?P<ts>{_ISO}) +(?P<msg>.*)", re.S)

_LETTER_LEVEL = {"V": "DEBUG", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL"}


def parse_line(line: str) -> Header | None:
    """The header of a log line, or None when the line has none we recognise."""
    if not line:
        return None
    first = line[0]
    if first == "<":
        m = _RFC5424.match(line)
        if m:
            return _syslog(m, _iso(m["ts"]))
        m = _RFC3164.match(line)
        if m:
            return _syslog(m, _any_ts(m["ts"]))
    elif first.isdigit():
        m = _PY_ASCTIME.match(line) or _ISO_LEVEL.match(line)
        if m:
            return Header(_iso(m["ts"]), normalise(m["lvl"]), None, m.groupdict().get("logger"), m["msg"], False)
        m = _WINDOWS.match(line)
        if m:
            return Header(_iso(m["ts"]), normalise(m["lvl"]), None, m["comp"], m["msg"], False)
        m = _YY_SLASH.match(line)
        if m:
            return Header(_yymmdd(m["d"].replace("/", ""), m["t"].replace(":", "")), normalise(m["lvl"]), None,
                          m["comp"], m["msg"], False)
        m = _CRI.match(line)
        if m:
            inner = parse_line(m["msg"])
            return inner._replace(time=inner.time or _iso(m["ts"])) if inner else Header(
                _iso(m["ts"]), None, None, None, m["msg"], False)
        m = _RFC3164.match(line)
        if m:
            return _syslog(m, _any_ts(m["ts"]))
        m = _HDFS.match(line)
        if m:
            return Header(_yymmdd(m["d"], m["t"]), normalise(m["lvl"]), None, m["comp"], m["msg"], False)
        m = _LOGCAT.match(line)
        if m:
            return Header(None, _LETTER_LEVEL[m["lvl"]], None, m["tag"].strip() or None, m["msg"], False)
        m = _NGINX.match(line)
        if m:
            return Header(_any_ts(m["ts"]), normalise(m["lvl"]), None, None, m["msg"], False)
        m = _ISO_ONLY.match(line)
        if m:
            return Header(_iso(m["ts"]), None, None, None, m["msg"], False)
    elif first in "IWEF" and len(line) > 5 and line[1].isdigit():
        m = _KLOG.match(line)
        if m:
            return Header(None, _LETTER_LEVEL[m["lvl"]], None, None, m["msg"], False)
    elif first == "[":
        m = _APACHE.match(line)
        if m:
            return Header(None, normalise(m["lvl"]), None, None, m["msg"], False)
    elif first in _MONTH_INITIALS:
        m = _RFC3164.match(line)
        if m:
            return _syslog(m, _any_ts(m["ts"]))
    if first.isalpha() or first in "[<(":
        m = _PY_BASIC.match(line)
        if m:
            return Header(None, normalise(m["lvl"]), None, m["logger"] or None, m["msg"], False)
        m = _BARE_LEVEL.match(line)
        if m and m["msg"]:
            return Header(None, normalise(m["lvl"]), None, None, m["msg"], False)
    return None


_MONTH_INITIALS = frozenset(m[0] for m in _MONTHS)


def _syslog(m: re.Match, ts: datetime | None) -> Header:
    pri = m["pri"]
    level = _SYSLOG_SEVERITY[int(pri) & 7] if pri is not None else None
    return Header(ts, level, m["host"], m["app"] if m["app"] != "-" else None, m["msg"], level is not None)


def _iso(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _any_ts(text: str) -> datetime | None:
    if text[:3] in _MONTHS:  # no year in the BSD stamp: the current one
        try:
            now = datetime.now(timezone.utc)
            return datetime(now.year, _MONTHS[text[:3]], int(text[4:6]), int(text[7:9]), int(text[10:12]),
                            int(text[13:15]), tzinfo=timezone.utc)
        except ValueError:
            return None
    if "/" in text[:10]:
        text = text.replace("/", "-", 2)
    return _iso(text)


def _yymmdd(d: str, t: str) -> datetime | None:
    try:
        return datetime(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]), int(t[:2]), int(t[2:4]), int(t[4:6]),
                        tzinfo=timezone.utc)
    except ValueError:
        return None


# A user-defined format (STREAMER_LINE_FORMAT) names its fields like Loghub: `<Date> <Time> <Level> <Component>:
# <Content>`. Which streamer field each name fills:
_FIELD_OF = {"date": "time", "time": "time", "timestamp": "time", "level": "level", "severity": "level",
             "host": "host", "node": "host", "hostname": "host", "component": "service", "service": "service",
             "program": "service", "app": "service", "content": "message", "message": "message"}


def compile_line_format(fmt: str) -> tuple[re.Pattern, list[str]]:
    """A regex for a `<Name> ... <Content>` format: each <Name> one non-blank token (the message the rest of
    the line), spaces any run of blanks, other characters literal."""
    parts = re.split(r"(<\w+>)", fmt)
    pattern, names = "", []
    for part in parts:
        if part.startswith("<") and part.endswith(">") and len(part) > 2:
            name = part[1:-1]
            group = f"g{len(names)}"
            names.append(name)
            pattern += f"(?P<{group}>.*)" if _FIELD_OF.get(name.lower()) == "message" else f"(?P<{group}>\\S+?)"
        else:
            pattern += r"\s+".join(re.escape(chunk) for chunk in part.split(" ")) if part.strip() else (
                r"\s+" if part else "")
    if not any(_FIELD_OF.get(n.lower()) == "message" for n in names):
        raise ValueError(f"line format {fmt!r} has no <Content> (or <Message>) field")
    return re.compile(pattern + r"\Z", re.S), names


def parse_with_format(compiled: re.Pattern, names: list[str], line: str) -> Header | None:
    m = compiled.match(line)
    if m is None:
        return None
    got: dict[str, str] = {}
    times: list[str] = []
    for i, name in enumerate(names):
        field = _FIELD_OF.get(name.lower())
        value = m[f"g{i}"]
        if field == "time":
            times.append(value)
        elif field is not None and field not in got:
            got[field] = value
    level = normalise(got["level"]) if "level" in got else None
    return Header(_iso(" ".join(times)) if times else None, level, got.get("host"), got.get("service"),
                  got.get("message", ""), False)
