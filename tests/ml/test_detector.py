"""The unsupervised detector (TemplateRarity): level prior, alert-rate cut, learning after training, gating."""

import numpy as np
import pytest

from streamer.config import settings_from_args
from streamer.errors import ConfigError
from streamer.ml.features import LogVectorizer
from streamer.ml.models import MIN_CUT, TemplateRarity, template_keys
from streamer.ml.scorer import FALLBACK_CUT, Scorer
from streamer.ml.train import train

# A small stream: five routine INFO templates, a recurring (known, harmless) ERROR, a WARN now and then.
ROUTINE = [
    "user {i} logged in from 10.0.0.{i}",
    "GET /api/items/{i} 200 in {i} ms",
    "cache refreshed {i} keys",
    "heartbeat from worker {i} ok",
    "scheduled job {i} finished",
]


def _stream(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    msgs, levels = [], []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            msgs.append(f"connection to replica {i % 7} reset, retrying"), levels.append("ERROR")
        elif r < 0.08:
            msgs.append(f"slow query took {i} ms"), levels.append("WARN")
        else:
            msgs.append(ROUTINE[i % len(ROUTINE)].format(i=i)), levels.append("INFO")
    return msgs, levels


@pytest.fixture(scope="module")
def unsupervised():
    msgs, levels = _stream()
    return train(msgs, levels, None, alert_rate=0.01)


def _scorer(model, **kw):
    return Scorer(
        model.vectorizer,
        model.level_model,
        model.anomaly_model,
        {"model_version": "t", "anomaly_threshold": model.anomaly_threshold},
        **kw,
    )


def _fresh(model):
    """A private copy of the detector (scoring with learn=True changes its counts)."""
    arrays, params = model.anomaly_model.to_state()
    model.anomaly_model = TemplateRarity.from_state(arrays, params)
    return model


def test_training_without_labels_builds_the_detector_and_says_how_it_cuts(unsupervised):
    assert isinstance(unsupervised.anomaly_model, TemplateRarity)
    meta = unsupervised.metadata["anomaly_model"]
    assert meta["supervised"] is False and meta["alert_rate"] == 0.01 and "quantile" in meta["cut"]
    assert unsupervised.anomaly_threshold == unsupervised.anomaly_model.threshold_ >= MIN_CUT
    msgs, levels = _stream(600, seed=1)
    labelled = train(msgs, levels, [m.startswith("connection") for m in msgs])
    assert labelled.metadata["anomaly_model"]["supervised"] is True  # labels: the supervised detector stays


def test_the_cut_is_the_training_score_quantile_of_the_alert_rate():
    # 1,000 distinct ERROR templates seen once, then 9,000 rows of one INFO template: leave-one-out scores
    # are 0.9 for the singletons and small for the rest, so any rate up to 10 % cuts at 0.9.
    vec_msgs = [
        f"failure kind{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)} seen" for i in range(1000)
    ] + ["all good here"] * 9000
    levels = ["ERROR"] * 1000 + ["INFO"] * 9000
    vec = LogVectorizer(min_df=1).fit(vec_msgs)
    feats = vec.transform(vec_msgs)
    det = TemplateRarity(alert_rate=0.05).fit(feats, levels=levels)
    assert det.threshold_ == pytest.approx(0.9, abs=1e-6)
    # scoring counts what was seen: the training singletons now have c = 1 and fall under the cut;
    # a new failure template alerts, the routine line never does
    assert not det.predict(feats, levels=levels).any()
    later = vec.transform(["failure kindqqq seen", "all good here"])
    assert det.predict(later, levels=["ERROR", "INFO"]).tolist() == [True, False]
    # a rate above the singletons' share reaches into the routine rows; below MIN_CUT it is clamped
    assert det.threshold_for(0.2) == MIN_CUT
    rates = [0.001, 0.01, 0.05, 0.1, 0.3]
    cuts = [det.threshold_for(r) for r in rates]
    assert cuts == sorted(cuts, reverse=True)  # more alerts wanted, lower cut
    with pytest.raises(ValueError):
        det.threshold_for(0.0)


def test_alert_rate_setting_and_scorer_override(unsupervised, monkeypatch):
    monkeypatch.setenv("STREAMER_ANOMALY_ALERT_RATE", "0.05")
    assert settings_from_args(None).anomaly_alert_rate == 0.05
    monkeypatch.setenv("STREAMER_ANOMALY_ALERT_RATE", "1.5")
    with pytest.raises(ConfigError, match="alert rate"):
        settings_from_args(None)
    det = unsupervised.anomaly_model
    assert _scorer(unsupervised, alert_rate=0.3).anomaly_threshold == det.threshold_for(0.3)
    # an explicit threshold wins over the rate
    assert _scorer(unsupervised, alert_rate=0.3, anomaly_threshold=0.77).anomaly_threshold == 0.77


def test_the_level_is_a_strong_prior(unsupervised):
    scorer = _scorer(_fresh(unsupervised))
    novel = "kernel: watchdog detected hard lockup on cpu 3"
    cols = scorer.score(
        [novel, novel, "all workers routinely nominal", "cache refreshed 5 keys"],
        ["FATAL", "INFO", "INFO", "ERROR"],
        learn=False,
    )
    assert cols.is_anomaly.tolist() == [True, False, False, False]
    assert cols.anomaly_score[0] == pytest.approx(1.0) and cols.anomaly_score[1] == pytest.approx(0.05)
    assert cols.anomaly_score[3] < cols.anomaly_score[1]  # routine text stays routine, whatever its level
    assert cols.severity[:2] == ["critical", "low"]
    # a recurring error the stream already knows is not paged
    assert not scorer.score(["connection to replica 3 reset, retrying"], ["ERROR"]).is_anomaly[0]


def test_statistics_keep_learning_after_training(unsupervised):
    model = _fresh(unsupervised)
    scorer = _scorer(model)
    burst = ["payment provider rejected the batch: signature expired"] * 5
    before = scorer.score(burst[:1], ["ERROR"], learn=False)
    assert before.is_anomaly[0]
    again = scorer.score(burst[:1], ["ERROR"], learn=False)
    assert again.anomaly_score[0] == before.anomaly_score[0]  # learn=False changes nothing
    seen = model.anomaly_model.seen_
    for _ in range(12):
        scorer.score(burst, ["ERROR"] * 5)
    assert model.anomaly_model.seen_ == seen + 60
    after = scorer.score(burst[:1], ["ERROR"], learn=False)
    assert after.anomaly_score[0] < before.anomaly_score[0] and not after.is_anomaly[0]
    # what it learnt survives to_state/from_state (the artifact format)
    arrays, params = model.anomaly_model.to_state()
    assert set(arrays) == {"keys", "counts", "feature_counts", "train_quantiles"}
    assert arrays["keys"].dtype == np.uint64
    back = TemplateRarity.from_state(arrays, params)
    feats = model.vectorizer.transform(burst[:1])
    assert (
        back.score_samples(feats, levels=["ERROR"])[0] == model.anomaly_model.score_samples(feats, levels=["ERROR"])[0]
    )
    assert back.threshold_ == model.anomaly_model.threshold_


def test_templates_are_counted_per_service(unsupervised):
    model = _fresh(unsupervised)
    feats = model.vectorizer.transform(["disk quota exceeded for tenant"] * 2)
    a, b = template_keys(feats.X, ["billing", "search"])
    assert a != b and template_keys(feats.X, [None, ""])[0] == template_keys(feats.X)[0]
    for _ in range(5):
        assert model.anomaly_model.partial_fit(feats, services=["billing", "billing"]) is model.anomaly_model
    s = model.anomaly_model.score_samples(feats, levels=["ERROR", "ERROR"], services=["billing", "search"])
    assert s[0] < s[1]  # frequent in billing, still new in search


def test_gating_applies_to_the_supervised_detector_only(unsupervised, small_model_dir):
    gibberish = ["zqxv plorb wembly frandle quorst glimbat", "xyzzy frobnicate snarf blarg"]
    supervised = Scorer.load(small_model_dir, anomaly_threshold=0.0)  # only the gate can stop a flag
    assert not supervised.score(gibberish, [None, "INFO"]).is_anomaly.any()
    # gated text falls back to its declared level x novelty x burst in this stream (streamer.ml.gate): a
    # lone new FATAL does not alert, a burst of it does, the same one recurring stops alerting
    assert not supervised.score(gibberish[:1], ["FATAL"]).is_anomaly[0]
    fatal = supervised.score(gibberish[:1] * 12, ["FATAL"] * 12)
    assert fatal.is_anomaly.all() and fatal.anomaly_score.min() >= FALLBACK_CUT
    for _ in range(30):
        supervised.score(gibberish[:1] * 12, ["FATAL"] * 12)
    assert not supervised.score(gibberish[:1] * 12, ["FATAL"] * 12).is_anomaly.any()
    # unsupervised: novelty is the signal; unfamiliar FATAL text alerts, unfamiliar INFO text does not
    cols = _scorer(_fresh(unsupervised)).score(gibberish, ["FATAL", "INFO"], learn=False)
    assert cols.familiarity.max() < 0.6 and cols.is_anomaly.tolist() == [True, False]


def test_saved_and_loaded_it_still_learns(unsupervised, tmp_path):
    from streamer.ml.train import save

    save(unsupervised, tmp_path)
    scorer = Scorer.load(tmp_path)
    assert scorer.learns and isinstance(scorer._anomaly_model, TemplateRarity)
    assert scorer.anomaly_threshold == unsupervised.anomaly_threshold
    assert Scorer.load(tmp_path, alert_rate=0.3).anomaly_threshold == unsupervised.anomaly_model.threshold_for(0.3)
    line = ["fan 2 failed on chassis, temperature rising"]
    first = scorer.score(line, ["FATAL"])
    assert first.is_anomaly[0] and first.anomaly_score[0] == pytest.approx(1.0)
    assert scorer.score(line, ["FATAL"]).anomaly_score[0] < first.anomaly_score[0]  # counted once now


@pytest.mark.integration
def test_train_from_postgres_without_labels_builds_it(migrated_db_url, monkeypatch):
    from datetime import timedelta

    from streamer.ml.history import train_from_postgres
    from tests.ml.test_history import T0, store

    msgs, levels = _stream(1200, seed=4)
    store(
        migrated_db_url,
        [
            {"message": m, "level": lv, "time": T0 + timedelta(seconds=i)}
            for i, (m, lv) in enumerate(zip(msgs, levels, strict=True))
        ],
    )
    model, hist = train_from_postgres(migrated_db_url, alert_rate=0.02)
    assert not hist.supervised_anomaly and hist.marked == 0
    assert isinstance(model.anomaly_model, TemplateRarity)
    assert model.metadata["anomaly_model"]["alert_rate"] == 0.02
    assert model.anomaly_threshold == model.anomaly_model.threshold_for(0.02)
    # the history taught it the recurring error: it is not paged, a new one is
    scorer = _scorer(model)
    cols = scorer.score(
        ["connection to replica 2 reset, retrying", "raid array degraded: disk 4 missing"],
        ["ERROR", "ERROR"],
        learn=False,
    )
    assert cols.is_anomaly.tolist() == [False, True]


def test_a_known_message_is_as_rare_as_its_rarest_word_or_pair():
    # "alpha"/"beta" and "one"/"two" combine freely; "zeta" appears once in training
    msgs = [f"{a} worker {b} failed" for a in ("alpha", "beta") for b in ("one", "two")] * 50 + [
        "zeta worker one failed"
    ]
    vec = LogVectorizer(min_df=1).fit(msgs)
    det = TemplateRarity().fit(vec.transform(msgs), levels=["ERROR"] * len(msgs))
    later = vec.transform(["beta worker one failed", "zeta worker two failed"])
    assert later.familiarity.tolist() == [1.0, 1.0]  # every word and pair known, the 2nd line never seen whole
    s = det.score_samples(later, levels=["ERROR", "ERROR"])
    assert s[0] < 0.1  # its rarest feature was seen 100 times
    assert s[1] == pytest.approx(0.9 * 5 / (5 + 1))  # "zeta" (and "zeta worker") once
