"""The ordered commit, step by step, with small fakes (the real broker and database are exercised by
tests/test_consumer.py): database, then producer flush, then one synchronous offset commit — and nothing is
committed when any step before it fails."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from confluent_kafka import TopicPartition

from streamer.batch import Batch
from streamer.checkpointing import Checkpoint, ScoredBatch
from streamer.decode import DeadLetter, Event
from streamer.errors import TransientError
from streamer.metrics import Metrics


class Columns:
    def __init__(self, n):
        self.predicted_level = ["INFO"] * n
        self.level_confidence = np.full(n, 0.5, dtype=np.float32)
        self.is_anomaly = np.zeros(n, dtype=bool)
        self.anomaly_score = np.zeros(n, dtype=np.float32)
        self.severity = ["low"] * n
        self.model_version = "v"


class Journal(list):
    """Every call of every fake, in order."""


class FakeDb:
    def __init__(self, journal, reject=(), fail=False):
        self.journal, self.reject, self.fail = journal, set(reject), fail

    def write(self, rows, templates=None):
        if self.fail:
            raise TransientError("PostgreSQL is down")
        self.journal.append(("db.write", len(rows)))
        return [(i, "db_22021", "bad") for i in sorted(self.reject)]


class FakeKafka:
    def __init__(self, journal, fail_flush=False):
        self.journal, self.fail_flush = journal, fail_flush
        self.scored, self.dead = [], []

    def publish_scored(self, records, deliveries):
        records = list(records)
        self.scored += records
        self.journal.append(("kafka.publish_scored", len(records)))

    def publish_dead_letters(self, dead, deliveries):
        dead = list(dead)
        self.dead += dead
        self.journal.append(("kafka.publish_dead_letters", len(dead)))

    def flush(self, timeout, deliveries):
        if self.fail_flush:
            raise TransientError("Kafka refused 1 records")
        self.journal.append(("kafka.flush",))


class FakeConsumer:
    def __init__(self, journal, owned):
        self.journal, self.owned = journal, owned

    def assignment(self):
        return [TopicPartition(t, p) for t, p in self.owned]

    def commit(self, offsets, asynchronous):
        assert asynchronous is False
        self.journal.append(("consumer.commit", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)))
        return offsets


def batch_of(n_events, partitions=(0, 1)):
    b = Batch()
    for i in range(n_events):
        p = partitions[i % len(partitions)]
        b.add(
            Event(
                "raw",
                p,
                100 + i,
                None,
                None,
                f"m{i}",
                datetime.now(UTC),
                None,
                None,
                None,
                f'{{"message":"m{i}"}}',
                True,
            )
        )
    b.add(DeadLetter("raw", partitions[0], 100 + n_events, None, None, b"\xff", "invalid_utf8", "x", "decode"))
    return b


def make(journal, owned=(("raw", 0), ("raw", 1)), **kw):
    db = FakeDb(journal, kw.get("reject", ()), kw.get("db_fail", False))
    kafka = FakeKafka(journal, kw.get("flush_fail", False))
    return Checkpoint(FakeConsumer(journal, owned), kafka, db, Metrics()), kafka


def test_order_is_database_then_flush_then_commit():
    journal = Journal()
    checkpoint, _kafka = make(journal)
    batch = batch_of(4)
    checkpoint.commit(ScoredBatch(batch, Columns(4)))
    assert [step[0] for step in journal] == [
        "db.write",
        "kafka.publish_scored",
        "kafka.publish_dead_letters",
        "kafka.flush",
        "consumer.commit",
    ]
    # Exactly the next offsets: partition 0 holds events 100, 102 and the dead letter 104.
    assert journal[-1] == ("consumer.commit", [("raw", 0, 105), ("raw", 1, 104)])


@pytest.mark.parametrize("failure", ["db_fail", "flush_fail"])
def test_nothing_is_committed_when_a_step_fails(failure):
    journal = Journal()
    checkpoint, _ = make(journal, **{failure: True})
    with pytest.raises(TransientError):
        checkpoint.commit(ScoredBatch(batch_of(4), Columns(4)))
    assert not any(step[0] == "consumer.commit" for step in journal)


def test_retry_after_a_failed_flush_does_not_store_again():
    journal = Journal()
    checkpoint, kafka = make(journal, flush_fail=True)
    scored = ScoredBatch(batch_of(4), Columns(4))
    with pytest.raises(TransientError):
        checkpoint.commit(scored)
    kafka.fail_flush = False
    checkpoint.commit(scored)
    assert [s[0] for s in journal].count("db.write") == 1
    assert journal[-1][0] == "consumer.commit"


def test_rows_the_database_rejects_are_dead_lettered_not_published():
    journal = Journal()
    checkpoint, kafka = make(journal, reject=[1])
    scored = ScoredBatch(batch_of(4), Columns(4))
    checkpoint.commit(scored)
    assert len(kafka.scored) == 3
    stages = sorted((d.stage, d.offset) for d in kafka.dead)
    assert stages == [("decode", 104), ("store", 101)]
    store_dead = next(d for d in kafka.dead if d.stage == "store")
    assert store_dead.value == b'{"message":"m1"}' and store_dead.error_class == "db_22021"


def test_partitions_no_longer_owned_are_not_committed():
    journal = Journal()
    checkpoint, _ = make(journal, owned=(("raw", 1),))
    checkpoint.commit(ScoredBatch(batch_of(4), Columns(4)))
    assert journal[-1] == ("consumer.commit", [("raw", 1, 104)])
