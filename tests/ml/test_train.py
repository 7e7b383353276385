import numpy as np
import pytest

from streamer.errors import StreamerError
from streamer.ml.corpus import generate
from streamer.ml.train import evaluate_predictions, train, train_corpus


@pytest.mark.slow
def test_same_seed_same_metrics_and_models():
    a, b = train_corpus(3000, seed=11), train_corpus(3000, seed=11)
    assert a.metadata["metrics"] == b.metadata["metrics"]
    assert a.vectorizer.vocabulary_ == b.vectorizer.vocabulary_
    np.testing.assert_array_equal(a.level_model.coef_, b.level_model.coef_)
    assert a.anomaly_threshold == b.anomaly_threshold


def test_level_vocabularies_are_mapped_with_normalise():
    events = generate(3000, seed=12)
    spelled = {"DEBUG": "V", "INFO": "notice", "WARN": "WARNING", "ERROR": "SEVERE", "FATAL": "crit"}
    model = train([e["message"] for e in events], [spelled[e["labels"]["level"]] for e in events])
    assert set(model.metadata["levels"]) == {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"}
    assert model.metadata["training_data"]["rows_without_level"] == 0


def test_unknown_levels_are_left_out_of_the_level_model_only():
    events = generate(2000, seed=13)
    levels = [e["labels"]["level"] if i % 4 else "host-17" for i, e in enumerate(events)]
    model = train([e["message"] for e in events], levels)
    assert model.metadata["training_data"]["rows_without_level"] == 500
    assert model.metadata["num_training_samples"] == 2000


def test_without_anomaly_labels_the_detector_is_unsupervised_and_says_so():
    events = generate(2000, seed=14)
    model = train([e["message"] for e in events], [e["labels"]["level"] for e in events])
    assert model.metadata["anomaly_model"]["supervised"] is False
    assert "rarity" in model.metadata["anomaly_model"]["kind"]
    assert model.metadata["metrics"]["anomaly"] is None
    from streamer.ml.features import Features  # noqa: F401  (scores are 0..1 for any input)

    feats = model.vectorizer.transform(["never seen anything like this", events[0]["message"]])
    scores = model.anomaly_model.score_samples(feats)
    assert scores.dtype == np.float32 and scores.min() >= 0 and scores.max() <= 1
    assert scores[0] > scores[1]


def test_single_level_data_gives_a_constant_level_model():
    msgs = [f"request {i} served" for i in range(50)]
    model = train(msgs, ["INFO"] * 50)
    assert model.metadata["levels"] == ["INFO"]


@pytest.mark.slow
def test_chronological_order_uses_timestamps():
    events = generate(2000, seed=15)
    stamps = [f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z" for i in range(len(events))]  # no ties
    rev = list(range(len(events)))[::-1]
    a = train([e["message"] for e in events], [e["labels"]["level"] for e in events], timestamps=stamps)
    b = train(
        [events[i]["message"] for i in rev],
        [events[i]["labels"]["level"] for i in rev],
        timestamps=[stamps[i] for i in rev],
    )
    # the same rows end up in the hold-out (row order inside the fit may move floats a little)
    sa, sb = a.metadata["metrics"]["level"], b.metadata["metrics"]["level"]
    assert {k: v["support"] for k, v in sa["per_class"].items()} == {
        k: v["support"] for k, v in sb["per_class"].items()
    }
    assert sa["accuracy"] == pytest.approx(sb["accuracy"], abs=0.01)
    late = train([e["message"] for e in events], [e["labels"]["level"] for e in events])
    assert late.metadata["training_data"]["order"] == "input order"


def test_too_little_data_is_a_clear_error():
    with pytest.raises(StreamerError, match="at least 10"):
        train(["a", "b"], ["INFO", "WARN"])


def test_macro_f1_is_over_labels_present_in_truth():
    m = evaluate_predictions(["INFO", "INFO", "WARN"], ["INFO", "INFO", "ERROR"], None, [], 0.5)
    assert set(m["level"]["per_class"]) == {"INFO", "WARN"}
    assert m["level"]["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)
