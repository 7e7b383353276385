"""The main loop of `streamer run`, top to bottom:

    consume → decode → batch → score → sinks (PostgreSQL, logs.scored, dead letters) → commit

The loop is in one of three modes (Mode). PIPELINED: batches overlap — while worker threads deliver batches
k-1 and k (each its own database transaction on its own connection, produce, producer flush — see
streamer/checkpointing), the main thread polls, decodes and scores batch k+1; offsets are committed batch by
batch in read order, only for a batch whose delivery finished (streamer/inflight.py); every consumer call
stays on the main thread. Offsets are therefore committed only after the database commit and a clean
producer flush of that batch and of every batch before it.

RETRYING: a batch failed. The in-flight batches are merged back in front of the pending one and processed
synchronously: the same records are retried with jittered backoff while the assigned partitions are paused
and the consumer keeps polling, so it keeps its place in the group. The first batch that commits brings the
loop back to PIPELINED.

STOPPING: stop is set. What is in flight, then what is pending, is committed within SHUTDOWN_BOUND, or left
uncommitted for redelivery; then the clients close.

On a revoke the batches under way are finished within a bound or abandoned; on a lost assignment they are
dropped; neither ever commits a partition this member no longer owns.

The clients and sinks are built by streamer/commands/run.py and passed in.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, TopicPartition

from streamer.batch import Batch
from streamer.checkpointing import Checkpoint, ScoredBatch
from streamer.config import Settings
from streamer.decode import Decoder
from streamer.errors import Dependency, StreamerError, TransientError
from streamer.health import Health
from streamer.inflight import InFlight
from streamer.kafka_clients import KafkaErrors, close_clients
from streamer.metrics import Metrics
from streamer.ml.reload import ModelWatcher
from streamer.score import score_batch
from streamer.sink import KafkaSink, PostgresSink
from streamer.template_worker import PendingTemplates, TemplateWorker

log = logging.getLogger(__name__)

# Bounds, in seconds. max.poll.interval.ms defaults to 300 s: everything done between two polls stays well
# below it.
REVOKE_BOUND = 20.0  # finishing the in-flight batch on revoke (one attempt)
SHUTDOWN_BOUND = 30.0  # SIGTERM/SIGINT to exit, whatever the database does
# Database work is cut this long before the bound: a connect under way (5 s timeout) may outlast the cut, then
# the consumer is closed and the producer flushed.
CLOSE_ALLOWANCE = 8.0
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
IDLE_POLL = 0.5
# Batches delivered at once. PostgreSQL spends most of a batch's time on the server, so a second connection
# keeps it busy while the first commits; more mostly adds memory.
DELIVERING = 2


class Mode(enum.Enum):
    PIPELINED = "pipelined"  # score the next batch while earlier ones are delivered
    RETRYING = "retrying"  # a batch failed: one batch at a time, retried with backoff, until one commits
    STOPPING = "stopping"  # stop is set: finish within the shutdown bound, then close


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        scorer,
        consumer,
        kafka: KafkaSink,
        databases: Sequence[PostgresSink],
        *,
        kafka_errors: KafkaErrors | None = None,
        metrics: Metrics | None = None,
        health: Health | None = None,
        stop: threading.Event | None = None,
        templates: TemplateWorker | None = None,
    ):
        """`consumer`: a confluent_kafka Consumer reporting to `kafka_errors`. `databases`: 1 + DELIVERING
        sinks, the first for the synchronous path, one for each batch delivered at once. `templates`: the
        template miner (STREAMER_TEMPLATES=on), None without templates."""
        self.settings = settings
        self.scorer = scorer
        # A model promoted into --models is picked up between batches.
        self.model_watcher = ModelWatcher(settings.models_dir, scorer, anomaly_threshold=settings.anomaly_threshold)
        self.templates = templates
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.stop = stop or threading.Event()
        self.kafka_errors = kafka_errors or KafkaErrors(self.health, self.stop)
        self.decoder = Decoder(
            max_message_bytes=settings.max_message_bytes,
            message_fields=settings.message_field_names(),
            line_format=settings.line_format or None,
        )
        self.consumer = consumer
        self.kafka = kafka
        self.db, *delivery_dbs = databases  # the synchronous path's, and the worker threads'
        self.checkpoint = Checkpoint(consumer, kafka, self.db, self.metrics)
        self.inflight = InFlight(self.checkpoint, delivery_dbs)
        self._pending = Batch()  # the batch being collected or retried; rebalance callbacks trim it
        self._failing = False  # a batch failed and none committed since: the loop is RETRYING
        self._failure: str | None = None  # the cause currently logged, for logging once per state change
        self._paused = False  # the assigned partitions are paused for a backoff
        # Assigned while not paused: resumed on the next loop turn, as a pause from before a lost assignment
        # sticks to the partition in librdkafka and would otherwise leave it paused for good.
        self._to_resume: list[TopicPartition] = []
        self._stop_deadline: float | None = None  # when database work is cut short after stop is set
        self._stopped = threading.Event()  # no database work left (set by _shutdown)
        self.health.model_loaded = True
        self.metrics.set_model(scorer.model_version)

    @property
    def mode(self) -> Mode:
        if self.stop.is_set():
            return Mode.STOPPING
        return Mode.RETRYING if self._failing else Mode.PIPELINED

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stop is set; returns the exit code."""
        threading.Thread(target=self._shutdown_watchdog, name="streamer-shutdown", daemon=True).start()
        try:  # from here every exit goes through _shutdown, which closes the clients
            self.consumer.subscribe(
                self.settings.input_topics(),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            log.info(
                "consuming %s as group %s with model %s",
                ",".join(self.settings.input_topics()),
                self.settings.group_id,
                self.scorer.model_version,
            )
            self._consume_until_stopped()
        finally:
            clean = self._shutdown()
        if self.kafka_errors.refused is not None:
            raise self.kafka_errors.refused
        return 0 if clean else 1

    def _consume_until_stopped(self) -> None:
        while self.mode is not Mode.STOPPING:
            self._collect()
            if len(self._pending) and self.mode is Mode.PIPELINED:
                self._hand_over()  # a failure merges the in-flight batches back: RETRYING
            if len(self._pending) and self.mode is Mode.RETRYING and not self._process_until_done(deadline=None):
                return  # stopped meanwhile, and the shutdown bound passed
        # STOPPING: what was collected is committed after what is in flight, within the shutdown bound.
        self._commit_delivered()  # a failed batch rejoins the pending one
        self._process_until_done(deadline=None)

    def _collect(self) -> None:
        """Poll until the batch is full, old enough, or stop is set. Decodes as records arrive."""
        max_events = self.settings.batch_max_events
        max_seconds = self.settings.batch_max_ms / 1000.0
        while not self.stop.is_set():
            self.health.last_loop_at = time.monotonic()
            if self._to_resume and not self._paused:
                self.consumer.resume(self._to_resume)
                self._to_resume = []
            pending = self._pending
            room = max_events - len(pending)
            if room <= 0:
                return
            timeout = IDLE_POLL if not len(pending) else max(0.0, max_seconds - pending.age_ms() / 1000.0)
            if len(self.inflight):
                if not self._commit_delivered(block=False):
                    return  # the synchronous retry path takes over
                timeout = min(timeout, 0.05)  # notice a delivery finishing soon
            started = time.perf_counter()
            messages = self.consumer.consume(num_messages=min(room, 10_000), timeout=timeout)
            polled = time.perf_counter()
            good = [m for m in messages if m.error() is None]
            if len(good) != len(messages):
                self._handle_errors(m for m in messages if m.error() is not None)
            if good:
                self.health.broker_ok = True
                self.metrics.events_in.inc(len(good))
                self._pending.add_polled(good, self.decoder)
                self.metrics.stage_seconds.labels("poll").observe(polled - started)
                self.metrics.stage_seconds.labels("decode").observe(time.perf_counter() - polled)
            if len(self._pending) and self._pending.age_ms() >= self.settings.batch_max_ms:
                return

    def _hand_over(self) -> None:
        """PIPELINED: score the pending batch while earlier ones are delivered, then hand it to a worker once
        at most DELIVERING - 1 are left in flight."""
        scored = self._score(self._pending)
        if self._commit_delivered(keep=self.inflight.capacity - 1):
            self._pending = Batch()
            self.inflight.submit(scored)

    def _score(self, batch: Batch) -> ScoredBatch:
        started = time.perf_counter()
        scorer = self.model_watcher.poll()  # cheap: a directory stat at most every few seconds
        if scorer is not self.scorer:
            self.scorer = scorer
            self.metrics.set_model(scorer.model_version)
        # The template process mines while this thread scores; the deliver thread waits for the templates.
        mining = self._mine(batch.events)
        scored_events = batch.events
        batch, columns = score_batch(self.scorer, batch)  # events the scorer fails on become dead letters
        scored = ScoredBatch(batch, columns)
        if batch.events is not scored_events:  # some became dead letters: the templates of those kept
            mining = self._mine(batch.events)
        scored.templates = mining
        scored.stage_seconds["score"] = time.perf_counter() - started
        return scored

    def _mine(self, events: list) -> PendingTemplates | None:
        if not events or self.templates is None:
            return None
        return self.templates.submit([e.service for e in events], [e.message for e in events])

    def _commit_delivered(self, keep: int = 0, block: bool = True) -> bool:
        """Commit delivered batches in read order until at most `keep` remain in flight (block=False: only
        those already delivered). False when one failed: it and every later in-flight batch are merged back,
        in order and uncommitted, in front of the pending batch for the synchronous retry path."""
        try:
            for scored in self.inflight.commit_delivered(keep, block):
                self._committed(scored)
        except TransientError as err:
            self._failed(err)
            self._pending = self.inflight.take_back().merged_with(self._pending)
            return False
        except BaseException:
            # Nothing of it is committed; the caller stops the process.
            self._pending = self.inflight.take_back().merged_with(self._pending)
            raise
        return True

    def _process_until_done(self, deadline: float | None, retry: bool = True) -> bool:
        """RETRYING (and on revoke or shutdown): process the pending batch until it is committed. Transient
        failures are retried with backoff (when `retry`) until the deadline passes, or, with no deadline,
        until stop is set and the shutdown bound passes. True when the batch is done; False leaves it pending
        and uncommitted."""
        attempt = 0
        scored: ScoredBatch | None = None
        scored_for: Batch | None = None
        while True:
            batch = self._pending
            if not len(batch):  # everything left was revoked or lost
                if self._paused:
                    self._resume()  # partitions assigned meanwhile were paused too
                return True
            if scored_for is not batch:  # first attempt, or a rebalance trimmed the batch
                scored, scored_for = self._score(batch), batch
            deadline = self._bounded(deadline)
            if deadline is not None and time.monotonic() >= deadline:
                return False  # a new attempt could outlast the bound (lock, statement and connect timeouts)
            assert scored is not None  # scored on the first attempt above
            try:
                self.checkpoint.commit(scored)
            except TransientError as err:
                attempt += 1
                self._failed(err)
                deadline = self._bounded(deadline)
                if not retry or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._wait_paused(_backoff(attempt), deadline)
                continue
            self._committed(scored)
            self._pending = Batch()
            if self._paused:
                self._resume()
            return True

    def _committed(self, scored: ScoredBatch) -> None:
        m = self.metrics
        m.batch_size.observe(len(scored.batch))
        for stage, seconds in scored.stage_seconds.items():
            m.stage_seconds.labels(stage).observe(seconds)
        m.events_scored.inc(len(scored.batch.events) - len(scored.rejected_indexes))
        for d in scored.dead_letters:
            m.dead_letters.labels(d.stage, d.error_class).inc()
        self.health.database_ok = True
        self.health.broker_ok = True
        self._failing = False
        self._set_failure(None)

    # --- transient failures -----------------------------------------------------------------------------

    def _failed(self, err: TransientError) -> None:
        self.metrics.retries.labels(err.dependency).inc()
        self._failing = True
        self._set_failure(str(err), err.dependency)

    def _wait_paused(self, seconds: float, deadline: float | None) -> None:
        """Back off while keeping the group membership: partitions paused, poll still served."""
        if not self._paused:
            self._paused = True
            paused = self.consumer.assignment()
            self.consumer.pause(paused)
            log.info("paused %d partition(s) while the batch is retried", len(paused))
        until = time.monotonic() + seconds
        if deadline is not None:
            until = min(until, deadline)
        while time.monotonic() < until:
            self.health.last_loop_at = time.monotonic()
            msg = self.consumer.poll(min(0.2, max(0.0, until - time.monotonic())))
            if msg is not None and msg.error() is None:
                # A partition assigned while paused delivers: rewind it and pause it too; it waits its turn.
                tp = TopicPartition(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)  # set on a message
                self.consumer.seek(tp)
                self.consumer.pause([tp])
                log.info("paused %s[%d] at offset %d until the batch is retried", tp.topic, tp.partition, tp.offset)
            self.kafka.poll()

    def _resume(self) -> None:
        self._paused = False
        resumed = self.consumer.assignment()
        self.consumer.resume(resumed)
        self._to_resume = []
        log.info("resumed %d partition(s)", len(resumed))

    def _set_failure(self, cause: str | None, dependency: Dependency = Dependency.KAFKA) -> None:
        """Log the cause once per change; the mode is _failing's, not this."""
        if cause == self._failure:
            return
        if cause is None:
            log.info("recovered: batches commit again")
        else:
            log.warning("cannot complete the batch, retrying with backoff (nothing committed): %s", cause)
            self.health.database_ok = dependency != Dependency.DATABASE  # /readyz: 503 while it blocks
        self._failure = cause

    def _handle_errors(self, errored) -> None:
        for m in errored:
            err = m.error()
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            if err.fatal():
                raise StreamerError(f"Kafka consumer failed: {err.str()}")
            if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED):
                self._set_failure(f"topic unavailable: {err.str()}")  # nothing to retry: the mode stays
            else:
                log.warning("consumer: %s", err.str())

    # --- rebalance --------------------------------------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        # Partitions assigned while a batch is retried are not paused here (a pause inside the callback can
        # be lost while librdkafka is still fetching their committed offsets); a record they deliver during
        # the backoff is rewound and its partition paused (_wait_paused).
        log.info("assigned %s", _names(partitions))
        self.kafka_errors.joined = True
        if not self._paused:
            self._to_resume.extend(TopicPartition(tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, consumer, partitions) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        log.info("revoked %s", _names(partitions))
        # Delivering batches commit before the partitions go, or their records rejoin the pending batch.
        self._commit_delivered()
        if not revoked & self._pending.partitions():
            return
        if not self._paused:
            # Finish the batch under way while the partitions are still ours: one attempt, as polling for a
            # backoff is not allowed inside a rebalance callback.
            if self._process_until_done(deadline=time.monotonic() + REVOKE_BOUND, retry=False):
                return
            log.warning("could not finish the in-flight batch on revoke; abandoning it uncommitted")
        self._pending = self._pending.without(revoked)

    def _on_lost(self, consumer, partitions) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        log.warning("assignment lost: %s; dropping their records uncommitted", _names(partitions))
        self._commit_delivered()  # commits of lost partitions are refused; their records rejoin
        self._pending = self._pending.without(lost)

    # --- shutdown ---------------------------------------------------------------------------------------

    def _shutdown_deadline(self) -> float:
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + SHUTDOWN_BOUND - CLOSE_ALLOWANCE
        return self._stop_deadline

    def _bounded(self, deadline: float | None) -> float | None:
        """`deadline`, or once STOPPING the shutdown deadline if that comes first."""
        if self.mode is not Mode.STOPPING:
            return deadline
        return self._shutdown_deadline() if deadline is None else min(deadline, self._shutdown_deadline())

    def _shutdown_watchdog(self) -> None:
        """Once stop is set: at the shutdown deadline, cut the database connections still busy, so a statement
        that waits on a lock or a server that never answers cannot hold up the exit. Their batches stay
        uncommitted, for redelivery."""
        self.stop.wait()
        if self._stopped.wait(max(0.0, self._shutdown_deadline() - time.monotonic())):
            return
        log.warning(
            "database work not finished %.0fs after the stop request: cutting its connections",
            SHUTDOWN_BOUND - CLOSE_ALLOWANCE,
        )
        self.db.interrupt()
        self.inflight.interrupt()

    def _shutdown(self) -> bool:
        """Close everything; True when nothing read is left uncommitted. The loop committed what it read unless
        it raised: then what is in flight is committed, or retried within the shutdown bound."""
        if not self._commit_delivered():
            self._process_until_done(deadline=self._shutdown_deadline())
        self.inflight.close()
        self._stopped.set()
        clean = not len(self._pending)
        if not clean:
            log.warning("shutting down with %d records uncommitted; they will be redelivered", len(self._pending))
            self._pending = Batch()
        close_clients(self.consumer, self.kafka.producer, flush_timeout=5)
        self.db.close()
        log.info("stopped")
        return clean


def _backoff(attempt: int) -> float:
    # Full jitter: spreads retries of a whole consumer group after a shared outage.
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt))


def _names(partitions) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
