"""Realistic input for the demo, the benchmarks and the chaos drill: log events as shippers write them
(built-in corpus, ECS JSON or plain text lines, labels removed) mixed with invalid records of every kind."""

from __future__ import annotations

import random

import orjson

from streamer.ml.corpus import generate

# Kinds of invalid input, each with the error class the decoder gives it.
INVALID_KINDS = (
    "random_bytes", "invalid_utf8", "truncated_json", "json_array", "huge_value", "deeply_nested",
    "wrong_types", "empty",
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


def shipper_value(event: dict, rng: random.Random) -> bytes:
    """One corpus event as a shipper would send it: usually ECS JSON, sometimes a plain text line."""
    event = {k: v for k, v in event.items() if k != "labels"}
    if rng.random() < 0.15:
        level = event.get("log.level")
        head = f"{event['@timestamp']} {level.upper()} " if level else f"{event['@timestamp']} "
        return (head + event["message"].replace("\n", " | ")).encode()
    return orjson.dumps(event)


def workload(n: int, invalid_ratio: float = 0.01, seed: int = 0,
             kinds: tuple[str, ...] = INVALID_KINDS) -> tuple[list[bytes], list[bytes | None], set[int]]:
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
