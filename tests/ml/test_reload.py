"""streamer.ml.reload: a verified candidate replaces the scorer between batches; a tampered one is refused
(logged once) and the running scorer keeps scoring. Candidates are made the way an operator makes them —
trained (the session's small model) and promoted with streamer.ml.registry — never by writing artifact files.

The last test does it to a real `streamer run` against the real broker and PostgreSQL."""

import logging
import time
import urllib.request
from pathlib import Path

import pytest

from streamer.ml.artifacts import METADATA
from streamer.ml.registry import promote
from streamer.ml.reload import ModelWatcher
from streamer.ml.scorer import Scorer

SHIPPED = Path(__file__).resolve().parents[2] / "models"


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture()
def models_dir(tmp_path):
    """A default model directory holding the shipped model, installed by promotion."""
    if not (SHIPPED / METADATA).is_file():
        pytest.skip(f"no shipped model in {SHIPPED}")
    d = tmp_path / "models"
    promote(SHIPPED, d)
    return d


def _promote(candidate: Path, models_dir: Path) -> str:
    # forced: the small candidate's level macro-F1 may be below the shipped model's; the promotion gate is
    # tested in test_registry, this is about the switch.
    return promote(candidate, models_dir, force=True).candidate_version


def _tamper(models_dir: Path) -> str:
    """Flip one byte in the middle of the largest artifact (same size, new mtime); returns its name."""
    victim = max((p for p in models_dir.iterdir() if p.name != METADATA), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    return victim.name


def test_good_candidate_is_switched_in_after_the_interval(models_dir, small_model_dir):
    clock = Clock()
    running = Scorer.load(models_dir)
    watcher = ModelWatcher(models_dir, running, interval=5, clock=clock)
    candidate_version = _promote(small_model_dir, models_dir)
    assert candidate_version != running.model_version
    assert watcher.poll() is running  # not checked before the interval has passed
    clock.now = 6
    switched = watcher.poll()
    assert switched.model_version == candidate_version
    assert switched.score(["disk failure on node 3"]).model_version == candidate_version
    clock.now = 12
    assert watcher.poll() is switched  # unchanged directory: no reload


def test_tampered_candidate_is_refused_once_and_old_model_keeps_scoring(models_dir, small_model_dir, caplog):
    clock = Clock()
    running = Scorer.load(models_dir)
    watcher = ModelWatcher(models_dir, running, interval=1, clock=clock)
    _promote(small_model_dir, models_dir)
    victim = _tamper(models_dir)
    caplog.set_level(logging.ERROR, logger="streamer.ml.reload")
    for tick in (2, 4, 6):
        clock.now = tick
        assert watcher.poll() is running
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert victim in refusals[0].getMessage()
    assert running.score(["disk failure on node 3"]).model_version == running.model_version


# --- a real `streamer run` ------------------------------------------------------------------------------------


def _produce(bootstrap, topic, start, n):
    import orjson
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(start, start + n):
        p.produce(
            topic,
            orjson.dumps(
                {
                    "message": f"user {i} logged in from 10.0.0.{i % 250}",
                    "log": {"level": "INFO"},
                    "service": {"name": "auth"},
                }
            ),
            key=b"%d" % i,
        )
    assert p.flush(30) == 0


def _versions(url):
    from testkit.clients import query

    return dict(query(url, "SELECT model_version, count(*) FROM ml_predictions GROUP BY model_version"))


def _wait(condition, what, proc, timeout=90.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.alive(), f"streamer exited:\n{proc.output()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} not within {timeout}s:\n{proc.output()[-3000:]}"
        time.sleep(0.3)


def _model_info(port):
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sorted(line for line in body.splitlines() if line.startswith("streamer_model_info{"))


@pytest.mark.integration
def test_streamer_run_switches_to_a_promoted_model_and_refuses_a_tampered_one(
    models_dir, small_model_dir, kafka_bootstrap, topics, streamer_env, migrated_db_url, tmp_path
):
    from testkit.clients import free_port, query
    from testkit.pipeline import StreamerProcess

    old = Scorer.load(models_dir).model_version
    port = free_port()
    proc = StreamerProcess(
        streamer_env, tmp_path / "streamer.log", "--models", str(models_dir), "--metrics-port", str(port)
    )
    try:
        proc.wait_ready()
        _produce(kafka_bootstrap, topics.raw, 0, 300)
        _wait(lambda: _versions(migrated_db_url) == {old: 300}, "the first 300 rows, all by the old model", proc)
        assert _model_info(port) == [f'streamer_model_info{{model_version="{old}"}} 1.0']

        new = _promote(small_model_dir, models_dir)
        time.sleep(6)  # past the watcher's 5 s interval: the next batch is scored by the new model
        _produce(kafka_bootstrap, topics.raw, 300, 300)
        _wait(lambda: _versions(migrated_db_url) == {old: 300, new: 300}, "300 rows by the new model", proc)
        assert f"model switched between batches: {old} -> {new}" in proc.output()
        assert _model_info(port) == [f'streamer_model_info{{model_version="{new}"}} 1.0']

        victim = _tamper(models_dir)
        time.sleep(6)
        _produce(kafka_bootstrap, topics.raw, 600, 300)
        _wait(lambda: _versions(migrated_db_url) == {old: 300, new: 600}, "300 more rows by the new model", proc)
        refusals = [line for line in proc.output().splitlines() if "model reload refused" in line]
        assert len(refusals) == 1 and f"keeping {new}" in refusals[0] and victim in refusals[0]
        assert _model_info(port) == [f'streamer_model_info{{model_version="{new}"}} 1.0']
        assert proc.terminate() == 0
    finally:
        proc.close()
    # none lost, none twice: one entry and one prediction per produced event
    assert query(migrated_db_url, "SELECT count(*), count(DISTINCT (kafka_partition, kafka_offset)) FROM log_entries")[
        0
    ] == (900, 900)
