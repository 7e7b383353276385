"""Flags shared by the ML commands (train, score, evaluate, status)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser, threshold: bool = True) -> None:
    g = parser.add_argument_group("model")
    g.add_argument(
        "--models", dest="models_dir", metavar="DIR", help="model directory (STREAMER_MODELS_DIR, default models)"
    )
    if threshold:
        g.add_argument(
            "--anomaly-threshold",
            dest="anomaly_threshold",
            type=float,
            metavar="P",
            help="anomaly score threshold 0..1 (STREAMER_ANOMALY_THRESHOLD, default: the one "
            "calibrated at training time, in metadata.json)",
        )


def load_scorer(args):
    """Settings (flags > env > defaults) -> a verified Scorer. Raises ConfigError / ModelError."""
    from streamer.config import settings_from_args
    from streamer.ml.scorer import Scorer

    settings = settings_from_args(args)
    return Scorer.load(settings.models_dir, settings.anomaly_threshold), settings
