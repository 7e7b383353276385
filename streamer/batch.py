"""A micro-batch: the decoded events and dead letters of a run of polled records, and their offsets.

A batch is bounded by event count and by time since its first record. It remembers, per partition, the next
offset to commit (last offset + 1) for every record it holds, good or dead, so a commit after the batch is
processed covers exactly what was processed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamer.decode import DeadLetter, Decoder, Event

TopicPartition = tuple[str, int]


@dataclass
class Batch:
    events: list[Event] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    first_record_at: float | None = None  # monotonic seconds
    records: int = 0  # records polled, events + dead letters

    def __len__(self) -> int:
        return self.records

    def add(self, item: Event | DeadLetter) -> None:
        if self.first_record_at is None:
            self.first_record_at = time.monotonic()
        if isinstance(item, Event):
            self.events.append(item)
        else:
            self.dead_letters.append(item)
        self.records += 1
        tp = (item.topic, item.partition)
        if item.offset + 1 > self.next_offsets.get(tp, -1):
            self.next_offsets[tp] = item.offset + 1

    def add_polled(self, messages, decoder: Decoder) -> None:
        """Decode confluent_kafka Messages (error-free ones) into this batch."""
        decode = decoder.decode
        add = self.add
        for msg in messages:
            _, ts = msg.timestamp()
            for item in decode(  # one item per record of the message
                msg.value(),
                topic=msg.topic(),
                partition=msg.partition(),
                offset=msg.offset(),
                timestamp_ms=ts,
                key=msg.key(),
                headers=msg.headers(),
            ):
                add(item)

    def age_ms(self) -> float:
        if self.first_record_at is None:
            return 0.0
        return (time.monotonic() - self.first_record_at) * 1000.0

    def without(self, partitions: set[TopicPartition]) -> Batch:
        """This batch minus the records of the given partitions (revoked or lost: their owner replays them)."""
        kept = Batch(first_record_at=self.first_record_at)
        kept.events = [e for e in self.events if (e.topic, e.partition) not in partitions]
        kept.dead_letters = [d for d in self.dead_letters if (d.topic, d.partition) not in partitions]
        kept.next_offsets = {tp: o for tp, o in self.next_offsets.items() if tp not in partitions}
        kept.records = len(kept.events) + len(kept.dead_letters)
        return kept

    def merged_with(self, later: Batch) -> Batch:
        """This batch followed by a later one, as one batch: its commit covers both."""
        merged = Batch(first_record_at=self.first_record_at or later.first_record_at)
        merged.events = self.events + later.events
        merged.dead_letters = self.dead_letters + later.dead_letters
        merged.next_offsets = dict(self.next_offsets)
        for tp, o in later.next_offsets.items():
            merged.next_offsets[tp] = max(o, merged.next_offsets.get(tp, -1))
        merged.records = self.records + later.records
        return merged

    def partitions(self) -> set[TopicPartition]:
        return set(self.next_offsets)
