"""Familiarity gate: with the shipped model, text the vocabulary does not know is never flagged anomalous."""

from pathlib import Path

from streamer.ml.scorer import Scorer

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_unfamiliar_text_is_not_anomalous():
    scorer = Scorer.load(MODELS, anomaly_threshold=0.0)  # threshold 0: only the gate can stop a flag
    cols = scorer.score(["zqxv plorb wembly frandle quorst glimbat", "xyzzy frobnicate snarf blarg"])
    assert not cols.is_anomaly.any()
