"""Batch scoring: the API the pipeline codes against.

    scorer = Scorer.load("models")                       # raises ModelError
    cols = scorer.score(messages, declared_levels)       # ScoreColumns, len == len(messages)

score() runs ONE vectorizer transform and ONE batch call per model for the whole batch. The only state a
score() changes is an unsupervised detector's template counts (it learns from every scored batch, under a
lock), so one thread may score while others do I/O (or score too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamer.errors import ModelError
from streamer.levels import LEVELS, normalise
from streamer.ml.features import Features
from streamer.ml.gate import FALLBACK_CUT, UnfamiliarFallback
from streamer.ml.models import DEFAULT_MIN_FAMILIARITY
from streamer.ml.severity import severity

__all__ = ["FALLBACK_CUT", "MIN_ANOMALY_FAMILIARITY", "ScoreColumns", "Scorer"]

# The familiarity gate: a SUPERVISED anomaly score counts only on text at least as familiar as the
# detector's own calibration rows (SupervisedAnomaly.min_familiarity_, learnt at training); below it
# streamer.ml.gate.UnfamiliarFallback judges by the declared level x novelty x burst of the template.
# Artifacts saved before the gate was learnt keep this fixed one. The unsupervised detector is not gated:
# novelty is its signal, and its level prior keeps unfamiliar INFO/DEBUG text below its cut.
MIN_ANOMALY_FAMILIARITY = DEFAULT_MIN_FAMILIARITY


@dataclass
class ScoreColumns:
    """Column-oriented predictions; every column has one entry per input message."""

    predicted_level: list[str]  # one of streamer.levels.LEVELS
    level_confidence: np.ndarray  # float32, 0..1
    is_anomaly: np.ndarray  # bool
    anomaly_score: np.ndarray  # float32, 0..1
    severity: list[str]  # critical/high/medium/low
    model_version: str
    familiarity: np.ndarray  # float32, 0..1: share of the message's words/pairs the model knows

    def __len__(self) -> int:
        return len(self.predicted_level)

    def row(self, i: int) -> dict:
        """Row i as plain JSON-able values (for printing and tests)."""
        return {
            "predicted_level": self.predicted_level[i],
            "level_confidence": round(float(self.level_confidence[i]), 4),
            "is_anomaly": bool(self.is_anomaly[i]),
            "anomaly_score": round(float(self.anomaly_score[i]), 4),
            "severity": self.severity[i],
            "model_version": self.model_version,
            "familiarity": round(float(self.familiarity[i]), 4),
        }


class Scorer:
    model_version: str
    metadata: dict
    anomaly_threshold: float

    def __init__(
        self,
        vectorizer,
        level_model,
        anomaly_model,
        metadata: dict,
        anomaly_threshold: float | None = None,
        alert_rate: float | None = None,
    ):
        self._vectorizer = vectorizer
        self._level_model = level_model
        self._anomaly_model = anomaly_model
        self.metadata = metadata
        self.model_version = str(metadata["model_version"])
        threshold = metadata["anomaly_threshold"] if anomaly_threshold is None else anomaly_threshold
        self.learns = callable(getattr(anomaly_model, "partial_fit", None))
        self._fallback = None if self.learns else UnfamiliarFallback()
        # below this familiarity the supervised score is not trusted (see MIN_ANOMALY_FAMILIARITY)
        self.min_familiarity = float(getattr(anomaly_model, "min_familiarity_", MIN_ANOMALY_FAMILIARITY))
        if alert_rate is not None and anomaly_threshold is None and self.learns:
            threshold = anomaly_model.threshold_for(alert_rate)  # ValueError outside (0, 1)
        if not 0.0 <= float(threshold) <= 1.0:
            raise ModelError(f"anomaly threshold must be within 0..1, got {threshold}")
        self.anomaly_threshold = float(threshold)

    @classmethod
    def load(
        cls, models_dir: str | Path, anomaly_threshold: float | None = None, alert_rate: float | None = None
    ) -> Scorer:
        """Verify (digest, sha256s, sizes; no pickles) and load a model directory; raises ModelError.

        anomaly_threshold overrides the one in metadata.json (the value calibrated at training time);
        alert_rate, for an unsupervised detector, moves its cut to that quantile of its training scores.
        """
        from streamer.ml.artifacts import load_model

        meta, objs = load_model(models_dir)
        return cls(objs["vectorizer"], objs["level_model"], objs["anomaly_model"], meta, anomaly_threshold, alert_rate)

    def score(
        self,
        messages: Sequence[str],
        declared_levels: Sequence[str | None] | None = None,
        services: Sequence[str | None] | None = None,
        learn: bool = True,
    ) -> ScoreColumns:
        """Score a batch.

        predicted_level / level_confidence come from the level model. Its temperature-calibrated
        probabilities are mixed with the training class prior as the message's familiarity (share of its
        words and word pairs the vocabulary knows, its own column) drops; the confidence is that mixed
        probability. anomaly_score is P(anomaly) from the supervised detector — is_anomaly is then
        anomaly_score >= anomaly_threshold where familiarity >= self.min_familiarity (the detector's learnt
        gate); below it the score is the fallback's (declared level x novelty x burst of the template in
        this stream, flagged at FALLBACK_CUT, so unfamiliar text without a declared ERROR/FATAL is never
        flagged; streamer.ml.gate) — or, for a model trained without anomaly labels
        (metadata["anomaly_model"]), the unsupervised level prior x rarity of the event's template for its
        service (services[i], optional), flagged at anomaly_threshold (the alert-rate cut). With learn, the detector (or the fallback) then counts the batch's templates.

        severity uses the event's DECLARED level when it has one (declared_levels[i] not None; the caller
        normalises it to LEVELS, anything else is normalised here or, if unknown, ignored), else the
        PREDICTED level: ERROR/FATAL+anomaly -> critical, ERROR/FATAL -> high, WARN+anomaly -> high,
        WARN -> medium, other+anomaly -> medium, else low.
        """
        msgs = [m if isinstance(m, str) else ("" if m is None else str(m)) for m in messages]
        n = len(msgs)
        if declared_levels is not None and len(declared_levels) != n:
            raise ValueError(f"{len(declared_levels)} declared levels for {n} messages")
        if n == 0:
            return ScoreColumns(
                [],
                np.zeros(0, np.float32),
                np.zeros(0, bool),
                np.zeros(0, np.float32),
                [],
                self.model_version,
                np.zeros(0, np.float32),
            )
        if services is not None and len(services) != n:
            raise ValueError(f"{len(services)} services for {n} messages")
        features = self._vectorizer.transform(msgs)
        proba = self._level_model.predict_proba(features)  # once: the label and its confidence come from it
        best = proba.argmax(axis=1)
        predicted = self._level_model.classes_[best].tolist()
        confidence = proba[np.arange(n), best]
        if declared_levels is None:
            effective = predicted
        else:
            effective = [
                p if d is None else (d if d in LEVELS else (normalise(d) or p))
                for d, p in zip(declared_levels, predicted)
            ]
        if self.learns:
            scores = self._anomaly_model.score_samples(
                features, levels=effective, services=services, messages=msgs, learn=learn
            )
            is_anomaly = scores >= self.anomaly_threshold
        else:
            scores = self._anomaly_model.score_samples(features)
            is_anomaly = scores >= self.anomaly_threshold
            # Gate by familiarity: the detector never saw text like an unfamiliar message, so its score there
            # says nothing; the fallback's declared level x novelty x burst decides instead (streamer.ml.gate).
            gated = np.flatnonzero(features.familiarity < self.min_familiarity)
            if len(gated) and self._fallback is not None:  # always set when the detector does not learn
                part = Features(features.X[gated], features.familiarity[gated])
                part_msgs = [msgs[i] for i in gated.tolist()]
                part_svc = None if services is None else [services[i] for i in gated.tolist()]
                declared = (
                    None
                    if declared_levels is None
                    else [
                        None if d is None else (d if d in LEVELS else normalise(d))
                        for d in (declared_levels[i] for i in gated.tolist())
                    ]
                )
                scores = scores.copy()
                scores[gated] = self._fallback.score(part, declared, part_svc, part_msgs, learn)
                is_anomaly[gated] = scores[gated] >= FALLBACK_CUT
        return ScoreColumns(
            predicted,
            np.clip(confidence, 0, 1).astype(np.float32),
            is_anomaly,
            np.clip(scores, 0, 1).astype(np.float32),
            severity(effective, is_anomaly),
            self.model_version,
            features.familiarity.astype(np.float32),
        )
