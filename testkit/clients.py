"""The real broker and database as tests and benchmarks reach them (no mocks of either): produce, consume,
query, wait."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# What `make up` brings up; tests use it when no STREAMER_TEST_* variable and no Docker engine says otherwise.
LOCAL_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_SASL_BOOTSTRAP = "127.0.0.1:9094"
LOCAL_DATABASE_URL = "postgresql://streamer:streamer@127.0.0.1:5432/streamer"


@dataclass(frozen=True)
class Record:
    """A consumed Kafka message, detached from librdkafka (safe to keep after the consumer closes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    timestamp: int | None = None  # milliseconds since the epoch, None when the broker gave none

    def json(self) -> Any:
        return json.loads(self.value) if self.value is not None else None

    def header(self, name: str) -> bytes | None:
        """The last header called `name`, or None."""
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found


def _encode(value: Any) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _per_message_headers(headers: Any, n: int) -> list[Any]:
    # One header set for every message, or a list with one entry (list/dict/None) per message.
    if (
        isinstance(headers, list)
        and len(headers) == n
        and all(h is None or isinstance(h, (list, dict)) for h in headers)
    ):
        return headers
    return [headers] * n


def produce(
    bootstrap: str,
    topic: str,
    values: Iterable[Any],
    keys: Iterable[Any] | None = None,
    partition: int | None = None,
    headers: Any = None,
    config: dict | None = None,
    timeout: float = 30.0,
) -> list[tuple[int, int]]:
    """Produce `values` (bytes, str, or anything JSON-encodable) in order, flush, and assert all were acked.

    keys: one per value (same encoding rules) or None. partition: pin every message to it. headers: one
    header list/dict for all messages or a list with one per message. config: extra librdkafka properties
    (SASL, ...). Returns the (partition, offset) of each message, in the order given.
    """
    from confluent_kafka import Producer

    values = list(values)
    keys = list(keys) if keys is not None else [None] * len(values)
    assert len(keys) == len(values), f"{len(keys)} keys for {len(values)} values"
    per_headers = _per_message_headers(headers, len(values))
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5, "log_level": 3, **(config or {})}
    )
    delivered: list[tuple[int, int] | None] = [None] * len(values)
    errors: list[str] = []

    def on_delivery(i):
        def cb(err, msg):
            if err is not None:
                errors.append(f"message {i}: {err}")
            else:
                delivered[i] = (msg.partition(), msg.offset())

        return cb

    for i, (k, v, h) in enumerate(zip(keys, values, per_headers)):
        kwargs = {"value": _encode(v), "key": _encode(k), "on_delivery": on_delivery(i)}
        if partition is not None:
            kwargs["partition"] = partition
        if h:
            kwargs["headers"] = list(h.items()) if isinstance(h, dict) else h
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(timeout)
    assert left == 0, f"{left} of {len(values)} messages to {topic} not delivered within {timeout}s"
    assert not errors, f"delivery to {topic} failed: {errors[:5]}"
    return [d for d in delivered]  # type: ignore[misc]


def consume_all(
    bootstrap: str, topic: str, expected: int | None = None, timeout: float = 30.0, config: dict | None = None
) -> list[Record]:
    """Read `topic` from the beginning with a throwaway consumer; return the records sorted by (partition, offset).

    Stops once `expected` records arrived, or (expected=None) once every partition reached its end. Fails
    with an AssertionError when that does not happen within `timeout` seconds. Commits nothing.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"consume-all-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "log_level": 3,
            **(config or {}),
        }
    )
    records: list[Record] = []
    try:
        md = consumer.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        assert tmd is not None and tmd.error is None and tmd.partitions, f"topic {topic} not found: {tmd and tmd.error}"
        partitions = sorted(tmd.partitions)
        # assign(), not subscribe(): no group rebalance to wait for.
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while True:
            if expected is not None and len(records) >= expected:
                break
            if expected is None and at_end.issuperset(partitions):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                want = f"{expected} records" if expected is not None else "the end of every partition"
                raise AssertionError(
                    f"consume_all({topic!r}): got {len(records)} records, not {want}, within {timeout}s"
                )
            for msg in consumer.consume(num_messages=1000, timeout=min(remaining, 0.5)):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition())
                        continue
                    raise AssertionError(f"consume_all({topic!r}): {err}")
                at_end.discard(msg.partition())
                records.append(
                    Record(
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                        msg.key(),
                        msg.value(),
                        list(msg.headers() or []),
                        _timestamp(msg),
                    )
                )
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _timestamp(msg) -> int | None:
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

    kind, ts = msg.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE else ts


def query(db_url: str, sql: str, params: Any = None) -> list[tuple]:
    """Run one statement on a fresh connection and return its rows ([] when it returns none)."""
    import psycopg

    with psycopg.connect(db_url, connect_timeout=10) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll predicate() until it returns a truthy value (returned) or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def with_search_path(url: str, schema: str) -> str:
    """`url` with libpq options selecting `schema` (appends to any query string already there)."""
    from urllib.parse import quote

    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def free_port() -> int:
    """A TCP port nothing listens on right now (for a metrics endpoint or a container mapping)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:port/path -> (status, body); a 503 from /readyz still has a body worth reading."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
