"""The stream under the drill: a producer that writes the workload while the faults fire, and a probe that
reads the group's commits from outside."""

from __future__ import annotations

import threading
import time
from functools import partial

from bench.drill.plan import MAX_BYTES, PARTITIONS


class Feeder(threading.Thread):
    """Produces the workload in order, at most `max_lag` records ahead of the group's commits (and at most
    `rate` per second), so production overlaps the whole drill. Remembers where each record landed."""

    def __init__(self, kafka_config: dict, topic: str, values: list[bytes], keys: list, max_lag: int, rate: float):
        super().__init__(daemon=True, name="chaos-feeder")
        self.kafka_config, self.topic, self.values, self.keys = kafka_config, topic, values, keys
        self.max_lag, self.rate = max_lag, rate
        self.coords: list[tuple[int, int] | None] = [None] * len(values)
        self.acked_ends: dict[int, int] = {}  # partition -> last acknowledged offset + 1
        self.errors: list[str] = []
        self.committed = 0  # records the group has committed; the controller keeps it current
        self.produced = 0
        self.failure: str | None = None
        self.seconds = 0.0
        self.abort = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._produce()
        except Exception as err:  # reported as a drill problem, never swallowed
            self.failure = f"{type(err).__name__}: {err}"
        finally:
            self.seconds = time.monotonic() - started
            self.done.set()

    def _delivered(self, i: int, err, msg) -> None:
        if err is not None:
            self.errors.append(f"record {i}: {err.str()}")
        else:
            p, o = msg.partition(), msg.offset()
            self.coords[i] = (p, o)
            if o >= self.acked_ends.get(p, 0):
                self.acked_ends[p] = o + 1

    def _produce(self) -> None:
        from confluent_kafka import Producer

        # Idempotent, with a long delivery timeout: the producer rides out the broker restart without
        # duplicating or reordering, so the delivery reports are the ground truth of what was written.
        producer = Producer(
            {
                **self.kafka_config,
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
                "message.max.bytes": MAX_BYTES,
                "message.timeout.ms": 600_000,
                "log_level": 0,
            }
        )
        started = time.monotonic()
        for i, (value, key) in enumerate(zip(self.values, self.keys)):
            while i - self.committed >= self.max_lag or (self.rate and time.monotonic() < started + i / self.rate):
                if self.abort.is_set():
                    return
                producer.poll(0.05)
            while True:
                try:
                    producer.produce(self.topic, value, key, on_delivery=partial(self._delivered, i))
                    break
                except BufferError:
                    producer.poll(0.1)
            self.produced = i + 1
            producer.poll(0)
        left = producer.flush(600)
        if left:
            self.failure = f"{left} records not acknowledged by Kafka within 600s"


class Probe:
    """Reads the group's committed offsets without joining it; quiet and tolerant while the broker is away.
    Also checks they only move forward, partition by partition: a member commits batches in the order it read
    them and only partitions it owns, so a commit below an earlier one means a batch was committed out of
    order or by a member that had lost the partition."""

    def __init__(self, kafka_config: dict, group: str, topic: str):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({**kafka_config, "group.id": group, "enable.auto.commit": False, "log_level": 0})
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.highest: dict[int, int] = {}  # partition -> highest offset seen committed
        self.backwards: list[str] = []  # every commit seen below an earlier one

    def committed(self) -> dict[int, int] | None:
        from confluent_kafka import KafkaException

        try:
            got = self.consumer.committed(self.partitions, timeout=5)
        except KafkaException:
            return None
        for tp in got:
            if tp.error is None and tp.offset >= 0:  # < 0: none known (yet, or while a coordinator loads)
                if tp.offset < self.highest.get(tp.partition, 0):
                    self.backwards.append(f"partition {tp.partition}: {self.highest[tp.partition]} -> {tp.offset}")
                self.highest[tp.partition] = max(tp.offset, self.highest.get(tp.partition, 0))
        return {tp.partition: max(tp.offset, 0) for tp in got}

    def close(self) -> None:
        self.consumer.close()
