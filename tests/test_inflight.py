"""Ordered delivery with a fake checkpoint: deliveries finish in any order, commits happen in read order and
only for delivered batches, and a failure gives back the failed batch and every later one, uncommitted."""

from __future__ import annotations

import threading

import pytest

from streamer.batch import Batch
from streamer.checkpointing import ScoredBatch
from streamer.decode import Decoder
from streamer.errors import TransientError
from streamer.inflight import InFlight
from tests.fakes import Store, messages, wait_until


class GatedCheckpoint:
    """deliver() waits for its batch's gate, then succeeds or raises what the gate was opened with."""

    def __init__(self):
        self.gates: dict[int, threading.Event] = {}
        self.errors: dict[int, Exception] = {}
        self.delivered: list[int] = []
        self.committed: list[int] = []

    def deliver(self, scored, db=None):
        first = scored.batch.events[0].offset
        assert self.gates.setdefault(first, threading.Event()).wait(5)
        if first in self.errors:
            raise self.errors[first]
        self.delivered.append(first)

    def commit_offsets(self, scored):
        self.committed.append(scored.batch.events[0].offset)

    def open(self, first: int, error: Exception | None = None):
        if error is not None:
            self.errors[first] = error
        self.gates.setdefault(first, threading.Event()).set()


def scored_batch(offsets: range) -> ScoredBatch:
    batch = Batch()
    batch.add_polled(messages(0, offsets), Decoder(max_message_bytes=10_000))
    return ScoredBatch(batch, None)


@pytest.fixture
def checkpoint():
    return GatedCheckpoint()


@pytest.fixture
def inflight(checkpoint):
    inflight = InFlight(checkpoint, Store().databases(2))  # type: ignore[arg-type]
    yield inflight
    for gate in checkpoint.gates.values():
        gate.set()
    inflight.close()


def test_a_later_batch_delivered_first_waits_for_the_earlier_one(checkpoint, inflight):
    inflight.submit(scored_batch(range(0, 5)))
    inflight.submit(scored_batch(range(5, 10)))
    checkpoint.open(5)
    wait_until(lambda: checkpoint.delivered == [5], what="the second delivery")
    assert list(inflight.commit_delivered(block=False)) == []
    assert checkpoint.committed == []
    checkpoint.open(0)
    assert [s.batch.events[0].offset for s in inflight.commit_delivered()] == [0, 5]
    assert checkpoint.committed == [0, 5] and len(inflight) == 0


def test_keep_leaves_the_newest_batches_in_flight(checkpoint, inflight):
    inflight.submit(scored_batch(range(0, 5)))
    inflight.submit(scored_batch(range(5, 10)))
    checkpoint.open(0)
    assert len(list(inflight.commit_delivered(keep=1))) == 1
    assert checkpoint.committed == [0] and len(inflight) == 1


def test_a_failed_delivery_gives_back_it_and_every_later_batch_uncommitted(checkpoint, inflight):
    inflight.submit(scored_batch(range(0, 5)))
    inflight.submit(scored_batch(range(5, 10)))
    checkpoint.open(5)
    checkpoint.open(0, TransientError("PostgreSQL is down"))
    with pytest.raises(TransientError):
        list(inflight.commit_delivered())
    back = inflight.take_back()
    assert [e.offset for e in back.events] == list(range(10))
    assert back.next_offsets == {("logs.raw", 0): 10}
    assert checkpoint.committed == [] and len(inflight) == 0
