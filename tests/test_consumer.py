"""`streamer run` end to end against the real broker and database: every valid input exactly once in
PostgreSQL, at least once on logs.scored, every invalid one dead-lettered with its bytes — through SIGTERM,
a database outage, a poison record and a member leaving the group."""

from __future__ import annotations

import time

import pytest

from testkit.checks import check_delivery, wait_caught_up
from testkit.clients import consume_all, free_port, produce, query, scrape, wait_for
from testkit.pipeline import caught_up, committed, mixed_values, valid_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def retrying_a_database_outage(bootstrap, topics, start, db_proxy, n, seed):
    """A member caught up on n events, then the database cut and n more produced, until the member retries.
    Returns (process, coords, values, invalid) of everything produced."""
    proxy, via_proxy = db_proxy
    values, invalid = mixed_values(n)
    coords = produce(bootstrap, topics.raw, values)
    proc = start(env={"STREAMER_DATABASE_URL": via_proxy})
    wait_caught_up(bootstrap, topics, [proc])

    proxy.cut()
    more, more_invalid = mixed_values(n, seed=seed)
    coords += produce(bootstrap, topics.raw, more)
    values += more
    invalid |= {i + n for i in more_invalid}
    wait_for(lambda: "retrying with backoff" in proc.output(), timeout=30, what="the outage to be noticed")
    return proc, coords, values, invalid


def test_end_to_end_then_sigterm_and_restart(kafka_bootstrap, topics, migrated_db_url, start):
    values, invalid = mixed_values(3000)
    keys = [f"k{i % 100}".encode() for i in range(len(values))]
    coords = produce(kafka_bootstrap, topics.raw, values[:2000], keys=keys[:2000])
    port = free_port()
    first = start(env={"STREAMER_METRICS_PORT": str(port)})
    wait_for(
        lambda: query(migrated_db_url, "select count(*) from log_entries")[0][0] > 0,
        timeout=60,
        what="the first stored batch",
    )
    assert scrape(port, "/healthz")[0] == 200
    status, body = scrape(port, "/readyz")
    assert status == 200 and '"ready":true' in body
    import re

    def committed_and_lag_reported():
        text = scrape(port, "/metrics")[1]
        commits = re.search(r"^streamer_commits_total (\S+)$", text, re.M)
        return text if commits and float(commits.group(1)) >= 1 and "streamer_consumer_lag{" in text else None

    # librdkafka reports lag with its statistics, every 5 s.
    metrics = wait_for(committed_and_lag_reported, timeout=30, what="a commit and the lag in /metrics")
    for name in (
        "streamer_events_in_total",
        "streamer_events_scored_total",
        "streamer_dead_letters_total",
        "streamer_batch_size_bucket",
        'streamer_stage_seconds_count{stage="score"}',
        'streamer_stage_seconds_count{stage="store"}',
        'streamer_stage_seconds_count{stage="commit"}',
    ):
        assert name in metrics, f"{name} missing from /metrics"
    coords += produce(kafka_bootstrap, topics.raw, values[2000:], keys=keys[2000:])
    assert first.terminate() == 0, first.output()[-3000:]
    assert "finishing the current batch" in first.output()
    stopped_at = committed(kafka_bootstrap, topics.group, topics.raw, 6)
    assert all(o >= 0 for o in stopped_at.values()), "SIGTERM left a partition uncommitted"

    second = start()
    wait_caught_up(kafka_bootstrap, topics, [second])
    assert second.terminate() == 0
    check_delivery(kafka_bootstrap, topics, migrated_db_url, coords, values, invalid)
    # Keys are kept on logs.scored.
    scored = consume_all(kafka_bootstrap, topics.scored)
    by_coord = {(int(r.header("source.partition")), int(r.header("source.offset"))): r.key for r in scored}
    assert all(by_coord[coords[i]] == keys[i] for i in range(len(values)) if i not in invalid)


def test_database_outage_commits_nothing_and_loses_nothing(kafka_bootstrap, topics, migrated_db_url, start, db_proxy):
    proxy, _ = db_proxy
    proc, coords, values, invalid = retrying_a_database_outage(kafka_bootstrap, topics, start, db_proxy, 1000, 8)
    before = committed(kafka_bootstrap, topics.group, topics.raw, 6)
    time.sleep(3)
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == before, "committed while the DB was down"
    assert proc.alive()

    proxy.restore()
    wait_caught_up(kafka_bootstrap, topics, [proc])
    assert "recovered" in proc.output()
    assert proc.terminate() == 0
    check_delivery(kafka_bootstrap, topics, migrated_db_url, coords, values, invalid)


def test_poison_record_only_it_is_dead_lettered(kafka_bootstrap, topics, migrated_db_url, start):
    import random

    import orjson

    rng = random.Random(3)
    values = [valid_event(i, rng) for i in range(300)]
    values[150] = orjson.dumps({"message": "poison \u0000 byte", "seq": 150})  # JSON-valid, PostgreSQL-invalid
    coords = produce(kafka_bootstrap, topics.raw, values, partition=0)
    proc = start(env={"STREAMER_BATCH_MAX_EVENTS": "1000", "STREAMER_BATCH_MAX_MS": "2000"})
    wait_caught_up(kafka_bootstrap, topics, [proc])
    assert proc.terminate() == 0

    stored = {o for (o,) in query(migrated_db_url, "select kafka_offset from log_entries")}
    assert stored == {o for i, (_, o) in enumerate(coords) if i != 150}
    dead = consume_all(kafka_bootstrap, topics.deadletter)
    assert len(dead) == 1
    assert dead[0].header("deadletter.stage") == b"store"
    assert dead[0].header("source.offset") == str(coords[150][1]).encode()
    assert orjson.loads(dead[0].value) == orjson.loads(values[150])
    assert "rejected 1 of" in proc.output()


SCORER_FAULT = """
import streamer.ml.scorer as scorer

_score = scorer.Scorer.score


def score(self, messages, declared_levels=None):
    if any("scorer-poison" in m for m in messages):
        raise ValueError("injected scorer fault")
    return _score(self, messages, declared_levels)


scorer.Scorer.score = score
"""


def test_an_event_the_scorer_fails_on_is_dead_lettered_alone(kafka_bootstrap, topics, migrated_db_url, start, tmp_path):
    import random

    import orjson

    # Fault injection in the real process: sitecustomize makes its scorer raise on any batch with a marker.
    (tmp_path / "fault").mkdir()
    (tmp_path / "fault" / "sitecustomize.py").write_text(SCORER_FAULT)
    rng = random.Random(5)
    values = [valid_event(i, rng) for i in range(300)]
    poison = {100, 201}
    for i in poison:
        values[i] = orjson.dumps({"message": f"scorer-poison {i}", "seq": i})
    coords = produce(kafka_bootstrap, topics.raw, values, partition=1)
    proc = start(
        env={
            "PYTHONPATH": str(tmp_path / "fault"),
            "STREAMER_BATCH_MAX_EVENTS": "1000",
            "STREAMER_BATCH_MAX_MS": "2000",
        }
    )
    wait_caught_up(kafka_bootstrap, topics, [proc])
    assert proc.terminate() == 0

    good = {o for i, (_, o) in enumerate(coords) if i not in poison}
    assert {o for (o,) in query(migrated_db_url, "select kafka_offset from ml_predictions")} == good
    assert {int(m.header("source.offset")) for m in consume_all(kafka_bootstrap, topics.scored)} == good
    dead = consume_all(kafka_bootstrap, topics.deadletter)
    assert sorted(int(d.header("source.offset")) for d in dead) == sorted(coords[i][1] for i in poison)
    assert {(d.header("deadletter.stage"), d.header("deadletter.error_class")) for d in dead} == {
        (b"score", b"score_failed")
    }
    assert {orjson.loads(d.value)["seq"] for d in dead} == poison
    assert "the scorer failed on" in proc.output()


def test_two_members_share_partitions_and_one_leaves(kafka_bootstrap, topics, migrated_db_url, start):
    values, invalid = mixed_values(6000, invalid_every=100)
    coords = produce(kafka_bootstrap, topics.raw, values[:3000])
    a, b = start(), start()
    wait_for(
        lambda: f"assigned {topics.raw}" in a.output() and f"assigned {topics.raw}" in b.output(),
        timeout=60,
        what="both members to get partitions",
    )
    coords += produce(kafka_bootstrap, topics.raw, values[3000:])
    assert b.terminate() == 0, b.output()[-3000:]
    wait_caught_up(kafka_bootstrap, topics, [a])
    assert a.terminate() == 0
    check_delivery(kafka_bootstrap, topics, migrated_db_url, coords, values, invalid)
    # Read again until it answers: a single OffsetFetch on this busy machine once came back without an offset.
    wait_for(lambda: caught_up(kafka_bootstrap, topics.group, topics.raw, 6), timeout=30, what="the final commits")


def test_a_wrong_setting_stops_start_up_with_one_line(streamer_env):
    import subprocess
    import sys

    env = {**streamer_env, "STREAMER_BATCH_MAX_MS": "soon", "STREAMER_KAFKA_SASL_PASSWORD": "hunter2-secret"}
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "streamer run: STREAMER_BATCH_MAX_MS='soon' is not a valid int"


def test_rebalance_while_retrying_an_outage(kafka_bootstrap, topics, migrated_db_url, start, db_proxy):
    """Member a loses its database; member b joins mid-outage (a's partitions are revoked while a is paused and
    retrying). a must resume the partitions it gets back, and every event lands once the database returns."""
    proxy, via_proxy = db_proxy
    values, invalid = mixed_values(2000)
    coords = produce(kafka_bootstrap, topics.raw, values[:1000])
    a = start(env={"STREAMER_DATABASE_URL": via_proxy})
    wait_caught_up(kafka_bootstrap, topics, [a])
    proxy.cut()
    coords += produce(kafka_bootstrap, topics.raw, values[1000:])
    wait_for(lambda: "retrying with backoff" in a.output(), timeout=30, what="a to notice the outage")
    b = start()
    wait_for(lambda: f"assigned {topics.raw}" in b.output(), timeout=60, what="b to join")
    time.sleep(2)
    proxy.restore()
    wait_caught_up(kafka_bootstrap, topics, [a, b])
    assert a.terminate() == 0 and b.terminate() == 0
    check_delivery(kafka_bootstrap, topics, migrated_db_url, coords, values, invalid)


def test_member_consumes_again_after_losing_its_assignment_while_retrying(
    kafka_bootstrap, topics, migrated_db_url, start, db_proxy
):
    # Issue 11 row 2: the assignment is lost (session timeout) while a batch is retried; once the group has
    # the member back, it must consume the partitions again (it used to stay paused: "resumed 0 partition(s)").
    # The member is frozen with SIGSTOP longer than session.timeout.ms (6 s in tests) so the coordinator
    # evicts it — the same lost-assignment path a broker outage takes.
    import signal

    proxy, _ = db_proxy
    proc, coords, values, invalid = retrying_a_database_outage(kafka_bootstrap, topics, start, db_proxy, 600, 9)
    proc.proc.send_signal(signal.SIGSTOP)
    time.sleep(12)
    proc.proc.send_signal(signal.SIGCONT)
    wait_for(
        lambda: "assignment lost" in proc.output() or "revoked" in proc.output(),
        timeout=60,
        what="the member to notice it lost its partitions",
    )
    proxy.restore()
    wait_caught_up(kafka_bootstrap, topics, [proc])
    # And it keeps consuming what arrives afterwards.
    last, last_invalid = mixed_values(300, seed=10)
    coords += produce(kafka_bootstrap, topics.raw, last)
    invalid |= {i + len(values) for i in last_invalid}
    values += last
    wait_caught_up(kafka_bootstrap, topics, [proc])
    assert proc.terminate() == 0
    check_delivery(kafka_bootstrap, topics, migrated_db_url, coords, values, invalid)
