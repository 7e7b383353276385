"""Moved by the pipeline split; kept so existing imports work. The loop is streamer/pipeline.py, ordered
delivery streamer/inflight.py, the Kafka clients' configuration streamer/kafka_clients.py."""

from streamer.kafka_clients import check_kafka_config, close_clients, consumer_config, producer_config
from streamer.pipeline import CLOSE_ALLOWANCE, REVOKE_BOUND, SHUTDOWN_BOUND, Pipeline

__all__ = [
    "CLOSE_ALLOWANCE",
    "REVOKE_BOUND",
    "SHUTDOWN_BOUND",
    "Pipeline",
    "check_kafka_config",
    "close_clients",
    "consumer_config",
    "producer_config",
]
