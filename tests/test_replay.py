"""Re-scoring against the real broker and database: `streamer replay` moves a stopped group's offsets
(kafka-consumer-groups --reset-offsets semantics), and a second model version then adds its own prediction
row per event beside the first one's."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from testkit.clients import consume_all, produce, query, wait_for
from testkit.pipeline import ROOT, StreamerProcess, caught_up, committed, end_offsets, mixed_values

pytestmark = pytest.mark.integration


def small_model(out, seed: int) -> str:
    """A small model from corpus events of `seed` (quick: no refit); returns its model_version."""
    from streamer.ml.artifacts import save_model
    from streamer.ml.corpus import generate
    from streamer.ml.train import train

    events = generate(2000, seed=seed)
    model = train(
        [e["message"] for e in events],
        [e["labels"]["level"] for e in events],
        [e["labels"]["is_anomaly"] for e in events],
        [e["@timestamp"] for e in events],
        source=f"test: corpus seed {seed}",
        seed=seed,
        refit=False,
    )
    return save_model(model, out)["model_version"]


@pytest.fixture(scope="session")
def two_models(tmp_path_factory):
    """Models A and B, trained here (not models/, so the test does not depend on the shipped one)."""
    a, b = tmp_path_factory.mktemp("model-a"), tmp_path_factory.mktemp("model-b")
    return (a, small_model(a, 10)), (b, small_model(b, 11))


def streamer_cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    if check:
        assert proc.returncode == 0, f"streamer {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def start(streamer_env, tmp_path):
    procs: list[StreamerProcess] = []

    def _start(*args: str) -> StreamerProcess:
        p = StreamerProcess(streamer_env, tmp_path / f"streamer-{len(procs)}.log", *args)
        procs.append(p)
        return p

    yield _start
    for p in procs:
        p.close()


def run_until_caught_up(start, bootstrap, topics, *args: str) -> None:
    proc = start(*args)

    def done():
        assert proc.alive(), f"streamer exited early:\n{proc.output()[-3000:]}"
        return caught_up(bootstrap, topics.group, topics.raw, 6)

    wait_for(done, timeout=120, interval=0.5, what="the group to commit the end of every partition")
    assert proc.terminate() == 0, proc.output()[-3000:]


def test_replay_to_earliest_scores_every_event_once_per_version(
    kafka_bootstrap, topics, migrated_db_url, streamer_env, start, two_models
):
    (model_a, version_a), (model_b, version_b) = two_models
    assert version_a != version_b
    values, invalid = mixed_values(1200)
    coords = produce(kafka_bootstrap, topics.raw, values, keys=[f"k{i % 50}" for i in range(len(values))])
    valid = {coords[i] for i in range(len(values)) if i not in invalid}

    run_until_caught_up(start, kafka_bootstrap, topics, "--models", str(model_a))
    ends = end_offsets(kafka_bootstrap, topics.raw, 6)
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == ends

    out = streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-earliest").stdout
    assert "state EMPTY" in out and f"{len(values)} offsets to read again" in out
    for p, end in ends.items():  # the table: one row per partition, before and after
        assert any(line.split()[:6] == [topics.raw, str(p), "0", str(end), str(end), "0"] for line in out.splitlines())
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == {p: 0 for p in range(6)}

    run_until_caught_up(start, kafka_bootstrap, topics, "--models", str(model_b))

    entries = query(migrated_db_url, "select kafka_partition, kafka_offset from log_entries")
    assert len(entries) == len(valid) and set(entries) == valid, "the replay added or lost log entries"
    per_version = dict(query(migrated_db_url, "select model_version, count(*) from ml_predictions group by 1"))
    assert per_version == {version_a: len(valid), version_b: len(valid)}
    per_event = query(
        migrated_db_url,
        "select kafka_partition, kafka_offset, array_agg(model_version order by "
        "model_version) from ml_predictions group by 1, 2",
    )
    assert {(p, o) for p, o, _ in per_event} == valid
    assert all(v == sorted([version_a, version_b]) for _, _, v in per_event), "not one row per event per version"

    # logs.scored holds both scorings of each event, each record naming its version.
    scored = consume_all(kafka_bootstrap, topics.scored)
    seen: dict[str, set] = {version_a: set(), version_b: set()}
    for r in scored:
        body = r.json()["streamer"]
        seen[body["model_version"]].add((int(r.header("source.partition")), int(r.header("source.offset"))))
    assert seen[version_a] == valid and seen[version_b] == valid

    status = streamer_cli(streamer_env, "status", "--models", str(model_b)).stdout
    assert f"{version_a}: {len(valid)} prediction rows" in status
    assert f"{version_b}: {len(valid)} prediction rows" in status


def test_replay_is_refused_while_the_group_is_active(kafka_bootstrap, topics, streamer_env, start, two_models):
    values, _ = mixed_values(300, invalid_every=0)
    produce(kafka_bootstrap, topics.raw, values)
    proc = start("--models", str(two_models[0][0]))
    wait_for(
        lambda: caught_up(kafka_bootstrap, topics.group, topics.raw, 6),
        timeout=120,
        interval=0.5,
        what="the group to catch up",
    )
    before = committed(kafka_bootstrap, topics.group, topics.raw, 6)

    refused = streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-earliest", check=False)
    assert refused.returncode == 2
    assert re.match(
        rf"streamer replay: consumer group {re.escape(topics.group)} is active \(state [A-Z_]+, 1 "
        r"member\); stop every `streamer run`",
        refused.stderr.strip().splitlines()[-1],
    )
    assert "Nothing was changed" in refused.stderr
    dry = streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-earliest", "--dry-run")
    assert "dry run: nothing changed" in dry.stdout and "a real run would be refused" in dry.stdout
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == before
    assert proc.alive()
    assert proc.terminate() == 0


def produce_at(bootstrap: str, topic: str, partition: int, timestamps_ms: list[int]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 3})
    for i, ts in enumerate(timestamps_ms):
        producer.produce(topic, value=f'{{"message": "event {i}"}}'.encode(), partition=partition, timestamp=ts)
    assert producer.flush(30) == 0


def test_to_datetime_lands_on_the_first_offset_at_or_after_it(kafka_bootstrap, topics, streamer_env):
    from streamer import replay as R

    base = 1_717_243_200_000  # 2024-06-01T12:00:00Z
    # Partition p: 10 events one second apart, starting p seconds later; partition 5 is entirely before the
    # target, partition 4 is empty.
    for p in range(4):
        produce_at(kafka_bootstrap, topics.raw, p, [base + (p + i) * 1000 for i in range(10)])
    produce_at(kafka_bootstrap, topics.raw, 5, [base - 60_000 + i for i in range(10)])
    target = "2024-06-01T12:00:04.500Z"  # base + 4500 ms
    expected = {0: 5, 1: 4, 2: 3, 3: 2, 4: 0, 5: 10}

    dry = streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-datetime", target, "--dry-run")
    assert "state DEAD" in dry.stdout and "dry run: nothing changed" in dry.stdout
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == {p: -1001 for p in range(6)}

    out = streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-datetime", target).stdout
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == expected, out
    # The same instant written with another UTC offset lands on the same offsets.
    plan = R.make_plan(
        {"bootstrap.servers": kafka_bootstrap},
        topics.group,
        [topics.raw],
        R.parse_reset(to_datetime="2024-06-01T14:00:04.500+02:00"),
    )
    assert {p.partition: p.after for p in plan.partitions} == expected

    # shift-by and to-offset clamp to [earliest, latest], like kafka-consumer-groups.
    kafka = {"bootstrap.servers": kafka_bootstrap}
    plan = R.make_plan(kafka, topics.group, [f"{topics.raw}:0,5"], R.parse_reset(shift_by=-7))
    assert [(p.partition, p.before, p.after, p.note) for p in plan.partitions] == [
        (0, 5, 0, "clamped from -2"),
        (5, 10, 3, ""),
    ]
    R.apply(kafka, plan)
    plan = R.make_plan(kafka, topics.group, [], R.parse_reset(to_offset=[f"{topics.raw}:1:99", f"{topics.raw}:2:1"]))
    assert [(p.partition, p.after, p.note) for p in plan.partitions] == [(1, 10, "clamped from 99"), (2, 1, "")]
    R.apply(kafka, plan)
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == {0: 0, 1: 10, 2: 1, 3: 2, 4: 0, 5: 3}

    latest = streamer_cli(streamer_env, "replay", "--group", topics.group, "--to-latest", "--topic", topics.raw)
    assert "offsets skipped" in latest.stdout
    assert committed(kafka_bootstrap, topics.group, topics.raw, 6) == end_offsets(kafka_bootstrap, topics.raw, 6)


def test_shift_without_a_committed_offset_is_a_clear_error(kafka_bootstrap, topics, streamer_env):
    proc = streamer_cli(streamer_env, "replay", "--group", topics.group, "--shift-by", "-5", check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == (
        f"streamer replay: cannot shift {topics.raw}[0]: group {topics.group} has no "
        "committed offset there (reset it with --to-earliest, --to-datetime or "
        "--to-offset first)"
    )
