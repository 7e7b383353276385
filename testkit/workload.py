"""Realistic input for the demo, the benchmarks and the chaos drill: log events as shippers write them
(built-in corpus, ECS JSON or plain text lines, labels removed) mixed with invalid records of every kind."""

from __future__ import annotations

import random

import orjson

from streamer.levels import normalise
from streamer.ml.corpus import generate

# Kinds of invalid input, each with the error class the decoder gives it.
INVALID_KINDS = (
    "random_bytes",
    "invalid_utf8",
    "truncated_json",
    "json_array",
    "huge_value",
    "deeply_nested",
    "wrong_types",
    "empty",
)
HUGE_VALUE_BYTES = 2 * 1024 * 1024  # over the default 1 MiB limit


def invalid_value(kind: str, rng: random.Random) -> bytes:
    if kind == "random_bytes":
        # Starts with a byte that is never valid UTF-8, so it cannot be mistaken for a text line.
        return b"\xff" + rng.randbytes(rng.randrange(1, 200))
    if kind == "invalid_utf8":
        return b"2024-06-01 12:00:00 ERROR caf\xe9 \xc3\x28 broken encoding"
    if kind == "truncated_json":
        return orjson.dumps({"message": "cut short", "log.level": "INFO", "n": rng.randrange(10**6)})[:-7]
    if kind == "json_array":
        return b"[]"  # an array of no events (an array of events is a multi-record message, decoded)
    if kind == "huge_value":
        return orjson.dumps({"message": "x" * HUGE_VALUE_BYTES})
    if kind == "deeply_nested":
        return b'{"message": "deep", "a": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001
    if kind == "wrong_types":
        return orjson.dumps({"message": rng.choice([42, None, ["list"], {"text": "obj"}]), "level": "ERROR"})
    if kind == "empty":
        return b""
    raise ValueError(kind)


_SYSLOG_SEVERITY = {"DEBUG": 7, "INFO": 6, "WARN": 4, "ERROR": 3, "FATAL": 2}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _text_line(event: dict, rng: random.Random) -> bytes:
    """The event as a line with a header real software writes (parsed back by streamer.lineformats)."""
    ts, message = event["@timestamp"], event["message"].replace("\n", " | ")
    level = normalise(event.get("log.level")) or ""  # the corpus spells levels many ways; a header one way
    host, service = event.get("host.name") or "host-1", event.get("service.name") or "app"
    date, time = ts[:10], ts[11:19]
    kind = rng.random()
    if kind < 0.3:  # RFC 3164 as rsyslog/syslog-ng forward it: PRI, BSD time, host, tag
        pri = 8 + _SYSLOG_SEVERITY.get(level, 6)  # facility user
        bsd = f"{_MONTHS[int(date[5:7]) - 1]} {int(date[8:10]):2d} {time}"
        return f"<{pri}>{bsd} {host} {service}[{rng.randrange(100, 9999)}]: {message}".encode()
    if kind < 0.45:  # RFC 5424
        pri = 8 + _SYSLOG_SEVERITY.get(level, 6)
        return f"<{pri}>1 {ts} {host} {service} {rng.randrange(100, 9999)} - - {message}".encode()
    if kind < 0.75:  # log4j/logback: date time,ms - LEVEL [thread] logger - text
        return (
            f"{date} {time},{rng.randrange(1000):03d} - {level or 'INFO':<5} [main] "
            f"com.example.{service.title()} - {message}"
        ).encode()
    head = f"{ts} {level} " if level else f"{ts} "  # the simplest: ISO time, level, text
    return (head + message).encode()


def shipper_value(event: dict, rng: random.Random) -> bytes:
    """One corpus event as a shipper would send it: mostly ECS JSON; a third are text lines with the headers
    syslog (RFC 3164/5424), log4j and plain timestamped writers put on them."""
    event = {k: v for k, v in event.items() if k != "labels"}
    if rng.random() < 0.33:
        return _text_line(event, rng)
    return orjson.dumps(event)


def workload(
    n: int, invalid_ratio: float = 0.01, seed: int = 0, kinds: tuple[str, ...] = INVALID_KINDS
) -> tuple[list[bytes], list[bytes | None], set[int]]:
    """n values (with keys: the host name) of which about invalid_ratio are invalid.
    Returns (values, keys, indexes of the invalid values)."""
    rng = random.Random(seed)
    events = generate(n, seed=seed)
    values: list[bytes] = []
    keys: list[bytes | None] = []
    invalid: set[int] = set()
    for i, event in enumerate(events):
        if rng.random() < invalid_ratio:
            values.append(invalid_value(kinds[len(invalid) % len(kinds)], rng))
            invalid.add(i)
        else:
            values.append(shipper_value(event, rng))
        keys.append(str(event.get("host.name", "")).encode() or None)
    return values, keys, invalid
