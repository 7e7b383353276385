import functools
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.levels import LEVELS
from streamer.ml.corpus import generate
from streamer.ml.scorer import FALLBACK_CUT, ScoreColumns, Scorer
from streamer.ml.severity import SEVERITIES


@pytest.fixture(scope="module")
def scorer(small_model_dir):
    return Scorer.load(small_model_dir)


def test_columns_contract(scorer):
    msgs = [e["message"] for e in generate(300, seed=21)] + ["", "zzz qqq unknown words"]
    cols = scorer.score(msgs)
    assert isinstance(cols, ScoreColumns) and len(cols) == len(msgs)
    assert all(lv in LEVELS for lv in cols.predicted_level)
    assert cols.level_confidence.dtype == np.float32 and cols.anomaly_score.dtype == np.float32
    assert cols.is_anomaly.dtype == bool
    for arr in (cols.level_confidence, cols.anomaly_score):
        assert arr.shape == (len(msgs),) and arr.min() >= 0 and arr.max() <= 1
    assert set(cols.severity) <= set(SEVERITIES)
    assert cols.model_version == scorer.model_version == scorer.metadata["model_version"]
    known = cols.familiarity >= scorer.min_familiarity
    np.testing.assert_array_equal(cols.is_anomaly[known], cols.anomaly_score[known] >= scorer.anomaly_threshold)
    np.testing.assert_array_equal(cols.is_anomaly[~known], cols.anomaly_score[~known] >= FALLBACK_CUT)
    assert cols.familiarity.dtype == np.float32 and cols.familiarity[-1] == 0.0
    # unfamiliar text: the answer is the training prior's, and so is its confidence
    prior = scorer._level_model.prior_
    assert cols.predicted_level[-1] == scorer._level_model.classes_[prior.argmax()]
    assert cols.level_confidence[-1] == pytest.approx(prior.max(), abs=1e-6) and prior.max() < 0.9
    assert cols.row(0)["familiarity"] == round(float(cols.familiarity[0]), 4) > 0.5


def test_empty_batch(scorer):
    cols = scorer.score([])
    assert len(cols) == 0 and cols.severity == [] and cols.level_confidence.dtype == np.float32
    assert cols.is_anomaly.dtype == bool and cols.anomaly_score.shape == (0,)


def test_one_transform_and_one_call_per_model_per_batch(small_model_dir, monkeypatch):
    s = Scorer.load(small_model_dir)
    calls = {"transform": 0, "level": 0, "anomaly": 0}

    def counting(obj, name, key):
        real = getattr(obj, name)

        def wrapper(*a, **k):
            calls[key] += 1
            return real(*a, **k)

        monkeypatch.setattr(obj, name, wrapper)

    counting(s._vectorizer, "transform", "transform")
    counting(s._level_model, "predict_proba", "level")
    counting(s._anomaly_model, "score_samples", "anomaly")
    s.score([e["message"] for e in generate(1000, seed=22)])
    assert calls == {"transform": 1, "level": 1, "anomaly": 1}


def test_batch_equals_one_by_one(scorer):
    msgs = [e["message"] for e in generate(50, seed=23)]
    batch = scorer.score(msgs, learn=False)
    for i, m in enumerate(msgs):
        one = scorer.score([m], learn=False)
        assert one.predicted_level[0] == batch.predicted_level[i]
        assert one.level_confidence[0] == pytest.approx(batch.level_confidence[i], abs=1e-6)
        assert one.anomaly_score[0] == pytest.approx(batch.anomaly_score[i], abs=1e-6)


def test_severity_uses_declared_level_else_predicted(scorer):
    msgs = ["user alice logged in"] * 3
    s_pred = scorer.score(msgs[:1])
    cols = scorer.score(msgs, ["ERROR", None, "warning"])
    expected_first = "critical" if cols.is_anomaly[0] else "high"
    assert cols.severity[0] == expected_first
    assert cols.severity[1] == s_pred.severity[0]
    assert cols.severity[2] == ("high" if cols.is_anomaly[2] else "medium")  # normalised here too
    with pytest.raises(ValueError):
        scorer.score(msgs, ["INFO"])


def test_threshold_override(small_model_dir):
    msgs = [e["message"] for e in generate(200, seed=24)]
    strict = Scorer.load(small_model_dir, anomaly_threshold=0.0)
    cols = strict.score(msgs)
    known = cols.familiarity >= strict.min_familiarity  # the rest is the fallback's (its own cut)
    assert known.mean() > 0.9 and cols.is_anomaly[known].all()
    lenient = Scorer.load(small_model_dir, anomaly_threshold=1.0)
    assert lenient.anomaly_threshold == 1.0
    assert not lenient.score(msgs).is_anomaly.any()


def test_concurrent_scoring_gives_the_same_answers(scorer):
    # learn=False: the fallback's template counts would otherwise (rightly) move the gated rows' scores
    msgs = [e["message"] for e in generate(2000, seed=25)]
    expected = scorer.score(msgs, learn=False)
    results = [None] * 4

    def work(i):
        results[i] = scorer.score(msgs, learn=False)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert r.predicted_level == expected.predicted_level
        np.testing.assert_array_equal(r.anomaly_score, expected.anomaly_score)


def test_detects_injected_anomalies(scorer):
    events = generate(3000, seed=26)
    cols = scorer.score([e["message"] for e in events])
    truth = np.array([e["labels"]["is_anomaly"] for e in events])
    assert (cols.is_anomaly & truth).sum() >= 0.8 * truth.sum()
    assert (cols.is_anomaly & ~truth).sum() <= 0.02 * (~truth).sum()


@functools.lru_cache(maxsize=1)
def _shipped_scorer():
    return Scorer.load(Path(__file__).resolve().parents[2] / "models")


_pieces = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "\x01",
            "\n\x01\n",
            "\x00",
            "status=503",
            "12 ms",
            "97%",
            "0xdead",
            "10.0.0.1:80",
            "/var/log",
            "C:\\x",
            "a@b.io",
            "https://x/y",
            "١٢",
            "İ",
            "ß",
            "\t",
            " ",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(_pieces, max_size=8).map("".join), min_size=1, max_size=6),
    st.lists(st.sampled_from([None, "INFO", "warning", "??"]), min_size=6, max_size=6),
)
def test_the_shipped_scorer_scores_any_text(messages, levels):
    # Any text a decoder can produce must score: an exception here fails a whole batch.
    cols = _shipped_scorer().score(messages, levels[: len(messages)])
    assert len(cols) == len(messages) and len(cols.severity) == len(messages)
    assert np.all((cols.level_confidence >= 0) & (cols.level_confidence <= 1))
    assert np.all((cols.anomaly_score >= 0) & (cols.anomaly_score <= 1))
    assert set(cols.predicted_level) <= set(LEVELS)


def test_concurrent_learning_counts_every_gated_row_once(small_model_dir):
    s = Scorer.load(small_model_dir)
    msgs = [f"qzx{i % 50} frobbed the wibble" for i in range(500)]  # unfamiliar: the fallback learns them
    threads = [threading.Thread(target=s.score, args=(msgs, ["ERROR"] * 500)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s._fallback.seen == 2000 and sum(s._fallback._sightings.values()) == 2000
    assert len(s._fallback._recent) == s._fallback.window == sum(s._fallback._in_recent.values())
