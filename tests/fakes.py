"""Small stand-ins for the pipeline's clients and sinks (unit tests only; integration tests use the real broker
and database): a consumer of a fixed list of records, a producer-backed sink that acknowledges everything, and
database sinks sharing one Store whose `behaviour` may block or fail a write."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from confluent_kafka import TopicPartition

from streamer.errors import Dependency, TransientError
from streamer.ml.scorer import ScoreColumns

TOPIC = "logs.raw"


class Message:
    def __init__(self, partition: int, offset: int, topic: str = TOPIC):
        self._partition, self._offset, self._topic = partition, offset, topic
        self._value = json.dumps({"message": f"event {partition}/{offset}", "level": "INFO"}).encode()

    def error(self):
        return None

    def topic(self):
        return self._topic

    def partition(self):
        return self._partition

    def offset(self):
        return self._offset

    def value(self):
        return self._value

    def key(self):
        return None

    def headers(self):
        return None

    def timestamp(self):
        return 1, 1_700_000_000_000


def messages(partition: int, offsets: range) -> list[Message]:
    return [Message(partition, o) for o in offsets]


class FakeConsumer:
    """Hands out `records` in order, to whoever subscribed, with all their partitions assigned at the first
    consume. `before_consume` hooks run at every consume (the place librdkafka calls rebalance callbacks)."""

    def __init__(self, records: list[Message]):
        self.queue = deque(records)
        self.assigned = {(m.topic(), m.partition()) for m in records}
        self.paused: set[tuple[str, int]] = set()
        self.was_paused = False
        self.commits: list[dict[tuple[str, int], int]] = []
        self.before_consume: list[Callable[[FakeConsumer], None]] = []
        self.callbacks: dict = {}
        self.closed = False
        self._joined = False

    def subscribe(self, topics, on_assign, on_revoke, on_lost):
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}

    def consume(self, num_messages, timeout):
        if not self._joined:
            self._joined = True
            self.callbacks["assign"](self, self.assignment())
        for hook in self.before_consume:
            hook(self)
        taken = [m for m in self.queue if (m.topic(), m.partition()) in self.assigned - self.paused][:num_messages]
        for m in taken:
            self.queue.remove(m)
        if not taken:
            time.sleep(min(timeout, 0.01))
        return taken

    def revoke(self, partitions: list[int]) -> None:
        tps = [TopicPartition(TOPIC, p) for p in partitions]
        self.callbacks["revoke"](self, tps)
        self.assigned -= {(TOPIC, p) for p in partitions}

    def unconsumed(self) -> int:
        return sum((m.topic(), m.partition()) in self.assigned for m in self.queue)

    def assignment(self):
        return [TopicPartition(t, p) for t, p in sorted(self.assigned)]

    def commit(self, offsets, asynchronous=True):
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})
        return offsets

    def committed_offsets(self, partition: int) -> list[int]:
        return [c[(TOPIC, partition)] for c in self.commits if (TOPIC, partition) in c]

    def pause(self, partitions):
        self.was_paused = True
        self.paused |= {(tp.topic, tp.partition) for tp in partitions}

    def resume(self, partitions):
        self.paused -= {(tp.topic, tp.partition) for tp in partitions}

    def seek(self, partition):
        pass

    def poll(self, timeout):
        time.sleep(timeout)
        return None

    def close(self):
        self.closed = True


class FakeProducer:
    def flush(self, timeout=None):
        return 0

    def purge(self):
        pass

    def close(self):
        pass


class FakeKafka:
    """KafkaSink's interface; every record is acknowledged."""

    def __init__(self):
        self.producer = FakeProducer()
        self.published = 0

    def publish_scored(self, records, deliveries):
        self.published += len(list(records))

    def publish_dead_letters(self, dead_letters, deliveries):
        self.published += len(list(dead_letters))

    def flush(self, timeout, deliveries):
        pass

    def poll(self):
        pass


def database_down(rows) -> None:
    raise TransientError("PostgreSQL is down", Dependency.DATABASE)


class Store:
    """What the fake databases wrote: (partition, offset) per row, in the order the writes finished.
    `behaviour(rows)` runs first in every write and may block or raise."""

    def __init__(self, behaviour: Callable[[list[tuple]], None] = lambda rows: None):
        self.behaviour = behaviour
        self.rows: list[tuple[int, int]] = []
        self.interrupted = threading.Event()
        self._lock = threading.Lock()

    def databases(self, n: int) -> list[FakeDb]:
        return [FakeDb(self) for _ in range(n)]

    def stored_offsets(self, partition: int) -> set[int]:
        return {o for p, o in self.rows if p == partition}


class FakeDb:
    """PostgresSink's interface, writing into a shared Store."""

    def __init__(self, store: Store):
        self.store = store
        self.closed = False

    def write(self, rows, templates=None):
        self.store.behaviour(rows)
        with self.store._lock:
            self.store.rows += [(row[1], row[2]) for row in rows]  # topic, partition, offset, ...
        return []

    def interrupt(self):
        self.store.interrupted.set()

    def close(self):
        self.closed = True


def coordinates(rows) -> set[tuple[int, int]]:
    return {(row[1], row[2]) for row in rows}


class FakeScorer:
    model_version = "m-fake"

    def score(self, messages, levels):
        n = len(messages)
        return ScoreColumns(
            predicted_level=["INFO"] * n,
            level_confidence=np.full(n, 0.5, dtype=np.float32),
            is_anomaly=np.zeros(n, dtype=bool),
            anomaly_score=np.zeros(n, dtype=np.float32),
            severity=["low"] * n,
            model_version=self.model_version,
            familiarity=np.ones(n, dtype=np.float32),
        )


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
