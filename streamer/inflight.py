"""Ordered delivery: the batches being delivered on worker threads, kept in the order they were read.

Each batch is delivered (database, then producer flush: Checkpoint.deliver) on a worker thread with a
database connection of its own, so deliveries may finish in any order; offsets are committed only in read
order, and only for a batch whose delivery finished, so a commit never covers an undelivered batch. When one
fails, it and every later batch are taken back, uncommitted, for the caller to retry in read order.
Every consumer call (the offset commit) is made on the caller's thread.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from streamer.batch import Batch
from streamer.checkpointing import Checkpoint, ScoredBatch
from streamer.sink import PostgresSink


class InFlight:
    def __init__(self, checkpoint: Checkpoint, databases: Sequence[PostgresSink]):
        """`databases`: one PostgresSink per batch delivered at once."""
        self.checkpoint = checkpoint
        self.capacity = len(databases)
        self._databases = list(databases)
        self._idle: queue.SimpleQueue[PostgresSink] = queue.SimpleQueue()
        for db in databases:
            self._idle.put(db)
        self._batches: deque[tuple[ScoredBatch, Future]] = deque()  # delivering or delivered; oldest first
        self._workers = ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="streamer-deliver")

    def __len__(self) -> int:
        return len(self._batches)

    def submit(self, scored: ScoredBatch) -> None:
        self._batches.append((scored, self._workers.submit(self._deliver, scored)))

    def _deliver(self, scored: ScoredBatch) -> None:
        db = self._idle.get()
        try:
            self.checkpoint.deliver(scored, db)
        finally:
            self._idle.put(db)

    def commit_delivered(self, keep: int = 0, block: bool = True) -> Iterator[ScoredBatch]:
        """Commit the oldest batches, each once its delivery finished, until at most `keep` remain (block=False:
        stop at the first one still delivering). Yields each batch once its offsets are committed. A failed
        delivery or commit raises, the batch still in flight: take_back() then returns it with the later ones."""
        while len(self._batches) > keep:
            scored, delivery = self._batches[0]
            if not block and not delivery.done():
                return
            delivery.result()
            self.checkpoint.commit_offsets(scored)
            self._batches.popleft()
            yield scored

    def take_back(self) -> Batch:
        """Every batch in flight, once its delivery ended, merged in read order; none of it is committed.
        Later batches may have been stored and published already: redoing them adds no row (primary keys) and
        at most duplicates on logs.scored, which at least once allows."""
        wait([delivery for _, delivery in self._batches])
        merged = Batch()
        for scored, _ in self._batches:
            merged = merged.merged_with(scored.batch)
        self._batches.clear()
        return merged

    def interrupt(self) -> None:
        """From another thread, at the shutdown bound: cut the database work under way."""
        for db in self._databases:
            db.interrupt()

    def close(self) -> None:
        """Wait for the workers, then close their connections."""
        self._workers.shutdown()
        for db in self._databases:
            db.close()
