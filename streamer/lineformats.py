"""Parse the header of a plain-text log line: time, level, host, service, and the message without the header.

The line's shape picks the formats to try (first character, then a few fixed positions: `2024-` is ISO, `081109 `
is yymmdd, `03-17 ` is logcat...), so most lines try one or two precompiled regexes. What a line states itself
is what `parse_line` returns; nothing is guessed.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
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
_MONTHS = {
    m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)
}
_LEVEL_WORD = r"(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|SEVERE|FATAL|CRITICAL|CRIT)"
_ISO = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
# BSD stamp; the day is space-padded by syslogd ("Dec  2"), some collectors write it unpadded ("Nov 9")
_BSD_TS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) {1,2}\d{1,2} \d{2}:\d{2}:\d{2}"
# A syslog TAG: program[pid], then what some daemons add before the colon: a version (`syslogd 1.4.1:`), a macOS
# sub-process (`sandboxd[129] ([31211]):`), login's `-- root[2421]:`.
_TAG = r"(?:-- )?(?P<app>[^\s:\[]+)(?:\[\d+\])?(?: [\w.-]+(?:\[\d+\])?| \([^()]*\)){0,3}:(?: |$)"

# <PRI>1 ISO host app procid msgid [SD|-] msg
_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) \S+ \S+ "
    r"(?:-|(?:\[[^\]]*\])+) ?(?P<msg>.*)",
    re.S,
)
# [<PRI>]Mmm dd hh:mm:ss host tag[pid]: msg  (RFC 3164, and the rsyslog/syslog-ng file format); also ISO stamps
_RFC3164 = re.compile(rf"(?:<(?P<pri>\d{{1,3}})>)?(?P<ts>{_BSD_TS}|{_ISO}) +(?P<host>\S+) +{_TAG}(?P<msg>.*)", re.S)
# Go klog/glog: I1202 15:04:05.000000 123 file.go:42] msg
_KLOG = re.compile(
    r"(?P<lvl>[IWEF])(?P<mm>\d{2})(?P<dd>\d{2}) (?P<t>\d{2}:\d{2}:\d{2}(?:\.\d+)?) +\d+ "
    r"(?P<src>[^\s:]+:\d+)\] ?(?P<msg>.*)",
    re.S,
)
# After an ISO timestamp, one alternation for the layouts that start with one (the first branch that fits wins):
_AFTER_ISO = re.compile(
    # Python logging asctime default: - name - LEVEL - msg
    rf" - (?P<a_logger>\S+) - (?P<a_lvl>{_LEVEL_WORD}) - (?P<a_msg>.*)"
    # OpenStack oslo.log: pid LEVEL logger [request context] msg
    rf"| (?P<o_pid>\d+) (?P<o_lvl>{_LEVEL_WORD}) (?P<o_logger>\S+) (?:\[[^\]]*\] )?(?P<o_msg>.*)"
    # log4j/logback: optional [thread], level, [thread] when a " - " follows it (`%-5p [%t] %c - %m`), optional
    # logger, then " - ", ":" or blanks
    rf"|(?: \[(?P<l_thread>[^\]]*)\])? +(?:- )?\[?(?P<l_lvl>{_LEVEL_WORD})\]?"
    r"(?: +\[(?P<l_thread2>[^\]]*)\](?= +(?:[\w.$]+ +)?- ))?"
    r"(?: +(?P<l_logger>[\w.$]+(?:\[[^\]]*\])?)(?=: | +- ))?(?: +- +|: +| +|$)(?P<l_msg>.*)"
    # Windows CBS: ", Info   CBS    msg"
    r"|, (?P<w_lvl>[A-Za-z]+) +(?P<w_comp>\S+) +(?P<w_msg>.*)"
    # CRI container runtime: stdout|stderr F|P msg
    r"| (?:stdout|stderr) [FP] (?P<c_msg>.*)",
    re.S,
)
_ISO_AT_START = re.compile(_ISO)
# HDFS-style: yymmdd hhmmss pid LEVEL component: msg
_HDFS = re.compile(rf"(?P<d>\d{{6}}) (?P<t>\d{{6}}) +\d+ (?P<lvl>{_LEVEL_WORD}) (?P<comp>[^\s:]+): (?P<msg>.*)", re.S)
# Spark/log4j short: yy/mm/dd hh:mm:ss LEVEL component: msg
_YY_SLASH = re.compile(
    rf"(?P<d>\d{{2}}/\d{{2}}/\d{{2}}) (?P<t>\d{{2}}:\d{{2}}:\d{{2}}) (?P<lvl>{_LEVEL_WORD}) "
    r"(?P<comp>[^\s:]+): (?P<msg>.*)",
    re.S,
)
# Apache/nginx error log: [Sun Dec 04 04:47:44 2005] [error] msg ; nginx: 2024/01/01 10:00:00 [error] 1#1: msg
_APACHE = re.compile(
    r"\[(?P<ts>[^\]]+)\] \[(?:[\w]+:)?(?P<lvl>emerg|alert|crit|error|warn|notice|info|debug)\] "
    r"(?P<msg>.*)",
    re.S,
)
# Common/Combined Log Format (Apache and nginx access logs): client ident user [10/Oct/2000:13:55:36 -0700] "GET /
# HTTP/1.0" 200 2326. The client is not the host that logged the line, and a status is not a level: only the time.
_CLF = re.compile(r'\S+ \S+ (?:\S+|"[^"]*") \[(?P<ts>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "')
_NGINX = re.compile(r"(?P<ts>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<lvl>\w+)\] (?:\d+#\d+: )?(?P<msg>.*)", re.S)
# Android logcat threadtime: 03-17 16:13:38.811  1702  2395 D WindowManager: msg
_LOGCAT = re.compile(
    r"(?P<md>\d{2}-\d{2}) (?P<t>\d{2}:\d{2}:\d{2}\.\d{3}) +\d+ +\d+ (?P<lvl>[VDIWEF]) "
    r"(?P<tag>[^:]*?) ?: (?P<msg>.*)",
    re.S,
)
# A bracketed timestamp, a program and " - " (Proxifier and other Windows tools): [10.30 16:49:06] app.exe *64 - msg
_BRACKET_PROGRAM = re.compile(r"\[(?P<ts>[\d.:/ -]+)\] (?P<prog>[^\s\[\]]+)(?: \*64)? - (?P<msg>.*)", re.S)
# Pipe-separated header: timestamp|component|pid|msg (Huawei's Android health services)
_PIPES = re.compile(
    r"(?P<ts>\d{8}-\d{1,2}:\d{1,2}:\d{1,2}(?::\d{1,3})?)\|(?P<comp>[^|]+)\|(?P<pid>\d+)\|(?P<msg>.*)", re.S
)
# LANL HPC event log: logid node component state epoch flag msg
_LANL = re.compile(r"\d+ (?P<node>\S+) (?P<comp>\S+) \S+ (?P<epoch>\d{9,10}) -?\d+ (?P<msg>.*)", re.S)
# The alert-tagged prefix of the CFDR supercomputer logs (BlueGene/L, Thunderbird, Spirit, Liberty):
# alert-category|- epoch yyyy.mm.dd node, then a RAS record or a syslog line.
_CFDR = re.compile(r"(?:-|[A-Z][A-Z_]*) (?P<epoch>\d{9,10}) \d{4}\.\d{2}\.\d{2} (?P<node>\S+) (?P<rest>.*)", re.S)
# BlueGene/L RAS record: yyyy-mm-dd-hh.mm.ss.ffffff location type component LEVEL msg
_RAS = re.compile(
    r"\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d{6} \S+ \S+ (?P<comp>\S+) (?P<lvl>[A-Z]+) (?P<msg>.*)", re.S
)
# A syslog line without a tag (kernel messages in some collectors' files): stamp, host, message
_BSD_NO_TAG = re.compile(rf"{_BSD_TS} +\S+ +(?P<msg>.*)", re.S)
# Lines that start with a word or a bracket, one alternation (the first branch that fits wins):
_WORD_HEAD = re.compile(
    # a leading log file name, as multi-file collectors prefix lines (`nova-api.log.1 ...`, `app.log: ...`)
    r"(?P<stem>[\w-]+)\.log(?:\.[\w.:-]+)?:? "
    # Python logging basicConfig default: LEVEL:logger:msg
    rf"|(?P<p_lvl>{_LEVEL_WORD}):(?P<p_logger>[^:\s]*):(?P<p_msg>.*)"
    # a bare leading level: bracketed in any case ([info] msg, <warn> msg), else in capitals (ERROR: msg, WARN msg);
    # "Error returned from x", "Trace cache: 12K" and sshd's "error: ..." are messages, not headers
    rf"|(?:(?i:[\[<(](?P<b_lvl>{_LEVEL_WORD})[\]>)])|(?P<c_lvl>{_LEVEL_WORD}))(?::? +|:?$)(?P<b_msg>.*)",
    re.S,
)
# Logstash plain codec: <iso ts> <host> <msg>, and ISO then message
_ISO_ONLY = re.compile(rf"(?P<ts>{_ISO}) +(?P<msg>.*)", re.S)

_MAX_DEPTH = 3  # headers inside headers taken off at most (CRI → syslog → log4j is 2)
_INNER_STARTS = frozenset("0123456789[<(" + "TDINWESFC")  # what a level-stating header can start with

_LETTER_LEVEL = {"V": "DEBUG", "D": "DEBUG", "I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL"}
_MONTH_INITIALS = frozenset(m[0] for m in _MONTHS)


def parse_line(line: str, depth: int = 0) -> Header | None:
    """The header of a log line, or None when the line has none we recognise.

    A header may wrap another (a CRI or syslog record around an application's log4j line, a file-name prefix);
    depth counts the wrappers already taken off, and a few are enough (never a recursion per repeated prefix)."""
    if not line:
        return None
    bracket = line.find(" [", 0, 120)  # an access log's time, after client, ident and user
    if bracket > 0 and line[bracket + 4 : bracket + 5] == "/":
        m = _CLF.match(line)
        if m:
            return Header(_clf_ts(m["ts"]), None, None, None, line, False)
    first = line[0]
    if first.isdigit():
        head = _digit_line(line, depth)
        if head is not None:
            return head
    elif first == "<":
        m = _RFC5424.match(line)
        if m:
            return _syslog(m, _iso(m["ts"]), depth)
        m = _RFC3164.match(line)
        if m:
            return _syslog(m, _any_ts(m["ts"]), depth)
    elif first in _MONTH_INITIALS and line[3:4] == " ":
        m = _RFC3164.match(line)
        if m:
            return _syslog(m, _any_ts(m["ts"]), depth)
    elif first == "[":
        m = _APACHE.match(line)
        if m:
            return Header(_ctime_ts(m["ts"]), normalise(m["lvl"]), None, None, m["msg"], False)
        m = _BRACKET_PROGRAM.match(line)
        if m:
            return Header(_month_day_ts(m["ts"]), None, None, m["prog"], m["msg"], False)
    elif first in "IWEF" and line[1:2].isdigit():
        m = _KLOG.match(line)
        if m:
            return Header(None, _LETTER_LEVEL[m["lvl"]], None, None, m["msg"], False)
    if first == "-" or first.isupper():
        space = line.find(" ", 0, 20)
        if space > 0 and line[space + 1 : space + 2].isdigit():
            m = _CFDR.match(line)
            if m:
                return _cfdr(m)
    if first.isalpha() or first in "[<(":
        m = _WORD_HEAD.match(line)
        if m is None:
            return None
        if m["stem"] is not None:
            inner = parse_line(line[m.end() :], depth + 1) if depth < _MAX_DEPTH else None
            return inner._replace(service=m["stem"]) if inner is not None else None
        if m["p_lvl"] is not None:
            return Header(None, normalise(m["p_lvl"]), None, m["p_logger"] or None, m["p_msg"], False)
        if m["b_msg"]:
            return Header(None, normalise(m["b_lvl"] or m["c_lvl"]), None, None, m["b_msg"], False)
    return None


def _digit_line(line: str, depth: int) -> Header | None:
    """Lines that start with a digit, dispatched on the punctuation at fixed positions."""
    c2, c4, c6, c8 = line[2:3], line[4:5], line[6:7], line[8:9]
    if c4 == "-" and line[7:8] == "-":  # ISO date
        iso = _ISO_AT_START.match(line)
        if iso is None:
            return None
        ts = _iso(iso.group())
        m = _AFTER_ISO.match(line, iso.end())
        if m is not None:
            kind = (m.lastgroup or "?")[0]  # the branch that fitted, by its groups' prefix
            if kind == "a":
                return Header(ts, normalise(m["a_lvl"]), None, m["a_logger"], m["a_msg"], False)
            if kind == "o":
                return Header(ts, normalise(m["o_lvl"]), None, m["o_logger"], m["o_msg"], False)
            if kind == "l":
                return Header(ts, normalise(m["l_lvl"]), None, m["l_logger"], m["l_msg"], False)
            if kind == "w":
                return Header(ts, normalise(m["w_lvl"]), None, m["w_comp"], m["w_msg"], False)
            # CRI: the container's own line may carry a header
            inner = parse_line(m["c_msg"], depth + 1) if depth < _MAX_DEPTH else None
            return inner._replace(time=inner.time or ts) if inner else Header(ts, None, None, None, m["c_msg"], False)
        m = _RFC3164.match(line)
        if m:
            return _syslog(m, ts, depth)
        m = _ISO_ONLY.match(line)
        if m:
            return Header(ts, None, None, None, m["msg"], False)
        return None
    if c6 == " " and line[13:14] == " ":
        m = _HDFS.match(line)
        if m:
            return Header(_yymmdd(m["d"], m["t"]), normalise(m["lvl"]), None, m["comp"], m["msg"], False)
    if c2 == "/":
        m = _YY_SLASH.match(line)
        if m:
            return Header(
                _yymmdd(m["d"].replace("/", ""), m["t"].replace(":", "")),
                normalise(m["lvl"]),
                None,
                m["comp"],
                m["msg"],
                False,
            )
    elif c2 == "-":
        m = _LOGCAT.match(line)
        if m:
            return Header(None, _LETTER_LEVEL[m["lvl"]], None, m["tag"].strip() or None, m["msg"], False)
    elif c4 == "/":
        m = _NGINX.match(line)
        if m:
            return Header(_any_ts(m["ts"]), normalise(m["lvl"]), None, None, m["msg"], False)
    elif c8 == "-":
        m = _PIPES.match(line)
        if m:
            return Header(_compact_ts(m["ts"]), None, None, m["comp"], m["msg"], False)
    m = _LANL.match(line)
    if m:
        return Header(_epoch(m["epoch"]), None, m["node"], m["comp"], m["msg"], False)
    return None


def _cfdr(m: re.Match) -> Header | None:
    rest = m["rest"]
    ras = _RAS.match(rest)
    if ras is not None:
        return Header(_epoch(m["epoch"]), normalise(ras["lvl"]), m["node"], ras["comp"], ras["msg"], False)
    inner = _RFC3164.match(rest)
    if inner is not None:
        return Header(_epoch(m["epoch"]), None, m["node"], inner["app"], inner["msg"], False)
    bare = _BSD_NO_TAG.match(rest)
    if bare is not None:
        return Header(_epoch(m["epoch"]), None, m["node"], None, bare["msg"], False)
    return Header(_epoch(m["epoch"]), None, m["node"], None, rest, False)


def _syslog(m: re.Match, ts: datetime | None, depth: int) -> Header:
    pri = m["pri"]
    level = _SYSLOG_SEVERITY[int(pri) & 7] if pri is not None else None
    app = m["app"] if m["app"] != "-" else None
    msg = m["msg"]
    # A shipped application line inside the record (imfile, syslog-ng file source): when it states a level, its
    # level, time and content are the event's (the PRI is what the shipper stamped on every line); the record's
    # host and tag stay.
    inner = parse_line(msg, depth + 1) if depth < _MAX_DEPTH and msg[:1] in _INNER_STARTS else None
    if inner is not None and inner.level is not None and inner.message:
        return Header(inner.time or ts, inner.level, m["host"], app or inner.service, inner.message, False)
    return Header(ts, level, m["host"], app, msg, level is not None)


def _iso(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _any_ts(text: str) -> datetime | None:
    if text[:3] in _MONTHS:  # no year in the BSD stamp: the current one
        try:
            day, clock = text[4:].split()
            return datetime(
                _this_year(),
                _MONTHS[text[:3]],
                int(day),
                int(clock[:2]),
                int(clock[3:5]),
                int(clock[6:8]),
                tzinfo=UTC,
            )
        except ValueError:
            return None
    if "/" in text[:10]:
        text = text.replace("/", "-", 2)
    return _iso(text)


def _ctime_ts(text: str) -> datetime | None:
    """Apache's error-log stamp: `Sun Dec 04 04:47:44 2005`, 2.4 adds microseconds (`04:47:44.123456`). The
    server's local time, of a zone the line does not state: read as UTC, like the BSD stamp."""
    parts = text.split()
    if len(parts) != 5 or parts[1] not in _MONTHS:
        return None
    try:
        clock, _, fraction = parts[3].partition(".")
        hour, minute, second = (int(x) for x in clock.split(":"))
        micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
        return datetime(int(parts[4]), _MONTHS[parts[1]], int(parts[2]), hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None


def _clf_ts(text: str) -> datetime | None:
    """`10/Oct/2000:13:55:36 -0700`, in UTC."""
    try:
        offset = (1 if text[21] == "+" else -1) * timedelta(hours=int(text[22:24]), minutes=int(text[24:26]))
        local = datetime(
            int(text[7:11]), _MONTHS[text[3:6]], int(text[:2]), int(text[12:14]), int(text[15:17]), int(text[18:20])
        )
    except (KeyError, ValueError):
        return None
    return (local - offset).replace(tzinfo=UTC)


_year_cache: list = [0.0, 0]  # [valid until (time.time()), year]: stamps without a year are common, now() is not free


def _this_year() -> int:
    now = time.time()
    if now >= _year_cache[0]:
        _year_cache[:] = [now + 60, datetime.now(UTC).year]
    return _year_cache[1]


def _month_day_ts(text: str) -> datetime | None:
    """`mm.dd hh:mm:ss` (no year: the current one); else whatever ISO makes of it."""
    try:
        return datetime(
            _this_year(),
            int(text[:2]),
            int(text[3:5]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[12:14]),
            tzinfo=UTC,
        )
    except ValueError:
        return _iso(text)


def _compact_ts(text: str) -> datetime | None:
    """yyyymmdd-h:m:s[:ms], the clock fields not always zero-padded"""
    try:
        clock = [int(x) for x in text[9:].split(":")]
        ms = int(text[9:].rsplit(":", 1)[1].ljust(3, "0")) if len(clock) == 4 else 0
        return datetime(
            int(text[:4]), int(text[4:6]), int(text[6:8]), clock[0], clock[1], clock[2], ms * 1000, tzinfo=UTC
        )
    except (ValueError, IndexError):
        return None


def _epoch(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _yymmdd(d: str, t: str) -> datetime | None:
    try:
        return datetime(2000 + int(d[:2]), int(d[2:4]), int(d[4:6]), int(t[:2]), int(t[2:4]), int(t[4:6]), tzinfo=UTC)
    except ValueError:
        return None


# A user-defined format (STREAMER_LINE_FORMAT) names its fields like Loghub: `<Date> <Time> <Level> <Component>:
# <Content>`. Which streamer field each name fills:
_FIELD_OF = {
    "date": "time",
    "time": "time",
    "timestamp": "time",
    "level": "level",
    "severity": "level",
    "host": "host",
    "node": "host",
    "hostname": "host",
    "component": "service",
    "service": "service",
    "program": "service",
    "app": "service",
    "content": "message",
    "message": "message",
}


def compile_line_format(fmt: str) -> tuple[re.Pattern, list[str]]:
    """A regex for a `<Name> ... <Content>` format: each <Name> one non-blank token (the message the rest of
    the line), spaces any run of blanks, other characters literal."""
    parts = re.split(r"(<\w+>)", fmt)
    pattern, names = "", []  # type: tuple[str, list[str]]
    for part in parts:
        if part.startswith("<") and part.endswith(">") and len(part) > 2:
            name = part[1:-1]
            group = f"g{len(names)}"
            names.append(name)
            pattern += f"(?P<{group}>.*)" if _FIELD_OF.get(name.lower()) == "message" else f"(?P<{group}>\\S+?)"
        else:
            pattern += (
                r"\s+".join(re.escape(chunk) for chunk in part.split(" ")) if part.strip() else (r"\s+" if part else "")
            )
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
    return Header(
        _iso(" ".join(times)) if times else None,
        level,
        got.get("host"),
        got.get("service"),
        got.get("message", ""),
        False,
    )
