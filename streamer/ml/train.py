"""Training: one vectorizer, then a level classifier and an anomaly detector on its one sparse matrix.

    model = train(messages, levels, is_anomaly=None, timestamps=None, source="...", seed=0)
    save(model, "models")          # -> streamer.ml.artifacts

Evaluation is chronological: rows are put in time order (timestamps when given, else input order); the
models are fitted on the first 80 % (temperature and anomaly threshold calibrated on the last eighth of that
part) and scored on the last 20 %; the level model's mixture temperature is then learnt on those last 20 %
(it moves no label, so the level metrics stay those of unseen rows). The shipped model is then refitted on
100 % of the rows, keeping the hold-out run's temperatures and threshold; metadata["evaluation"] says so.

Levels are mapped with streamer.levels.normalise; rows whose level is missing or unknown still feed the
vectorizer and the anomaly detector but not the level classifier. Without anomaly labels the detector is
TemplateRarity (level prior x template rarity, cut at the training-score quantile of 1 - alert_rate), the
hold-out is replayed through it batch by batch as the stream would be, and the anomaly metrics are null.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamer.errors import StreamerError
from streamer.levels import LEVELS, normalise
from streamer.ml.features import LogVectorizer
from streamer.ml.models import DEFAULT_ALERT_RATE, ConstantLevel, LevelModel, SupervisedAnomaly, TemplateRarity

HOLDOUT = 0.2
CALIBRATION = 0.125  # share of the training part, taken from its end
STREAM_BATCH = 500  # hold-out rows per batch when replaying them through a learning detector
DEFAULT_CORPUS_SIZE = 60000
SMALL_DATA = 20000  # below this many rows, keep words seen once  # built-in corpus rows for the default model


@dataclass
class TrainedModel:
    vectorizer: LogVectorizer
    level_model: LevelModel | ConstantLevel
    anomaly_model: SupervisedAnomaly | TemplateRarity
    anomaly_threshold: float
    metadata: dict = field(default_factory=dict)


def _as_levels(levels: Sequence | None, n: int) -> np.ndarray:
    if levels is None:
        return np.array([None] * n, dtype=object)
    out = np.array([v if v in LEVELS else normalise(v) for v in levels], dtype=object)
    if len(out) != n:
        raise StreamerError(f"{len(out)} levels for {n} messages")
    return out


def _as_bools(values: Sequence | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    out = np.array([_to_bool(v) for v in values], dtype=object)
    if len(out) != n:
        raise StreamerError(f"{len(out)} anomaly labels for {n} messages")
    if any(v is None for v in out):
        return None  # partial labels: treat the data as unlabelled rather than guess
    return out.astype(bool)


def _to_bool(v) -> bool | None:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("1", "true", "yes", "y", "t", "anomaly"):
            return True
        if s in ("0", "false", "no", "n", "f", "normal", "-", ""):
            return False
    return None


def _fit(vec_msgs, levels, anomalies, seed, holdout=None, alert_rate=DEFAULT_ALERT_RATE):
    """Fit all three parts on the given rows; calibrate on their tail, or, given the hold-out run's model
    (a refit), keep its calibration."""
    n = len(vec_msgs)
    cut = n if holdout is not None else round(n * (1 - CALIBRATION))
    # singletons matter on small data (one example of a rare level); on large data they are mostly noise.
    # Calibrating, the vocabulary comes from the fitted rows only: the calibration slice then has the
    # unfamiliar words new data has, and the temperature and cut are fitted to what scoring will see.
    vec = LogVectorizer(min_df=1 if n < SMALL_DATA else 2).fit(vec_msgs[:cut])
    feats = vec.transform(vec_msgs)
    fit_rows, cal_rows = np.arange(cut), np.arange(cut, n)

    lab = np.array([lv is not None for lv in levels])
    distinct = sorted(set(levels[lab]), key=LEVELS.index)
    if len(distinct) >= 2:
        fr, cr = fit_rows[lab[fit_rows]], cal_rows[lab[cal_rows]]
        y = levels.astype(str)
        if len(set(y[fr])) < 2:  # calibration slice took all of a class; fit on everything labelled
            fr, cr = np.flatnonzero(lab), np.array([], dtype=np.int64)
        level_model = LevelModel(seed=seed).fit(
            _rows(feats, fr),
            y[fr],
            calibration=(_rows(feats, cr), y[cr]),
            calibrated_like=None if holdout is None else holdout.level_model,
        )
    else:
        level_model = ConstantLevel(distinct[0] if distinct else "INFO").fit()

    if anomalies is not None and anomalies.any() and not anomalies.all():
        fr, cr = fit_rows, cal_rows
        if anomalies[fr].all() or not anomalies[fr].any():
            fr, cr = np.arange(n), np.array([], dtype=np.int64)
        anomaly_model = SupervisedAnomaly(seed=seed).fit(
            _rows(feats, fr),
            anomalies[fr],
            calibration=(_rows(feats, cr), anomalies[cr]),
            calibrated_like=None if holdout is None else holdout.anomaly_model,
        )
    else:
        # label-free, so the cut is recomputed on whatever rows are fitted (refit included)
        anomaly_model = TemplateRarity(alert_rate=alert_rate).fit(
            feats, levels=effective_levels(levels, level_model, feats), messages=vec_msgs
        )
    return vec, level_model, anomaly_model, anomaly_model.threshold_


def effective_levels(levels, level_model, feats) -> list:
    """The declared level where there is one, else the level model's prediction (what severity uses)."""
    if all(lv is not None for lv in levels):
        return list(levels)
    predicted = level_model.predict(feats).tolist()
    return [p if lv is None else lv for lv, p in zip(levels, predicted)]


def score_stream(anomaly_model, feats, levels, messages, batch: int = STREAM_BATCH) -> np.ndarray:
    """Scores in order, batch by batch, a learning detector counting each batch after scoring it — what
    `streamer run` does. The detector's counts change; pass a copy to keep the original."""
    if not hasattr(anomaly_model, "partial_fit"):
        return anomaly_model.score_samples(feats)
    out = []
    for start in range(0, feats.X.shape[0], batch):
        part = _rows(feats, np.arange(start, min(start + batch, feats.X.shape[0])))
        out.append(
            anomaly_model.score_samples(
                part, levels=levels[start : start + batch], messages=messages[start : start + batch], learn=True
            )
        )
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _rows(feats, rows):
    from streamer.ml.features import Features

    return Features(feats.X[rows], feats.familiarity[rows])


def evaluate_predictions(true_levels, pred_levels, true_anomaly, anomaly_score, threshold) -> dict:
    """Level accuracy/macro-F1/per-class (over labels present in truth) and anomaly P/R/F1/ROC-AUC."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

    out: dict = {"level": None, "anomaly": None}
    true_levels = np.asarray(true_levels, dtype=object)
    lab = np.array([v is not None for v in true_levels], dtype=bool)
    if lab.any():
        yt = true_levels[lab].astype(str)
        yp = np.asarray(pred_levels, dtype=object)[lab].astype(str)
        present = [lv for lv in LEVELS if lv in set(yt)]
        p, r, f, s = precision_recall_fscore_support(yt, yp, labels=present, zero_division=0)
        out["level"] = {
            "samples": int(lab.sum()),
            "accuracy": round(float(np.mean(yt == yp)), 4),
            "macro_f1": round(float(f1_score(yt, yp, labels=present, average="macro", zero_division=0)), 4),
            "per_class": {
                lv: {
                    "precision": round(float(p[i]), 4),
                    "recall": round(float(r[i]), 4),
                    "f1": round(float(f[i]), 4),
                    "support": int(s[i]),
                }
                for i, lv in enumerate(present)
            },
        }
    if true_anomaly is not None:
        truth = np.asarray(true_anomaly, dtype=bool)
        score = np.asarray(anomaly_score, dtype=np.float64)
        pred = score >= threshold
        tp = int(np.sum(pred & truth))
        prec = tp / max(int(pred.sum()), 1)
        rec = tp / max(int(truth.sum()), 1)
        out["anomaly"] = {
            "samples": len(truth),
            "positives": int(truth.sum()),
            "precision": round(prec, 4),
            "recall": round(rec, 4),
            "f1": round(2 * prec * rec / (prec + rec), 4) if prec + rec else 0.0,
            "roc_auc": round(float(roc_auc_score(truth, score)), 4) if 0 < truth.sum() < len(truth) else None,
            "threshold": threshold,
        }
    return out


def train(
    messages: Sequence[str],
    levels: Sequence | None = None,
    is_anomaly: Sequence | None = None,
    timestamps: Sequence | None = None,
    source: str = "unspecified",
    seed: int = 0,
    refit: bool = True,
    alert_rate: float = DEFAULT_ALERT_RATE,
) -> TrainedModel:
    """Fit the vectorizer and both models; evaluate on a chronological 20 % hold-out (see module doc).

    alert_rate: the unsupervised detector's target share of alerts (its cut is that quantile of the training
    rows' scores); unused when the detector is supervised."""
    if not 0.0 < alert_rate < 1.0:
        raise StreamerError(f"alert rate must be within (0, 1), got {alert_rate}")

    messages = ["" if m is None else str(m) for m in messages]
    n = len(messages)
    if n < 10:
        raise StreamerError(f"need at least 10 messages to train, got {n}")
    lv = _as_levels(levels, n)
    anomalies = _as_bools(is_anomaly, n)
    if timestamps is not None:
        order = np.argsort(np.array([str(t) if t is not None else "" for t in timestamps]), kind="stable")
        messages = [messages[i] for i in order]
        lv = lv[order]
        anomalies = anomalies[order] if anomalies is not None else None

    split = round(n * (1 - HOLDOUT))
    vec, level_model, anomaly_model, threshold = _fit(
        messages[:split], lv[:split], anomalies[:split] if anomalies is not None else None, seed, alert_rate=alert_rate
    )
    test_msgs = messages[split:]
    feats = vec.transform(test_msgs)
    pred_levels = level_model.predict(feats)
    if isinstance(level_model, LevelModel):  # the newest rows it never saw: how sure half-known text may be
        level_model.calibrate_mixture(feats, lv[split:])
    detector = anomaly_model if refit else copy.deepcopy(anomaly_model)  # the hold-out replay teaches it
    scores = score_stream(detector, feats, effective_levels(lv[split:], level_model, feats), test_msgs)
    metrics = evaluate_predictions(
        lv[split:],
        pred_levels,
        anomalies[split:] if anomalies is not None and anomaly_model.supervised else None,
        scores,
        threshold,
    )

    if refit:
        holdout = TrainedModel(vec, level_model, anomaly_model, threshold)
        vec, level_model, anomaly_model, threshold = _fit(
            messages, lv, anomalies, seed, holdout=holdout, alert_rate=alert_rate
        )

    counts = {lvl: int(np.sum(lv == lvl)) for lvl in LEVELS}
    metadata = {
        "num_training_samples": n,
        "training_data": {
            "source": source,
            "rows": n,
            "level_counts": counts,
            "rows_without_level": int(sum(v is None for v in lv)),
            "anomaly_labels": anomalies is not None,
            "anomalies": int(anomalies.sum()) if anomalies is not None else None,
            "order": "timestamps" if timestamps is not None else "input order",
        },
        "evaluation": {
            "method": "chronological hold-out: fitted on the first 80% of rows (temperature and anomaly "
            "threshold calibrated on the last 12.5% of that part), scored on the last 20% (the level model's "
            "mixture temperature, which changes no label, then learnt on them)",
            "train_rows": split,
            "test_rows": n - split,
            "shipped_model": (
                "refitted on 100% of the rows with the hold-out run's temperatures and "
                + ("threshold" if anomaly_model.supervised else "the cut recomputed at the alert rate")
                if refit
                else "the hold-out model itself (fitted on the first 80%)"
            ),
        },
        "metrics": metrics,
        "levels": [str(c) for c in level_model.classes_],
        "anomaly_threshold": threshold,
        "feature_count": vec.n_features,
        "vectorizer": {
            "kind": "masked word unigrams+bigrams, sublinear TF-IDF, L2",
            "min_df": vec.min_df,
            "max_features": vec.max_features,
        },
        "level_model": {
            "kind": level_model.kind,
            "temperature": round(float(level_model.temperature_), 6),
            "mixture_temperature": round(float(getattr(level_model, "mixture_temperature_", 1.0)), 6),
            "confidence": "the predicted level's probability, mixed with the unfamiliar-text distribution as familiarity drops",
        },
        "anomaly_model": {
            "kind": anomaly_model.kind,
            "supervised": anomaly_model.supervised,
            "temperature": round(float(anomaly_model.temperature_), 6),
            **(
                {}
                if anomaly_model.supervised
                else {"alert_rate": alert_rate, "cut": "training-score quantile at 1 - alert_rate"}
            ),
        },
        "seed": seed,
    }
    return TrainedModel(vec, level_model, anomaly_model, threshold, metadata)


def train_corpus(n: int = DEFAULT_CORPUS_SIZE, seed: int = 0) -> TrainedModel:
    """The default model: the built-in corpus (streamer.ml.corpus), n events from `seed`."""
    from streamer.ml.corpus import generate

    events = generate(n, seed)
    return train(
        [e["message"] for e in events],
        [e["labels"]["level"] for e in events],
        [e["labels"]["is_anomaly"] for e in events],
        [e["@timestamp"] for e in events],
        source=f"built-in corpus (streamer.ml.corpus.generate(n={n}, seed={seed}))",
        seed=seed,
    )


def save(model: TrainedModel, out_dir) -> dict:
    """Write the artifacts and metadata.json; returns the metadata written."""
    from streamer.ml.artifacts import save_model

    return save_model(model, out_dir)
