"""Issue 11 row 4 at start-up: topics whose max.message.bytes is below what streamer may send them are named
in one warning line each, and the records they refuse still never block a partition (real broker)."""

from __future__ import annotations

import hashlib
import random

import pytest

from streamer.kafka_admin import delete_topics, ensure_topics, topic_limit_warnings
from testkit.clients import consume_all, produce, query, wait_for
from testkit.pipeline import StreamerProcess, caught_up, valid_event

pytestmark = [pytest.mark.integration]


@pytest.fixture
def small_topics(kafka_bootstrap, topics):
    """An output topic taking 50,000 bytes and a dead-letter topic taking 100,000 (the broker default is 1 MiB)."""
    scored, dead = f"{topics.scored}-small", f"{topics.deadletter}-small"
    for name, n, limit in ((scored, 6, "50000"), (dead, 1, "100000")):  # returns once the broker has them
        ensure_topics({"bootstrap.servers": kafka_bootstrap}, {name: n}, topic_config={"max.message.bytes": limit})
    yield scored, dead
    delete_topics({"bootstrap.servers": kafka_bootstrap}, [scored, dead])


def test_topics_below_what_streamer_sends_are_named_with_what_happens(kafka_bootstrap, topics, small_topics):
    config = {"bootstrap.servers": kafka_bootstrap}
    scored, dead = small_topics
    warnings = topic_limit_warnings(config, scored, dead, [topics.raw], max_event_bytes=1024 * 1024)
    assert len(warnings) == 2, warnings
    out, dlq = warnings
    assert out.startswith(f"topic {scored} accepts records up to 50,000 bytes (max.message.bytes)")
    assert "truncated to 16 KiB" in out and "still stored" in out
    assert dlq.startswith(f"topic {dead} accepts records up to 100,000 bytes (max.message.bytes)")
    assert "deadletter.original_sha256" in dlq
    # The topics `streamer init` creates (16 MiB, as the fixture's) need no warning.
    assert topic_limit_warnings(config, topics.scored, topics.deadletter, [topics.raw], 1024 * 1024) == []
    # Output records follow STREAMER_MAX_MESSAGE_BYTES: events of 40 KB at most fit a 50,000-byte topic.
    assert [w for w in topic_limit_warnings(config, scored, topics.deadletter, [topics.raw], 40_000)] == []


def test_a_dead_letter_topic_too_small_is_warned_about_and_never_blocks(
    kafka_bootstrap, topics, small_topics, streamer_env, migrated_db_url, tmp_path
):
    _, dead = small_topics
    env = {**streamer_env, "STREAMER_DLQ_TOPIC": dead}
    proc = StreamerProcess(env, tmp_path / "streamer.log")
    try:
        wait_for(
            lambda: f"topic {dead} accepts records up to 100,000 bytes" in proc.output(),
            timeout=60,
            what="the start-up warning about the dead-letter topic",
        )
        # A 1 MB malformed record (incompressible: lz4 would shrink a run of one byte below the limit).
        poison = b"{" + random.Random(4).randbytes(1_000_000)
        values = [valid_event(i, random.Random(i)) for i in range(20)]
        values.insert(10, poison)
        coords = produce(kafka_bootstrap, topics.raw, values, config={"message.max.bytes": 2_000_000})
        wait_for(
            lambda: caught_up(kafka_bootstrap, topics.group, topics.raw, 6),
            timeout=60,
            what="the group to commit past the oversized dead letter",
        )
        assert proc.terminate() == 0, proc.output()[-3000:]
    finally:
        proc.close()
    [letter] = consume_all(kafka_bootstrap, dead, expected=1)
    assert letter.header("source.offset") == str(coords[10][1]).encode()
    assert letter.header("deadletter.truncated") == b"true"
    assert letter.header("deadletter.original_size") == b"1000001"
    assert letter.header("deadletter.original_sha256") == hashlib.sha256(poison).hexdigest().encode()
    assert letter.value == poison[: 16 * 1024]
    assert query(migrated_db_url, "select count(*) from log_entries")[0][0] == 20
