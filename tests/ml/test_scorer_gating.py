"""Familiarity gate: with the shipped model, text the vocabulary does not know is never flagged anomalous on
its own; the fallback judges it by its declared level x novelty x burst (streamer.ml.gate)."""

from pathlib import Path

import numpy as np
import pytest

from streamer.ml.features import Features
from streamer.ml.gate import BURST, FALLBACK_CUT, WINDOW, UnfamiliarFallback
from streamer.ml.models import (
    DEFAULT_MIN_FAMILIARITY,
    GATE_QUANTILE,
    MAX_GATE,
    SupervisedAnomaly,
    learnt_min_familiarity,
)
from streamer.ml.scorer import Scorer

MODELS = Path(__file__).resolve().parents[2] / "models"
GIBBERISH = "zqxv plorb wembly frandle quorst glimbat"  # familiarity 0 for any model trained on English logs


def test_unfamiliar_text_is_not_anomalous():
    scorer = Scorer.load(MODELS, anomaly_threshold=0.0)  # threshold 0: only the gate can stop a flag
    cols = scorer.score(["zqxv plorb wembly frandle quorst glimbat", "xyzzy frobnicate snarf blarg"])
    assert not cols.is_anomaly.any()


def test_the_shipped_model_learnt_a_stricter_gate_than_the_fixed_one():
    # an OpenSSH line the shipped model partly knows (its supervised score flagged it under the fixed gate);
    # threshold 0: only the gate can stop a flag
    line = ["Invalid user oracle from 103.99.0.122"]
    scorer = Scorer.load(MODELS, anomaly_threshold=0.0)
    assert scorer.min_familiarity == MAX_GATE > DEFAULT_MIN_FAMILIARITY
    cols = scorer.score(line)
    assert DEFAULT_MIN_FAMILIARITY <= cols.familiarity[0] < scorer.min_familiarity and not cols.is_anomaly[0]
    scorer.min_familiarity = DEFAULT_MIN_FAMILIARITY
    assert scorer.score(line).is_anomaly[0]


def _features(familiarity) -> Features:
    import scipy.sparse as sp

    n = len(familiarity)
    return Features(sp.csr_matrix(np.eye(n, 3)), np.asarray(familiarity, dtype=np.float32))


def test_the_gate_is_learnt_from_the_calibration_rows_and_saved():
    fam = np.linspace(0.0, 1.0, 101)
    assert learnt_min_familiarity(fam) == pytest.approx(GATE_QUANTILE)
    assert learnt_min_familiarity(np.ones(50)) == MAX_GATE  # all familiar: capped
    assert learnt_min_familiarity(np.zeros(0)) == DEFAULT_MIN_FAMILIARITY
    X = _features(np.ones(6))
    y = np.array([0, 1, 0, 1, 0, 1], dtype=bool)
    cal = _features([0.3] * 6)
    model = SupervisedAnomaly().fit(X, y, calibration=(cal, y))
    assert model.min_familiarity_ == pytest.approx(0.3)
    assert SupervisedAnomaly().fit(X, y, calibrated_like=model).min_familiarity_ == model.min_familiarity_  # refit
    assert SupervisedAnomaly().fit(X, y).min_familiarity_ == DEFAULT_MIN_FAMILIARITY
    arrays, params = model.to_state()
    assert SupervisedAnomaly.from_state(arrays, params).min_familiarity_ == pytest.approx(0.3)
    del params["min_familiarity_"]  # written before the gate was learnt
    assert SupervisedAnomaly.from_state(arrays, params).min_familiarity_ == DEFAULT_MIN_FAMILIARITY
    with pytest.raises(ValueError, match="min_familiarity_"):
        SupervisedAnomaly.from_state(arrays, {**params, "min_familiarity_": 1.5})


def test_a_burst_of_a_new_error_template_alerts_a_lone_line_does_not():
    scorer = Scorer.load(MODELS)
    lone = scorer.score([GIBBERISH], ["FATAL"])
    assert not lone.is_anomaly[0] and lone.severity == ["high"]  # severity still rests on the declared level
    n = int(BURST) + 2
    burst = scorer.score([GIBBERISH + " again"] * n, ["FATAL"] * n)
    assert burst.is_anomaly.all() and burst.anomaly_score.min() >= FALLBACK_CUT
    assert set(burst.severity) == {"critical"}
    # without a declared error level a burst is not an alert, and no declared level never is
    for levels in (["INFO"] * n, [None] * n, None):
        assert not scorer.score(["blorf quax " + str(levels)] * n, levels).is_anomaly.any()


def test_a_template_that_keeps_coming_stops_alerting():
    scorer = Scorer.load(MODELS)
    batch = ["wibble frobnicated the zorp"] * 20
    assert scorer.score(batch, ["ERROR"] * 20).is_anomaly.all()
    for _ in range(WINDOW // 20):  # the window fills with it; what came before the window counts as seen
        scorer.score(batch, ["ERROR"] * 20)
    assert not scorer.score(batch, ["ERROR"] * 20).is_anomaly.any()


def _stream(n: int, seed: int):
    rng = np.random.default_rng(seed)
    templates = [f"qzx{t} plorb fault" for t in range(40)]
    # a few templates come in bursts, the rest now and then; levels mixed
    msgs = [templates[int(rng.integers(0, 4 if i % 300 < 40 else 40))] for i in range(n)]
    levels = [("FATAL", "ERROR", "INFO", None)[int(rng.integers(0, 4))] for _ in range(n)]
    return msgs, levels


def _fallback_scores(msgs, levels, batch: int) -> np.ndarray:
    scorer = Scorer.load(MODELS)
    out = [scorer.score(msgs[i : i + batch], levels[i : i + batch]).anomaly_score for i in range(0, len(msgs), batch)]
    return np.concatenate(out)


def test_a_batch_larger_than_the_window_is_judged_as_consecutive_windows():
    msgs, levels = _stream(5 * WINDOW, seed=1)
    one = _fallback_scores(msgs, levels, 5 * WINDOW)
    np.testing.assert_array_equal(one, _fallback_scores(msgs, levels, WINDOW))
    assert (one >= FALLBACK_CUT).any() and (one < FALLBACK_CUT).any()


def test_one_line_at_a_time_a_burst_alerts_from_its_burst_th_line_on():
    n = int(BURST) + 3
    scores = _fallback_scores([GIBBERISH] * n, ["FATAL"] * n, batch=1)
    flagged = (scores >= FALLBACK_CUT).tolist()
    assert flagged == [False] * (int(BURST) - 1) + [True] * 4


def test_scoring_without_learning_leaves_the_fallback_as_it_was():
    fallback = UnfamiliarFallback()
    X = _features([0.0] * 12)
    msgs, levels = ["blorp zank"] * 12, ["FATAL"] * 12
    first = fallback.score(X, levels, None, msgs, learn=False)
    np.testing.assert_array_equal(first, fallback.score(X, levels, None, msgs, learn=False))
    assert fallback.seen == 0 and not fallback._sightings and not fallback._recent
    fallback.score(X, levels, None, msgs, learn=True)
    assert fallback.seen == 12 and list(fallback._sightings.values()) == [12] and len(fallback._recent) == 12


def test_the_fallback_keeps_its_memory_bounded(monkeypatch):
    from streamer.ml.models import TemplateRarity

    monkeypatch.setattr(TemplateRarity, "MAX_KEYS", 4)
    fallback = UnfamiliarFallback()
    # digit-bearing tokens are not part of a text key: the templates differ by letters
    msgs = ["blorp zank"] * 3 + [f"qzx{'abcde'[i]} wob" for i in range(5)]
    fallback.score(_features([0.0] * len(msgs)), ["ERROR"] * len(msgs), None, msgs, learn=True)
    assert len(fallback._sightings) == 2 and max(fallback._sightings.values()) == 3  # the recurring one stays
