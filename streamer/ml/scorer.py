"""Batch scoring: the API the pipeline codes against.

    scorer = Scorer.load("models")                       # raises ModelError
    cols = scorer.score(messages, declared_levels)       # ScoreColumns, len == len(messages)

score() runs ONE vectorizer transform and ONE batch call per model for the whole batch. A Scorer holds no
mutable state while scoring, so one thread may score while others do I/O (or score too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from streamer.errors import ModelError
from streamer.levels import LEVELS, normalise
from streamer.ml.severity import severity

# Below this share of known words/pairs a message is unfamiliar and its anomaly score is not trusted.
MIN_ANOMALY_FAMILIARITY = 0.6


@dataclass
class ScoreColumns:
    """Column-oriented predictions; every column has one entry per input message."""

    predicted_level: list[str]        # one of streamer.levels.LEVELS
    level_confidence: np.ndarray      # float32, 0..1
    is_anomaly: np.ndarray            # bool
    anomaly_score: np.ndarray         # float32, 0..1
    severity: list[str]               # critical/high/medium/low
    model_version: str

    def __len__(self) -> int:
        return len(self.predicted_level)

    def row(self, i: int) -> dict:
        """Row i as plain JSON-able values (for printing and tests)."""
        return {"predicted_level": self.predicted_level[i],
                "level_confidence": round(float(self.level_confidence[i]), 4),
                "is_anomaly": bool(self.is_anomaly[i]),
                "anomaly_score": round(float(self.anomaly_score[i]), 4),
                "severity": self.severity[i], "model_version": self.model_version}


class Scorer:
    model_version: str
    metadata: dict
    anomaly_threshold: float

    def __init__(self, vectorizer, level_model, anomaly_model, metadata: dict,
                 anomaly_threshold: float | None = None):
        self._vectorizer = vectorizer
        self._level_model = level_model
        self._anomaly_model = anomaly_model
        self.metadata = metadata
        self.model_version = str(metadata["model_version"])
        threshold = metadata["anomaly_threshold"] if anomaly_threshold is None else anomaly_threshold
        if not 0.0 <= float(threshold) <= 1.0:
            raise ModelError(f"anomaly threshold must be within 0..1, got {threshold}")
        self.anomaly_threshold = float(threshold)

    @classmethod
    def load(cls, models_dir: str | Path, anomaly_threshold: float | None = None) -> "Scorer":
        """Verify (digest, sha256s, sizes; no pickles) and load a model directory; raises ModelError.

        anomaly_threshold overrides the one in metadata.json (the value calibrated at training time).
        """
        from streamer.ml.artifacts import load_model

        meta, objs = load_model(models_dir)
        return cls(objs["vectorizer"], objs["level_model"], objs["anomaly_model"], meta,
                   anomaly_threshold)

    def score(self, messages: Sequence[str], declared_levels: Sequence[str | None] | None = None
              ) -> ScoreColumns:
        """Score a batch.

        predicted_level / level_confidence come from the level model. Its temperature-calibrated
        probabilities are mixed with the training class prior as the message's familiarity (share of its
        words and word pairs the vocabulary knows) drops, and the confidence is that probability times the
        familiarity, so unfamiliar text gets low confidence. anomaly_score is P(anomaly) from the supervised
        detector, or the template-rarity novelty score when the model was trained without anomaly labels
        (metadata["anomaly_model"]); is_anomaly is anomaly_score >= anomaly_threshold
        and familiarity >= MIN_ANOMALY_FAMILIARITY (unfamiliar text is never flagged).

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
            return ScoreColumns([], np.zeros(0, np.float32), np.zeros(0, bool), np.zeros(0, np.float32), [],
                                self.model_version)
        features = self._vectorizer.transform(msgs)
        predicted, confidence = self._level_model.predict(features)
        scores = self._anomaly_model.score(features)
        # Gate by familiarity: the detector never saw text like an unfamiliar message, so its score there
        # says nothing; such a message is not called anomalous (severity then rests on its level).
        is_anomaly = (scores >= self.anomaly_threshold) & (features.familiarity >= MIN_ANOMALY_FAMILIARITY)
        if declared_levels is None:
            effective = predicted
        else:
            effective = [p if d is None else (d if d in LEVELS else (normalise(d) or p))
                         for d, p in zip(declared_levels, predicted)]
        return ScoreColumns(predicted, np.clip(confidence, 0, 1).astype(np.float32), is_anomaly,
                            np.clip(scores, 0, 1).astype(np.float32), severity(effective, is_anomaly),
                            self.model_version)
