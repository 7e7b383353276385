"""Delivery semantics in one place: what a processed batch must reach, in which order, before its offsets
are committed. See checkpoint.Checkpoint."""

from streamer.checkpointing.checkpoint import Checkpoint, ScoredBatch

__all__ = ["Checkpoint", "ScoredBatch"]
