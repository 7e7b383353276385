"""Models that change without a restart: a running consumer asks `ModelWatcher.poll()` between two batches.

Cheap by design: at most one stat of the models directory's metadata.json every `interval` seconds; only a
changed (mtime, size) triggers a full load through the safe loader (streamer.ml.artifacts via Scorer.load,
which verifies the digest and every artifact's sha256 before reading arrays, and never unpickles). A bad or tampered candidate is refused, logged once
per distinct metadata state, and the current scorer keeps running.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from streamer.errors import ModelError
from streamer.ml.artifacts import METADATA
from streamer.ml.scorer import Scorer

log = logging.getLogger(__name__)


def _stamp(models_dir: Path) -> tuple | None:
    """(name, mtime, size) of every file: a half-copied promotion is refused, then retried once it changes."""
    try:
        os.stat(models_dir / METADATA)
        return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in os.scandir(models_dir)))
    except OSError:
        return None


class ModelWatcher:
    def __init__(
        self, models_dir, scorer, interval: float = 5.0, anomaly_threshold: float | None = None, clock=time.monotonic
    ):
        self.models_dir = Path(models_dir)
        self.scorer = scorer
        self.interval = interval
        self.anomaly_threshold = anomaly_threshold
        self._clock = clock
        self._next_check = clock() + interval
        self._stamp = _stamp(self.models_dir)  # the state the running scorer was loaded from
        self._refused: tuple | None = None

    def poll(self):
        """The scorer to use for the next batch: the current one, or a newly verified one."""
        now = self._clock()
        if now < self._next_check:
            return self.scorer
        self._next_check = now + self.interval
        stamp = _stamp(self.models_dir)
        if stamp is None or stamp == self._stamp or stamp == self._refused:
            return self.scorer
        try:
            candidate = Scorer.load(self.models_dir, anomaly_threshold=self.anomaly_threshold)
        except ModelError as err:
            self._refused = stamp
            log.error("model reload refused, keeping %s: %s", self.scorer.model_version, err)
            return self.scorer
        log.info("model switched between batches: %s -> %s", self.scorer.model_version, candidate.model_version)
        self._stamp, self.scorer = stamp, candidate
        return candidate
