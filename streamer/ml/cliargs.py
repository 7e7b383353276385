"""Flags shared by the ML commands (train, score, evaluate, status)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser, threshold: bool = True) -> None:
    from streamer.config import add_settings

    add_settings(parser.add_argument_group("model"), "models_dir", *(["anomaly_threshold"] if threshold else []))


def load_scorer(args):
    """Settings (flags > env > defaults) -> a verified Scorer. Raises ConfigError / ModelError."""
    from streamer.config import settings_from_args
    from streamer.ml.scorer import Scorer

    settings = settings_from_args(args)
    return Scorer.load(settings.models_dir, settings.anomaly_threshold), settings
