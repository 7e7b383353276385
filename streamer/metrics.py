"""Prometheus metrics of one pipeline, in a registry of its own (several pipelines can share a process)."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("poll", "decode", "score", "store", "publish", "commit")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_in = Counter("streamer_events_in", "Records polled from the input topics", registry=r)
        self.events_scored = Counter("streamer_events_scored", "Events scored and stored", registry=r)
        self.dead_letters = Counter(
            "streamer_dead_letters", "Records sent to the dead-letter topic", ["stage", "error_class"], registry=r
        )
        self.batch_size = Histogram(
            "streamer_batch_size",
            "Records per batch",
            buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000),
            registry=r,
        )
        self.stage_seconds = Histogram(
            "streamer_stage_seconds",
            "Seconds per batch spent in each stage",
            ["stage"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.consumer_lag = Gauge(
            "streamer_consumer_lag", "Records behind the high watermark", ["topic", "partition"], registry=r
        )
        self.commits = Counter("streamer_commits", "Successful offset commits", registry=r)
        self.commit_failures = Counter("streamer_commit_failures", "Failed offset commits", registry=r)
        self.retries = Counter("streamer_retries", "Batch attempts that failed transiently", ["cause"], registry=r)
        self.model_info = Gauge("streamer_model_info", "The model in use", ["model_version"], registry=r)

    def set_model(self, model_version: str) -> None:
        """One series, the model scoring now: a hot-reloaded model replaces the label."""
        self.model_info.clear()
        self.model_info.labels(model_version).set(1)

    def observe_stats(self, stats_json: str) -> None:
        """librdkafka statistics callback: consumer lag per assigned partition."""
        stats = orjson.loads(stats_json)
        for topic, t in stats.get("topics", {}).items():
            for partition, p in t.get("partitions", {}).items():
                if partition == "-1" or p.get("fetch_state") in (None, "none", "stopped"):
                    continue
                lag = p.get("consumer_lag", -1)
                if lag >= 0:
                    self.consumer_lag.labels(topic, partition).set(lag)
