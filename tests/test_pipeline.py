"""The loop of `streamer run` with small fakes for the consumer, the producer and the databases (the real
broker and database are exercised by tests/test_consumer.py): commits in read order whatever order deliveries
finish in, a transient failure retried until it succeeds, a revoke with batches in flight, and stopping."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from streamer import pipeline as pipeline_module
from streamer.config import Settings
from streamer.pipeline import DELIVERING, Mode, Pipeline
from tests.fakes import (
    FakeConsumer,
    FakeKafka,
    FakeScorer,
    Store,
    coordinates,
    database_down,
    messages,
    wait_until,
)

BATCH = 10


def make_pipeline(tmp_path, consumer: FakeConsumer, store: Store) -> Pipeline:
    settings = Settings(batch_max_events=BATCH, batch_max_ms=20, models_dir=str(tmp_path / "no-models"))
    return Pipeline(settings, FakeScorer(), consumer, FakeKafka(), store.databases(1 + DELIVERING))


@contextlib.contextmanager
def running(pipeline: Pipeline):
    """Runs the loop on a thread; stops it on leaving. `exit_code` holds run()'s result afterwards."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(exit_code=pipeline.run()), daemon=True)
    thread.start()
    try:
        yield result
    finally:
        pipeline.stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "run() did not return after stop"


def test_batches_finishing_out_of_order_commit_in_read_order(tmp_path):
    second_stored = threading.Event()

    def second_finishes_first(rows):
        if (0, 0) in coordinates(rows):
            assert second_stored.wait(5), "the second batch was not delivered while the first was"
        elif (0, BATCH) in coordinates(rows):
            second_stored.set()

    consumer, store = FakeConsumer(messages(0, range(3 * BATCH))), Store(second_finishes_first)
    pipeline = make_pipeline(tmp_path, consumer, store)
    with running(pipeline):
        wait_until(lambda: consumer.committed_offsets(0)[-1:] == [3 * BATCH], what="every batch committed")
    assert store.rows.index((0, BATCH)) < store.rows.index((0, 0)), "the second batch was stored first"
    assert consumer.committed_offsets(0) == [BATCH, 2 * BATCH, 3 * BATCH]


def test_a_transient_sink_failure_is_retried_until_it_succeeds_without_loss_or_duplicate_commit(tmp_path):
    failures = iter(range(3))  # the first three writes fail, whichever batch they carry

    def down_for_three_writes(rows):
        if next(failures, None) is not None:
            database_down(rows)

    consumer, store = FakeConsumer(messages(0, range(3 * BATCH))), Store(down_for_three_writes)
    pipeline = make_pipeline(tmp_path, consumer, store)
    with running(pipeline):
        wait_until(lambda: consumer.committed_offsets(0)[-1:] == [3 * BATCH], what="every batch committed")
        assert pipeline.mode is Mode.PIPELINED  # back to overlapping batches
    committed = consumer.committed_offsets(0)
    assert committed == sorted(set(committed)), "an offset was committed twice or moved back"
    assert store.stored_offsets(0) == set(range(3 * BATCH))
    assert consumer.was_paused and not consumer.paused
    assert pipeline.metrics.retries.labels("database")._value.get() == 3


def test_a_revoke_with_batches_in_flight_commits_what_finished_and_drops_the_rest(tmp_path):
    revoking = threading.Event()
    revoke_seconds: list[float] = []

    def second_batch_fails_on_partition_0(rows):
        if (0, 5) in coordinates(rows):  # the second batch, while it still holds partition 0's records
            revoking.wait(5)
            database_down(rows)

    def revoke_partition_0_once_everything_is_read(consumer):
        if consumer.unconsumed() == 0 and not revoking.is_set():
            revoking.set()
            started = time.monotonic()
            consumer.revoke([0])
            revoke_seconds.append(time.monotonic() - started)

    # First batch: partitions 0 and 1, offsets 0-4; second batch: offsets 5-9.
    records = messages(0, range(5)) + messages(1, range(5)) + messages(0, range(5, 10)) + messages(1, range(5, 10))
    consumer, store = FakeConsumer(records), Store(second_batch_fails_on_partition_0)
    consumer.before_consume.append(revoke_partition_0_once_everything_is_read)
    pipeline = make_pipeline(tmp_path, consumer, store)
    with running(pipeline):
        wait_until(lambda: consumer.committed_offsets(1)[-1:] == [10], what="partition 1 committed")
    assert consumer.commits[0] == {("logs.raw", 0): 5, ("logs.raw", 1): 5}  # the first batch, before the revoke
    assert consumer.committed_offsets(0) == [5], "partition 0's second half is left to its new owner"
    assert store.stored_offsets(0) == set(range(5))
    assert store.stored_offsets(1) == set(range(10))
    assert revoke_seconds and revoke_seconds[0] < pipeline_module.REVOKE_BOUND


def test_stopping_commits_what_is_in_flight_and_pending_then_closes(tmp_path):
    def stop_once_everything_is_read(consumer):
        if consumer.unconsumed() == 0:
            pipeline.stop.set()

    def slow(rows):
        time.sleep(0.1)  # batches are still in flight when stop is set

    # The last batch is not full: stop comes while it is being collected.
    consumer, store = FakeConsumer(messages(0, range(3 * BATCH - 5))), Store(slow)
    consumer.before_consume.append(stop_once_everything_is_read)
    pipeline = make_pipeline(tmp_path, consumer, store)
    with running(pipeline) as result:
        wait_until(lambda: "exit_code" in result, what="run() to return")
    assert result["exit_code"] == 0
    assert pipeline.mode is Mode.STOPPING
    assert consumer.committed_offsets(0)[-1] == 3 * BATCH - 5
    assert consumer.closed and pipeline.db.closed


def test_stopping_with_the_database_blocked_exits_within_the_bound_uncommitted(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_module, "SHUTDOWN_BOUND", 1.5)
    monkeypatch.setattr(pipeline_module, "CLOSE_ALLOWANCE", 0.5)
    store = Store()

    def blocked_until_cut(rows):
        store.interrupted.wait(10)
        database_down(rows)

    store.behaviour = blocked_until_cut
    consumer = FakeConsumer(messages(0, range(BATCH)))
    pipeline = make_pipeline(tmp_path, consumer, store)
    with running(pipeline) as result:
        wait_until(lambda: consumer.unconsumed() == 0, what="the batch to be read")
        stopped_at = time.monotonic()
        pipeline.stop.set()
        wait_until(lambda: "exit_code" in result, what="run() to return")
    assert time.monotonic() - stopped_at < 1.5
    assert result["exit_code"] == 1
    assert store.interrupted.is_set(), "the watchdog cut the database work at the bound"
    assert consumer.commits == [] and consumer.closed


@pytest.mark.parametrize("failing, mode", [(False, Mode.PIPELINED), (True, Mode.RETRYING)])
def test_the_mode_follows_failures_and_stop(tmp_path, failing, mode):
    pipeline = make_pipeline(tmp_path, FakeConsumer([]), Store())
    pipeline._failing = failing
    assert pipeline.mode is mode
    pipeline.stop.set()
    assert pipeline.mode is Mode.STOPPING
