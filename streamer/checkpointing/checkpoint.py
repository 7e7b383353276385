"""The ordered commit of a scored batch — at least once, never a lost event:

1. PostgreSQL: one transaction stores every event and its prediction (redeliveries add no row); rows the
   database rejects for data reasons become dead letters.
2. Kafka: scored records to the output topic and every dead letter (decode- and store-stage) to the
   dead-letter topic, then a producer flush in which every delivery must have succeeded.
3. Offsets: one synchronous commit of exactly the batch's next offsets, for partitions still owned.

A failure at any step raises before step 3, so nothing is committed and the batch is retried or replayed.
Each step remembers that it is done, so a retry after a failure in step 2 does not store again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streamer.batch import Batch
from streamer.decode import DeadLetter
from streamer.enrich import database_rows, scored_records
from streamer.errors import Dependency, TransientError
from streamer.sink import Deliveries
from streamer.template_worker import PendingTemplates
from streamer.templates import EventTemplates

log = logging.getLogger(__name__)

# Commit errors after which the partitions may belong to another member: the data is stored, the new owner
# replays from the last commit, and the primary keys absorb the replay.
_GENERATION_ERRORS = {
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError.FENCED_INSTANCE_ID,
}


@dataclass
class ScoredBatch:
    batch: Batch
    columns: object | None  # streamer.ml.scorer.ScoreColumns for batch.events; None when there are none
    stored: bool = False
    published: bool = False
    dead_letters: list[DeadLetter] = field(default_factory=list)  # decode-, score- plus store-stage
    rejected_indexes: set[int] = field(default_factory=set)  # events the database refused
    stage_seconds: dict[str, float] = field(default_factory=dict)
    # streamer.templates.EventTemplates for batch.events when mined (PendingTemplates until the miner answers)
    templates: EventTemplates | PendingTemplates | None = None


class Checkpoint:
    def __init__(self, consumer, kafka_sink, postgres_sink, metrics, flush_timeout: float = 30.0):
        self.consumer = consumer
        self.kafka = kafka_sink
        self.db = postgres_sink
        self.metrics = metrics
        self.flush_timeout = flush_timeout

    def commit(self, scored: ScoredBatch) -> None:
        """Run the remaining steps for this batch; raises TransientError (nothing committed) on failure."""
        self.deliver(scored)
        self.commit_offsets(scored)

    def deliver(self, scored: ScoredBatch, db=None) -> None:
        """Steps 1 and 2. Touches only the sinks, never the consumer, so worker threads may run it while the
        consumer polls (librdkafka's consumer calls block each other across threads). `db`: a PostgresSink
        of the calling thread's own, when several batches are delivered at once."""
        db = db or self.db
        batch = scored.batch
        events = batch.events
        if isinstance(scored.templates, PendingTemplates):
            scored.templates = scored.templates.result()  # raises TransientError: the retry mines again
        if not scored.stored:
            started = time.perf_counter()
            rejected = []
            if events:
                rejected = db.write(database_rows(events, scored.columns, scored.templates), scored.templates)
            scored.dead_letters = list(batch.dead_letters) + [
                DeadLetter.of_event(events[i], error_class, reason, "store") for i, error_class, reason in rejected
            ]
            scored.stored = True
            scored.stage_seconds["store"] = time.perf_counter() - started
            scored.rejected_indexes = {i for i, _, _ in rejected}
            if rejected:
                log.warning(
                    "the database rejected %d of %d events; they go to the dead-letter topic",
                    len(rejected),
                    len(events),
                )

        if not scored.published:
            started = time.perf_counter()
            deliveries = Deliveries()
            if events:
                bad = scored.rejected_indexes
                records = scored_records(events, scored.columns, scored.templates)
                if bad:
                    records = (r for i, r in enumerate(records) if i not in bad)
                self.kafka.publish_scored(records, deliveries)
            self.kafka.publish_dead_letters(scored.dead_letters, deliveries)
            self.kafka.flush(self.flush_timeout, deliveries)
            scored.published = True
            scored.stage_seconds["publish"] = time.perf_counter() - started

    def commit_offsets(self, scored: ScoredBatch) -> None:
        """Step 3, on the consumer's thread."""
        started = time.perf_counter()
        self._commit_offsets(scored.batch)
        scored.stage_seconds["commit"] = time.perf_counter() - started

    def _commit_offsets(self, batch: Batch) -> None:
        owned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        offsets = [TopicPartition(t, p, o) for (t, p), o in batch.next_offsets.items() if (t, p) in owned]
        skipped = len(batch.next_offsets) - len(offsets)
        if skipped:
            log.info("not committing %d partition(s) no longer assigned to this member", skipped)
        if not offsets:
            return
        try:
            result = self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as err:
            kerr = err.args[0]
            if kerr.code() == KafkaError._NO_OFFSET:
                return
            if kerr.code() in _GENERATION_ERRORS:
                self.metrics.commit_failures.inc()
                log.warning(
                    "offset commit refused after a rebalance (%s); the new owner replays, the "
                    "database keeps one row per event",
                    kerr.name(),
                )
                return
            self.metrics.commit_failures.inc()
            raise TransientError(f"offset commit failed: {kerr.str()}", Dependency.COMMIT) from None
        failed = [tp for tp in result or [] if tp.error is not None]
        if failed:
            self.metrics.commit_failures.inc()
            first = failed[0].error
            if first.code() in _GENERATION_ERRORS:
                log.warning(
                    "offset commit refused for %d partition(s) after a rebalance (%s)", len(failed), first.name()
                )
                return
            raise TransientError(
                f"offset commit failed for {len(failed)} partition(s): {first.str()}", Dependency.COMMIT
            )
        self.metrics.commits.inc()
