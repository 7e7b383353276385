"""Issue 11 row 2 with a real broker outage: a private broker advertised behind a TCP proxy goes away for
longer than the session timeout while a batch is being retried, and for longer than message.timeout.ms
(tests/private_stack.py). Once it is back the member consumes again, records that timed out in the producer
are sent again, and nothing was committed before it was acknowledged."""

from __future__ import annotations

import re
import time

import pytest

from testkit.checks import check_delivery, wait_caught_up
from testkit.clients import produce, query, wait_for
from testkit.pipeline import StreamerProcess, committed, mixed_values
from tests.private_stack import streamer_env_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGE_TIMEOUT_MS = 5000  # the producer gives records up long before the broker returns
OUTAGE_S = 25  # > session.timeout.ms (6 s, testkit.pipeline.FAST_GROUP) and > MESSAGE_TIMEOUT_MS


@pytest.mark.parametrize("during", ["retrying", "delivering"])
def test_member_consumes_again_after_a_broker_outage_longer_than_the_session_timeout(
    during, private_kafka, private_topics, migrated_db_url, db_proxy, tmp_path
):
    # retrying: the database is cut first, so the broker goes while a batch is retried (the case);
    # delivering: the broker goes while batches are stored and published on the worker threads.
    kafka, topics = private_kafka, private_topics
    db, via_db_proxy = db_proxy
    env = streamer_env_for(
        topics, kafka.proxied_bootstrap, via_db_proxy, STREAMER_KAFKA_MESSAGE_TIMEOUT_MS=str(MESSAGE_TIMEOUT_MS)
    )
    proc = StreamerProcess(env, tmp_path / "streamer.log")
    try:
        values, invalid = mixed_values(600)
        coords = produce(kafka.bootstrap, topics.raw, values)
        wait_caught_up(kafka.bootstrap, topics, [proc])
        before = committed(kafka.bootstrap, topics.group, topics.raw, 6)

        stored = len(values) - len(invalid)
        if during == "retrying":
            db.cut()
        more, more_invalid = mixed_values(600 if during == "retrying" else 20_000, seed=11)
        coords += produce(kafka.bootstrap, topics.raw, more)
        invalid |= {i + len(values) for i in more_invalid}
        values += more
        if during == "retrying":
            wait_for(lambda: "retrying with backoff" in proc.output(), timeout=30, what="the database outage")
        else:
            wait_for(
                lambda: query(migrated_db_url, "select count(*) from log_entries")[0][0] > stored,
                timeout=30,
                interval=0.05,
                what="the first batch of the second part stored",
            )
        kafka.proxy.cut()
        cut_at = time.monotonic()
        if during == "retrying":
            time.sleep(1)
            db.restore()  # the batch now stores, then its records time out in the producer
            wait_for(
                lambda: re.search(r"Kafka refused \d+ records \(.*Message timed out", proc.output()),
                timeout=OUTAGE_S,
                what="the records to time out in the producer",
            )
        wait_for(
            lambda: "assignment lost" in proc.output(),
            timeout=OUTAGE_S,
            what="the member to lose its assignment (session timeout)",
        )
        if during == "retrying":  # nothing of the second part is committed: its records were never acknowledged
            assert committed(kafka.bootstrap, topics.group, topics.raw, 6) == before
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - cut_at)))
        assert proc.alive(), f"streamer exited during the outage:\n{proc.output()[-3000:]}"
        kafka.proxy.restore()

        wait_caught_up(kafka.bootstrap, topics, [proc], timeout=120)
        after_loss = proc.output().split("assignment lost", 1)[1]
        assert f"assigned {topics.raw}" in after_loss, "the member was never assigned its partitions again"
        # ... and it keeps consuming what arrives afterwards.
        last, last_invalid = mixed_values(300, seed=12)
        coords += produce(kafka.bootstrap, topics.raw, last)
        invalid |= {i + len(values) for i in last_invalid}
        values += last
        wait_caught_up(kafka.bootstrap, topics, [proc])
        assert proc.terminate() == 0
        # Every row once, every event on logs.scored (those that timed out were sent again), dead letters whole.
        check_delivery(kafka.bootstrap, topics, migrated_db_url, coords, values, invalid)
    finally:
        proc.close()
