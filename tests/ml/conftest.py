"""Shared fixtures for the ML tests: one small model trained once per session (no services needed)."""

from __future__ import annotations

import shutil

import pytest

from streamer.ml.train import save, train_corpus


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory):
    """A model directory trained on 4,000 corpus events (seconds, not minutes). Treat as read-only."""
    d = tmp_path_factory.mktemp("small-model")
    save(train_corpus(4000, seed=3), d)
    return d


@pytest.fixture
def model_copy(small_model_dir, tmp_path):
    """A private copy of the small model directory that a test may damage."""
    d = tmp_path / "models"
    shutil.copytree(small_model_dir, d)
    return d
