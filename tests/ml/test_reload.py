"""streamer.ml.reload: a verified candidate replaces the scorer between batches; a tampered one is refused
(logged once) and the running scorer keeps scoring. Uses the shipped model directory, copied."""

import logging
import shutil
from pathlib import Path

import pytest

from streamer.ml.artifacts import load_model, resave
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
    if not (SHIPPED / "metadata.json").is_file():
        pytest.skip(f"no shipped model in {SHIPPED}")
    d = tmp_path / "models"
    shutil.copytree(SHIPPED, d)
    return d


def _promote_candidate(d: Path) -> str:
    """Re-save the model with different artifact bytes: a genuine new version, sealed by save_model."""
    meta, objects = load_model(d)
    objects["anomaly_model"].temperature *= 1.001  # changes the saved weights, hence model_version
    return resave(meta, objects, d)["model_version"]


def test_good_candidate_is_switched_in_after_the_interval(models_dir):
    clock = Clock()
    running = Scorer.load(models_dir)
    watcher = ModelWatcher(models_dir, running, interval=5, clock=clock)
    candidate_version = _promote_candidate(models_dir)
    assert candidate_version != running.model_version
    assert watcher.poll() is running  # not checked before the interval has passed
    clock.now = 6
    switched = watcher.poll()
    assert switched.model_version == candidate_version
    assert switched.score(["disk failure on node 3"]).model_version == candidate_version
    clock.now = 12
    assert watcher.poll() is switched  # unchanged directory: no reload


def test_tampered_candidate_is_refused_once_and_old_model_keeps_scoring(models_dir, caplog):
    clock = Clock()
    running = Scorer.load(models_dir)
    watcher = ModelWatcher(models_dir, running, interval=1, clock=clock)
    _promote_candidate(models_dir)
    with open(models_dir / "level_model.npz", "r+b") as handle:  # same size, different bytes
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))
    caplog.set_level(logging.ERROR, logger="streamer.ml.reload")
    for tick in (2, 4, 6):
        clock.now = tick
        assert watcher.poll() is running
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1
    assert "sha256" in refusals[0].getMessage()
    assert running.score(["disk failure on node 3"]).model_version == running.model_version


def test_a_pickle_dropped_into_the_watched_directory_is_refused_and_never_runs(models_dir, tmp_path, caplog):
    import pickle

    from tests.ml.test_artifacts import Payload

    clock = Clock()
    running = Scorer.load(models_dir)
    watcher = ModelWatcher(models_dir, running, interval=1, clock=clock)
    marker = tmp_path / "pwned"
    (models_dir / "anomaly_model.joblib").write_bytes(pickle.dumps(Payload(marker)))
    caplog.set_level(logging.ERROR, logger="streamer.ml.reload")
    clock.now = 2
    assert watcher.poll() is running
    assert not marker.exists()
    assert "pickled artifacts are not loaded (anomaly_model.joblib)" in caplog.records[-1].getMessage()
