"""Helpers of the shipper tests: shippers as foreground daemons, the application log they ship, and the check
of what `streamer run` stored for each line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from testkit.clients import query
from testkit.pipeline import ROOT, StreamerProcess

IN_CI = bool(os.environ.get("CI"))
SYSLOG_NG = ROOT / ".stack" / "syslog-ng" / "syslog-ng"  # the wrapper scripts/syslog-ng.sh writes
README = ROOT / "README.md"


def readme_snippet(first_line: str, replace: dict[str, str] | None = None, doc: Path = README) -> str:
    """The code block of README.md (or `doc`) that starts with `first_line` (the tests use what the docs show),
    with each `replace` pair applied (each key is literal text that must be there)."""
    blocks = [
        b for b in re.findall(r"^```[^\n]*\n(.*?)^```", doc.read_text(), re.S | re.M) if b.startswith(first_line + "\n")
    ]
    assert len(blocks) == 1, f"{len(blocks)} code blocks in {doc.name} start with {first_line!r}"
    text = blocks[0]
    for old, new in (replace or {}).items():
        assert old in text, f"snippet {first_line!r} no longer contains {old!r}"
        text = text.replace(old, new)
    return text


def require(path: str | Path | None, what: str, how: str, module: bool = False) -> str:
    """The executable, or skip (developer machine) / fail (CI) saying how to get it. module=True: called at
    import, so a developer machine skips before the broker and database fixtures are set up; in CI the test's
    own call fails."""
    if path and os.access(path, os.X_OK):
        return str(path)
    if IN_CI:
        if module:
            return ""
        pytest.fail(f"{what} is missing in CI: {how}", pytrace=False)
    pytest.skip(f"{what} not installed: {how}", allow_module_level=module)


class Daemon:
    """A shipper in the foreground; output to a file, stopped with SIGTERM (it flushes to Kafka on the way out)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "ab")
        # TZ=UTC: the BSD timestamps of the default file formats carry no zone, the decoder reads them as UTC.
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TZ": "UTC", **(env or {})},
            start_new_session=True,
        )

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        try:
            self.proc.terminate()  # a no-op once it has exited
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            self._log.close()
        return self.proc.returncode


ENVELOPE = "envelope"


@dataclass(frozen=True)
class Line:
    """A line an application writes to its log file, and what streamer must store for it.

    time None: the line states no time, so the shipper's (the moment it read the line) is expected.
    level, host, service: what the line states; ENVELOPE marks "what the shipper stamped on the record".
    """

    text: str
    message: str
    level: str | None
    time: datetime | None = None
    host: str | None = ENVELOPE
    service: str | None = ENVELOPE
    logger: str | None = None  # the logger its header names: the service when the envelope names none


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# One application log: log4j/logback, Python logging, a bare level word, and a line with no header at all.
APP_LOG: list[Line] = [
    Line(
        "2024-06-01 12:00:00,123 ERROR com.example.Payment - payment 17 declined: card expired",
        "payment 17 declined: card expired",
        "ERROR",
        utc("2024-06-01 12:00:00.123"),
        logger="com.example.Payment",
    ),
    Line(
        "2024-06-01 12:00:00,456 - checkout.db - WARNING - pool exhausted, 20 of 20 connections in use",
        "pool exhausted, 20 of 20 connections in use",
        "WARN",
        utc("2024-06-01 12:00:00.456"),
        logger="checkout.db",
    ),
    Line("FATAL out of memory in worker 3, shutting down", "out of memory in worker 3, shutting down", "FATAL"),
    Line("GET /api/orders/42 200 12ms", "GET /api/orders/42 200 12ms", ENVELOPE),
]


@dataclass
class Row:
    event_time: datetime
    level: str | None
    host: str | None
    service: str | None
    message: str
    raw: dict


class Pipeline:
    """A real `streamer run` on this test's topics and schema, and what it stored."""

    def __init__(self, bootstrap: str, topic: str, db_url: str, proc: StreamerProcess):
        self.bootstrap, self.topic, self.db_url, self.proc = bootstrap, topic, db_url, proc

    def rows(self, expected: int, daemon: Daemon | None = None, timeout: float = 60.0) -> list[Row]:
        """Wait until `expected` rows are stored (and a moment more: no extra row may follow)."""
        deadline = time.monotonic() + timeout
        while self._count() < expected:
            assert self.proc.alive(), f"streamer exited:\n{self.proc.output()[-3000:]}"
            if time.monotonic() > deadline:
                got = self._count()
                shipper = (
                    f"\n{daemon.name} ({'running' if daemon.alive() else 'exited'}):\n{daemon.output()}"
                    if daemon
                    else ""
                )
                raise AssertionError(
                    f"{got} of {expected} rows stored after {timeout}s{shipper}\n"
                    f"streamer:\n{self.proc.output()[-2000:]}"
                )
            time.sleep(0.25)
        time.sleep(1.0)
        got = query(
            self.db_url,
            "SELECT event_time, level, host, service, message, raw FROM log_entries WHERE kafka_topic = %s",
            [self.topic],
        )
        assert len(got) == expected, f"{len(got)} rows stored, {expected} lines shipped"
        return [Row(*r) for r in got]

    def _count(self) -> int:
        return query(self.db_url, "SELECT count(*) FROM log_entries WHERE kafka_topic = %s", [self.topic])[0][0]


def write_app_log(path: Path, lines: list[Line]) -> datetime:
    """Write the lines as the application would; returns the moment before (floored to the second)."""
    before = datetime.now(UTC).replace(microsecond=0)
    path.write_text("".join(line.text + "\n" for line in lines))
    return before


def check_rows(
    rows: list[Row],
    lines: list[Line],
    *,
    host: str | None,
    service: str | None,
    envelope_level: str | None,
    since: datetime,
    shipped_at: datetime | None = None,
) -> None:
    """Each line stored once with the expected time, level, host, service and message; raw keeps the record.

    host, service, envelope_level: what the shipper stamped on every record. A line without a time of its own
    takes the shipper's: shipped_at when the record states it, else between `since` and now (the shipper's clock).
    """
    until = datetime.now(UTC) + timedelta(seconds=1)
    problems = []
    for line in lines:
        mine = [r for r in rows if line.message in orjson.dumps(r.raw).decode()]
        if len(mine) != 1:
            problems.append(f"{line.text!r}: {len(mine)} rows")
            continue
        r = mine[0]
        if not _keeps(r.raw, line.text):
            problems.append(f"{line.text!r}: raw does not keep the record: {r.raw}")
        want = {
            "level": envelope_level if line.level == ENVELOPE else line.level,
            "host": host if line.host == ENVELOPE else line.host,
            "service": (service or line.logger) if line.service == ENVELOPE else line.service,
            "message": line.message,
        }
        got = {"level": r.level, "host": r.host, "service": r.service, "message": r.message}
        if line.time is not None or shipped_at is not None:
            got["time"], want["time"] = r.event_time, line.time or shipped_at
        elif not since <= r.event_time <= until:
            problems.append(f"{line.text!r}: time {r.event_time} is not the shipper's clock ({since}..{until})")
        if got != want:
            problems.append(f"{line.text!r}:\n    got  {got}\n    want {want}")
    assert not problems, "\n".join(problems)


def _keeps(raw: dict, text: str) -> bool:
    """raw holds the record: every field of a JSON line, or the text line (inside the shipper's record)."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        return all(raw.get(k) == v for k, v in obj.items())
    return any(isinstance(v, str) and text in v for v in raw.values())


def syslog_ng_version(binary: str) -> str:
    """The config version (`@version: 3.38`) of that build."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"^Installer-Version: (\d+\.\d+)", out, re.M)
    assert found, f"no version in `syslog-ng --version`:\n{out}"
    return found.group(1)


def which(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
