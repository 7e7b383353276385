"""The level model's mixture temperature S: learnt on held-out rows that know at most half their words,
felt by a row as much as it holds unknown words, never moving a label; old models score as they did."""

import json
import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from streamer.ml.artifacts import load_model
from streamer.ml.features import Features
from streamer.ml.models import MIN_MIXTURE_ROWS, MIXTURE_FAMILIARITY, LevelModel
from streamer.ml.train import train

CLASSES = ("INFO", "ERROR")


def _features(word: np.ndarray, familiarity) -> Features:
    """One-hot rows over two words (0 -> INFO's word, 1 -> ERROR's), with the given familiarity."""
    n = len(word)
    X = sp.csr_matrix((np.ones(n), (np.arange(n), word)), shape=(n, 2))
    return Features(X, np.broadcast_to(np.asarray(familiarity, dtype=np.float32), (n,)).copy())


@pytest.fixture
def model() -> LevelModel:
    """INFO three times as common as ERROR; its words tell them apart."""
    word = np.array([0, 0, 0, 1] * 50)
    return LevelModel().fit(_features(word, 1.0), np.array(CLASSES)[word])


def _held_out(n: int, familiarity: float, right: bool):
    """n rows of INFO's word; their truth INFO (the mixture's answer) or ERROR."""
    return _features(np.zeros(n, dtype=np.int64), familiarity), np.array(["INFO" if right else "ERROR"] * n)


def test_s_sharpens_half_known_text_that_is_right_and_softens_it_when_wrong(model):
    X, y = _held_out(2 * MIN_MIXTURE_ROWS, 0.2, right=True)
    before = model.predict_proba(X)[:, 1].max()
    assert model.calibrate_mixture(X, y) is model
    assert model.mixture_temperature_ < 1.0 and model.predict_proba(X)[:, 1].min() > before
    X, y = _held_out(2 * MIN_MIXTURE_ROWS, 0.2, right=False)
    assert model.calibrate_mixture(X, y).mixture_temperature_ > 1.0


def test_s_moves_no_label_and_leaves_known_rows_alone(model):
    word = np.array([0, 1] * 40)
    mixed = _features(word, np.linspace(0.0, 1.0, len(word)))
    known = _features(word, 1.0)
    labels, on_known = model.predict(mixed), model.predict_proba(known)
    model.calibrate_mixture(*_held_out(2 * MIN_MIXTURE_ROWS, 0.2, right=True))
    assert model.mixture_temperature_ < 0.5
    np.testing.assert_array_equal(model.predict(mixed), labels)
    np.testing.assert_allclose(model.predict_proba(known), on_known)
    np.testing.assert_allclose(model.predict_proba(mixed).sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("rows", "familiarity"),
    [(MIN_MIXTURE_ROWS - 1, 0.2), (5 * MIN_MIXTURE_ROWS, MIXTURE_FAMILIARITY)],
    ids=["too few rows", "rows that know more than half"],
)
def test_without_enough_half_known_rows_s_is_one(model, rows, familiarity):
    model.mixture_temperature_ = 0.3
    assert model.calibrate_mixture(*_held_out(rows, familiarity, right=True)).mixture_temperature_ == 1.0


def test_s_survives_saving_and_models_saved_before_it_score_the_plain_mixture(model):
    model.calibrate_mixture(*_held_out(2 * MIN_MIXTURE_ROWS, 0.2, right=True))
    arrays, params = model.to_state()
    assert LevelModel.from_state(arrays, params).mixture_temperature_ == model.mixture_temperature_
    before = LevelModel.from_state(arrays, {k: v for k, v in params.items() if k != "mixture_temperature_"})
    X = _features(np.array([0, 1, 0]), [0.0, 0.4, 1.0])
    f = X.familiarity[:, None].astype(np.float64)
    plain = f * np.exp(before.decision_function(X) / before.temperature_)
    plain = plain / np.exp(before.decision_function(X) / before.temperature_).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(before.predict_proba(X), plain + (1 - f) * before.prior_)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="mixture temperature"):
            LevelModel.from_state(arrays, {**params, "mixture_temperature_": bad})
    state = dict(model.__dict__)
    del state["mixture_temperature_"]  # a pickle of a release before S
    old = LevelModel.__new__(LevelModel)
    old.__dict__.update(state)
    assert pickle.loads(pickle.dumps(old)).mixture_temperature_ == 1.0


def _stream(n: int):
    """INFO and ERROR lines of two templates; from 60 % on, every other line is INFO in words of its own."""
    rng = np.random.default_rng(4)
    messages, levels = [], []
    for i in range(n):
        if i >= 0.6 * n and i % 2:
            own = "".join(chr(ord("a") + int(d)) for d in str(i))  # digits would be masked, letters are words
            messages.append(f"{own}q started {own}z")
            levels.append("INFO")
        elif rng.random() < 0.25:
            messages.append("disk failure on volume detected")
            levels.append("ERROR")
        else:
            messages.append("request served to client")
            levels.append("INFO")
    return messages, levels


def test_train_learns_s_on_the_hold_out_and_the_refit_keeps_it(tmp_path):
    messages, levels = _stream(1000)
    holdout = train(messages, levels, refit=False)
    shipped = train(messages, levels)
    assert holdout.level_model.mixture_temperature_ < 1.0  # new words, all INFO: sure of the prior's INFO
    assert shipped.level_model.mixture_temperature_ == holdout.level_model.mixture_temperature_
    assert shipped.metadata["level_model"]["mixture_temperature"] == round(shipped.level_model.mixture_temperature_, 6)
    from streamer.ml.train import save

    save(shipped, tmp_path)
    assert json.loads((tmp_path / "level_model.json").read_text())["params"]["mixture_temperature_"] < 1.0
    assert load_model(tmp_path)[1]["level_model"].mixture_temperature_ == shipped.level_model.mixture_temperature_
