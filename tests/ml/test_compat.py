"""Models written before the estimators took the scikit-learn shape (learned attributes without a trailing
`_`, no confidence map, the supervised cut only in metadata.json) still load and score the same."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from streamer.ml.artifacts import load_model, seal
from streamer.ml.models import DEFAULT_MIN_FAMILIARITY, LevelModel, LinearWeights, SupervisedAnomaly, TemplateRarity
from streamer.ml.scorer import Scorer
from streamer.ml.train import save, train
from tests.ml.test_artifacts import PROBE, _reseal_file
from tests.ml.test_detector import _stream

MODELS = Path(__file__).resolve().parents[2] / "models"

# what each class's to_state() wrote before: its JSON params, by name
_PARAMS_BEFORE = {
    "LevelModel": ("C", "seed", "temperature"),
    "SupervisedAnomaly": ("C", "seed", "temperature"),
    "TemplateRarity": ("k", "alert_rate", "threshold", "seen"),
}


def _as_written_before(d: Path) -> None:
    """Rewrite a model directory's part descriptions as the releases before the `_` names wrote them."""
    for part in ("level_model", "anomaly_model"):
        doc = json.loads((d / f"{part}.json").read_text())
        params = {k.rstrip("_"): v for k, v in doc["params"].items()}
        doc["params"] = {k: params[k] for k in _PARAMS_BEFORE[doc["class"]]}
        (d / f"{part}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        _reseal_file(d, f"{part}.json")
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps(seal(meta), indent=2))


def test_the_shipped_model_loads_and_scores():
    scorer = Scorer.load(MODELS)
    cols = scorer.score(PROBE, [None, "INFO", None, "FATAL", "WARN", None])
    assert cols.model_version == json.loads((MODELS / "metadata.json").read_text())["model_version"]
    assert cols.level_confidence.min() >= 0 and cols.level_confidence.max() <= 1


def test_a_supervised_model_in_the_format_before_loads_as_the_mixture_it_was(model_copy, tmp_path):
    old = tmp_path / "before"
    shutil.copytree(model_copy, old)
    _as_written_before(old)
    assert "temperature" in json.loads((old / "level_model.json").read_text())["params"]
    _, objs = load_model(old)
    level, anomaly = objs["level_model"], objs["anomaly_model"]
    assert level.temperature_ == load_model(model_copy)[1]["level_model"].temperature_
    assert isinstance(anomaly, SupervisedAnomaly) and anomaly.threshold_ == 0.5  # the cut was metadata's
    assert anomaly.min_familiarity_ == DEFAULT_MIN_FAMILIARITY  # the gate was fixed, not learnt
    now = Scorer.load(model_copy)
    now.min_familiarity = DEFAULT_MIN_FAMILIARITY
    new, before = now.score(PROBE), Scorer.load(old).score(PROBE)
    assert new.predicted_level == before.predicted_level
    np.testing.assert_array_equal(new.anomaly_score, before.anomaly_score)
    assert Scorer.load(old).anomaly_threshold == Scorer.load(model_copy).anomaly_threshold


def test_an_unsupervised_model_in_the_format_before_scores_the_same(tmp_path):
    msgs, levels = _stream(800, seed=5)
    save(train(msgs, levels, None), tmp_path / "now")
    shutil.copytree(tmp_path / "now", tmp_path / "before")
    _as_written_before(tmp_path / "before")
    now, before = load_model(tmp_path / "now")[1], load_model(tmp_path / "before")[1]
    assert isinstance(before["anomaly_model"], TemplateRarity)
    assert before["anomaly_model"].threshold_ == now["anomaly_model"].threshold_
    assert before["anomaly_model"].seen_ == now["anomaly_model"].seen_
    feats = now["vectorizer"].transform(PROBE)
    kw = {"levels": ["ERROR"] * len(PROBE)}
    np.testing.assert_array_equal(
        now["anomaly_model"].score_samples(feats, **kw), before["anomaly_model"].score_samples(feats, **kw)
    )


def _pickled_with_old_names(model, **old_attrs) -> bytes:
    """A pickle as an older release made it: the instance's __dict__ under the names it used then."""
    old = type(model).__new__(type(model))
    old.__dict__.update(old_attrs)
    return pickle.dumps(old)


def test_pickles_of_older_releases_unpickle_under_the_new_names(small_model_dir):
    # what `streamer models convert` meets: joblib/pickle restores __dict__ with the old attribute names
    _, objs = load_model(small_model_dir)
    level = objs["level_model"]
    weights = LinearWeights.__new__(LinearWeights)
    weights.coef_, weights.intercept_, weights.classes_ = level.coef_, level.intercept_, level.classes_
    blob = _pickled_with_old_names(
        level,
        C=level.C,
        seed=level.seed,
        temperature=level.temperature_,
        classes_=level.classes_,
        prior_=level.prior_,
        clf=weights,
    )
    back = pickle.loads(blob)
    assert isinstance(back, LevelModel) and back.temperature_ == level.temperature_
    feats = objs["vectorizer"].transform(PROBE)
    np.testing.assert_array_equal(back.decision_function(feats), level.decision_function(feats))
    assert not hasattr(back, "clf")
    msgs, levels = _stream(400, seed=6)
    detector = train(msgs, levels, None).anomaly_model
    back = pickle.loads(
        _pickled_with_old_names(
            detector,
            k=detector.k,
            alert_rate=detector.alert_rate,
            threshold=detector.threshold_,
            temperature=1.0,
            counts=detector.counts_,
            feature_counts=detector.feature_counts_,
            seen=detector.seen_,
            train_quantiles=detector.train_quantiles_,
        )
    )
    assert back.threshold_ == detector.threshold_ and back.counts_ == detector.counts_
    assert back.partial_fit(feats) is back and back.seen_ == detector.seen_ + len(PROBE)


@pytest.mark.parametrize("estimator", [LevelModel(), SupervisedAnomaly(), TemplateRarity()])
def test_fit_returns_self_and_learns_only_underscored_attributes(estimator, small_model_dir):
    _, objs = load_model(small_model_dir)
    msgs = [*PROBE, *PROBE]
    feats = objs["vectorizer"].transform(msgs)
    before = set(vars(estimator))
    y = {"LevelModel": ["INFO", "ERROR"] * 6, "SupervisedAnomaly": [False, True] * 6, "TemplateRarity": None}
    assert estimator.fit(feats, y[type(estimator).__name__]) is estimator
    learned = set(vars(estimator)) - before
    assert learned and all(name.endswith("_") for name in learned), learned
    assert all(not name.endswith("_") or name.startswith("_") for name in before), before
