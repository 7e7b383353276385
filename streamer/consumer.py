"""The main loop of `streamer run`, top to bottom:

    consume → decode → batch → score → sinks (PostgreSQL, logs.scored, dead letters) → commit

Batches overlap: while worker threads deliver batches k-1 and k (each its own database transaction on its own
connection, produce, producer flush — see streamer/checkpointing), the main thread polls, decodes and scores
batch k+1. The main thread commits offsets batch by batch in the order the batches were read, and only for a
batch whose delivery finished; every consumer call stays on the main thread. Offsets are therefore committed
only after the database commit and a clean producer flush of that batch and of every batch before it.

When the in-flight batch fails, it is merged back in front of the pending one and the loop falls back to
processing synchronously: the same records are retried with jittered backoff while the assigned partitions
are paused and the consumer keeps polling, so it keeps its place in the group. On a revoke the batches under
way are finished within a bound or abandoned; on a lost assignment they are dropped; neither ever commits a
partition this member no longer owns.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streamer.batch import Batch
from streamer.checkpointing import Checkpoint, ScoredBatch
from streamer.config import Settings, is_secret_key
from streamer.decode import Decoder
from streamer.errors import ConfigError, Dependency, StreamerError, TransientError
from streamer.health import Health
from streamer.metrics import Metrics
from streamer.ml.reload import ModelWatcher
from streamer.score import score_batch
from streamer.sink import KafkaSink, PostgresSink
from streamer.templates import TemplateMiners

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


def consumer_config(settings: Settings) -> dict:
    return {
        "auto.offset.reset": "earliest",
        # Eager assignment: a revoke callback may commit with the generation still valid. Manual commits
        # during a cooperative-sticky rebalance can be refused or lose the assignment (librdkafka #4059).
        "partition.assignment.strategy": "range",
        "statistics.interval.ms": 5000,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "queued.max.messages.kbytes": 8 * 1024,  # prefetch: ample at tens of thousands/s; keeps RSS small
        **settings.kafka_client_config(),
        "group.id": settings.group_id,
        # Offsets move only through Checkpoint's synchronous commit.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


def producer_config(settings: Settings) -> dict:
    # Consumer-only properties in the passthrough would make librdkafka warn on the producer; drop them.
    consumer_only = (
        "auto.offset.reset",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "heartbeat.interval.ms",
        "partition.assignment.strategy",
        "group.instance.id",
        "fetch.",
    )
    return {k: v for k, v in settings.kafka_client_config().items() if not k.startswith(consumer_only)}


def check_kafka_config(settings: Settings) -> None:
    """Build (and drop) a consumer and a producer from the settings, so an unknown or invalid librdkafka
    property stops start-up with one line before anything else is done."""
    quiet = {"log_level": 0}  # they connect to the bootstrap servers at once; their logs would be noise
    try:
        producer = Producer({**producer_config(settings), **quiet})
        consumer = Consumer({**consumer_config(settings), **quiet})
    except KafkaException as err:
        raise _config_error(err, settings) from None
    close_clients(consumer, producer, flush_timeout=0)


def close_clients(consumer: Consumer | None, producer: Producer | None, flush_timeout: float) -> None:
    """Close both while the interpreter is alive; safe to call again. A librdkafka client left to the
    interpreter's teardown keeps its threads running into the process exit, where they can crash it (SIGSEGV
    in TLS code, or calling back into a finalised interpreter). The consumer first: closing it leaves the
    group, and its revoke callback may still produce and commit. The producer then sends what it holds for at
    most flush_timeout seconds; the rest is dropped (uncommitted, so redelivered), as close() would wait on it."""
    if consumer is not None:
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as err:
            log.warning("consumer close: %s", err)
    if producer is not None:
        try:
            producer.flush(flush_timeout)
            producer.purge()
            producer.close()
        except RuntimeError:
            pass  # closed already


def _config_error(err: KafkaException, settings: Settings) -> ConfigError:
    message = err.args[0].str()
    for key, value in settings.kafka_config.items():  # librdkafka may quote a value; never a secret one
        if value and is_secret_key(key):
            message = message.replace(value, "***")
    return ConfigError(f"librdkafka configuration: {message}")


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        scorer,
        metrics: Metrics | None = None,
        health: Health | None = None,
        stop: threading.Event | None = None,
    ):
        self.settings = settings
        self.scorer = scorer
        # A model promoted into --models is picked up between batches.
        self.model_watcher = ModelWatcher(settings.models_dir, scorer, anomaly_threshold=settings.anomaly_threshold)
        # Template mining is opt-in (STREAMER_TEMPLATES=on) until its cost fits its budget (README "Templates").
        self.templates = TemplateMiners() if settings.templates == "on" else None  # main thread only
        self.metrics = metrics or Metrics()
        self.health = health or Health()
        self.decoder = Decoder(
            max_message_bytes=settings.max_message_bytes,
            message_fields=settings.message_field_names(),
            line_format=settings.line_format or None,
        )
        try:
            self.consumer = Consumer(
                {
                    **consumer_config(settings),
                    "stats_cb": self.metrics.observe_stats,
                    "error_cb": self._on_kafka_error,
                }
            )
            self.kafka = KafkaSink(producer_config(settings), settings.output_topic, settings.dlq_topic)
        except KafkaException as err:
            raise _config_error(err, settings) from None
        self.db = PostgresSink(settings.database_url)  # the synchronous retry path's
        self.checkpoint = Checkpoint(self.consumer, self.kafka, self.db, self.metrics)
        self._worker_dbs: queue.SimpleQueue[PostgresSink] = queue.SimpleQueue()  # one per delivering batch
        self._all_dbs = [self.db] + [PostgresSink(settings.database_url) for _ in range(DELIVERING)]
        for db in self._all_dbs[1:]:
            self._worker_dbs.put(db)
        self._stop_deadline: float | None = None  # when database work is cut short after stop is set
        self._stopped = threading.Event()  # no database work left (set by _shutdown)
        self.stop = stop or threading.Event()
        self._pending = Batch()  # the batch being collected or retried; rebalance callbacks trim it
        self._inflight: deque[tuple[ScoredBatch, Future]] = (
            deque()
        )  # delivering or delivered, uncommitted; oldest first
        self._worker = ThreadPoolExecutor(max_workers=DELIVERING, thread_name_prefix="streamer-deliver")
        self._retrying = False
        # Assigned while not retrying: resumed on the next loop turn, as a pause from before a lost assignment
        # sticks to the partition in librdkafka and would otherwise leave it paused for good.
        self._to_resume: list[TopicPartition] = []
        self._failure: str | None = None  # the cause currently logged, for logging once per state change
        # A certificate or login the broker refuses before this member ever joined is configuration, not an
        # outage: it stops start-up with one line instead of being retried for ever.
        self._joined = False
        self._refused: ConfigError | None = None
        self.health.model_loaded = True
        self.metrics.set_model(scorer.model_version)

    # --- the loop ---------------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stop is set; returns the exit code."""
        clean = True
        threading.Thread(target=self._shutdown_watchdog, name="streamer-shutdown", daemon=True).start()
        try:  # from here every exit goes through _shutdown, which closes the clients
            if self.templates is not None:
                self.templates.refresh(self.settings.database_url)  # the group's templates, before the first batch
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
            while clean and not self.stop.is_set():
                self._collect()
                if not len(self._pending):
                    continue
                if self._failure is None:
                    scored = self._score(self._pending)  # overlaps with the batches being delivered
                    if self._finish_inflight(keep=DELIVERING - 1):
                        self._pending = Batch()
                        self._inflight.append((scored, self._worker.submit(self._deliver, scored)))
                        continue
                # Something failed: the in-flight records are back in front of the pending ones.
                clean = self._process_until_done(deadline=None)
        finally:
            clean = self._shutdown() and clean
        if self._refused is not None:
            raise self._refused
        return 0 if clean else 1

    def _deliver(self, scored: ScoredBatch) -> None:
        db = self._worker_dbs.get()
        try:
            self.checkpoint.deliver(scored, db)
        finally:
            self._worker_dbs.put(db)

    def _finish_inflight(self, keep: int = 0, block: bool = True) -> bool:
        """Commit delivered batches, oldest first, until at most `keep` remain in flight (block=False: only
        those already delivered). False when one failed: it and every later in-flight batch are merged back,
        in order and uncommitted, in front of the pending batch for the synchronous retry path."""
        while len(self._inflight) > keep:
            scored, future = self._inflight[0]
            if not block and not future.done():
                return True
            try:
                future.result()
                self.checkpoint.commit_offsets(scored)
            except TransientError as err:
                self.metrics.retries.labels(err.dependency).inc()
                self._set_failure(str(err), err.dependency)
                self._requeue_inflight()
                return False
            except BaseException:
                self._requeue_inflight()  # nothing of it is committed; the caller stops the process
                raise
            self._inflight.popleft()
            self._record(scored)
            self._set_failure(None)
        return True

    def _requeue_inflight(self) -> None:
        # Later batches may have been stored and published already; redoing them adds no row (primary keys)
        # and at most duplicates on logs.scored, which at-least-once allows.
        wait([f for _, f in self._inflight])
        merged = Batch()
        for scored, _ in self._inflight:
            merged = merged.merged_with(scored.batch)
        self._inflight.clear()
        self._pending = merged.merged_with(self._pending)

    def _collect(self) -> None:
        """Poll until the batch is full, old enough, or stop is set. Decodes as records arrive."""
        max_events = self.settings.batch_max_events
        max_seconds = self.settings.batch_max_ms / 1000.0
        while not self.stop.is_set():
            self.health.last_loop_at = time.monotonic()
            if self._to_resume and not self._retrying:
                self.consumer.resume(self._to_resume)
                self._to_resume = []
            pending = self._pending
            room = max_events - len(pending)
            if room <= 0:
                return
            timeout = IDLE_POLL if not len(pending) else max(0.0, max_seconds - pending.age_ms() / 1000.0)
            if self._inflight:
                if not self._finish_inflight(block=False):
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

    def _process_until_done(self, deadline: float | None, retry: bool = True) -> bool:
        """Process the pending batch until it is committed. Transient failures are retried with backoff
        (when `retry`) until the deadline passes, or, with no deadline, until stop is set and the shutdown
        bound passes. True when the batch is done; False leaves it pending and uncommitted."""
        attempt = 0
        scored: ScoredBatch | None = None
        scored_for: Batch | None = None
        while True:
            batch = self._pending
            if not len(batch):  # everything left was revoked or lost
                if self._retrying:
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
                self.metrics.retries.labels(err.dependency).inc()
                self._set_failure(str(err), err.dependency)
                deadline = self._bounded(deadline)
                if not retry or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._wait_paused(_backoff(attempt), deadline)
                continue
            self._record(scored)
            self._set_failure(None)
            self._pending = Batch()
            if self._retrying:
                self._resume()
            return True

    def _score(self, batch: Batch) -> ScoredBatch:
        started = time.perf_counter()
        scorer = self.model_watcher.poll()  # cheap: a directory stat at most every few seconds
        if scorer is not self.scorer:
            self.scorer = scorer
            self.metrics.set_model(scorer.model_version)
        batch, columns = score_batch(self.scorer, batch)  # events the scorer fails on become dead letters
        scored = ScoredBatch(batch, columns)
        if batch.events and self.templates is not None:
            self.templates.refresh(self.settings.database_url)  # what other members mined; once a minute
            scored.templates = self.templates.assign(
                [e.service for e in batch.events], [e.message for e in batch.events]
            )
        scored.stage_seconds["score"] = time.perf_counter() - started
        return scored

    def _record(self, scored: ScoredBatch) -> None:
        m = self.metrics
        m.batch_size.observe(len(scored.batch))
        for stage, seconds in scored.stage_seconds.items():
            m.stage_seconds.labels(stage).observe(seconds)
        m.events_scored.inc(len(scored.batch.events) - len(scored.rejected_indexes))
        for d in scored.dead_letters:
            m.dead_letters.labels(d.stage, d.error_class).inc()
        self.health.database_ok = True
        self.health.broker_ok = True

    # --- transient failures -----------------------------------------------------------------------------

    def _wait_paused(self, seconds: float, deadline: float | None) -> None:
        """Back off while keeping the group membership: partitions paused, poll still served."""
        if not self._retrying:
            self._retrying = True
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
        self._retrying = False
        resumed = self.consumer.assignment()
        self.consumer.resume(resumed)
        self._to_resume = []
        log.info("resumed %d partition(s)", len(resumed))

    def _set_failure(self, cause: str | None, dependency: Dependency = Dependency.KAFKA) -> None:
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
                self._set_failure(f"topic unavailable: {err.str()}")
            else:
                log.warning("consumer: %s", err.str())

    def _on_kafka_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.health.broker_ok = False
        if not self._joined and _refused_by_broker(err):
            self._refused = ConfigError(f"Kafka refused the connection: {err.str()}")
            self.stop.set()
            return
        if err.fatal():
            log.error("Kafka client fatal error: %s", err.str())
            self.stop.set()
        elif err.code() != KafkaError._TRANSPORT:  # transport blips are retried by librdkafka
            log.warning("Kafka: %s", err.str())

    # --- rebalance --------------------------------------------------------------------------------------

    def _on_assign(self, consumer, partitions) -> None:
        # Partitions assigned while a batch is retried are not paused here (a pause inside the callback can
        # be lost while librdkafka is still fetching their committed offsets); a record they deliver during
        # the backoff is rewound and its partition paused (_wait_paused).
        log.info("assigned %s", _names(partitions))
        self._joined = True
        if not self._retrying:
            self._to_resume.extend(TopicPartition(tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, consumer, partitions) -> None:
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        log.info("revoked %s", _names(partitions))
        # Delivering batches commit before the partitions go, or their records rejoin the pending batch.
        self._finish_inflight()
        if not revoked & self._pending.partitions():
            return
        if not self._retrying:
            # Finish the batch under way while the partitions are still ours: one attempt, as polling for a
            # backoff is not allowed inside a rebalance callback.
            if self._process_until_done(deadline=time.monotonic() + REVOKE_BOUND, retry=False):
                return
            log.warning("could not finish the in-flight batch on revoke; abandoning it uncommitted")
        self._pending = self._pending.without(revoked)

    def _on_lost(self, consumer, partitions) -> None:
        lost = {(tp.topic, tp.partition) for tp in partitions}
        log.warning("assignment lost: %s; dropping their records uncommitted", _names(partitions))
        self._finish_inflight()  # commits of lost partitions are refused; their records rejoin
        self._pending = self._pending.without(lost)

    # --- shutdown ---------------------------------------------------------------------------------------

    def _shutdown_deadline(self) -> float:
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + SHUTDOWN_BOUND - CLOSE_ALLOWANCE
        return self._stop_deadline

    def _bounded(self, deadline: float | None) -> float | None:
        """`deadline`, or once stop is set the shutdown deadline if that comes first."""
        if not self.stop.is_set():
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
        for db in self._all_dbs:
            db.interrupt()

    def _shutdown(self) -> bool:
        if not self._finish_inflight():
            self._process_until_done(deadline=self._shutdown_deadline())
        self._worker.shutdown()
        self._stopped.set()
        # Every batch the loop collects is processed, so anything pending here failed within its bound.
        clean = not len(self._pending)
        if not clean:
            log.warning("shutting down with %d records uncommitted; they will be redelivered", len(self._pending))
            self._pending = Batch()
        close_clients(self.consumer, self.kafka.producer, flush_timeout=5)
        self.db.close()
        while not self._worker_dbs.empty():
            self._worker_dbs.get().close()
        log.info("stopped")
        return clean


def _backoff(attempt: int) -> float:
    # Full jitter: spreads retries of a whole consumer group after a shared outage.
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt))


def _refused_by_broker(err: KafkaError) -> bool:
    # A broker certificate that does not verify, or SASL credentials rejected: a retry repeats them.
    return err.code() == KafkaError._AUTHENTICATION or (err.code() == KafkaError._SSL and "certificate" in err.str())


def _names(partitions) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
