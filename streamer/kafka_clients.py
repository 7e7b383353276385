"""The Kafka clients of `streamer run`: their configuration, building them, their error callback, and closing
them.

librdkafka's threads call back into Python (error, statistics and delivery callbacks). A client still open
when the interpreter finalises can do so into a half torn-down interpreter and crash the process (SIGSEGV at
exit), so every exit path closes them explicitly: close_clients().
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from streamer.config import Settings, is_secret_key
from streamer.errors import ConfigError
from streamer.health import Health
from streamer.sink import KafkaSink

log = logging.getLogger(__name__)


def consumer_config(settings: Settings) -> dict:
    return {
        "auto.offset.reset": "earliest",
        # Eager assignment: a revoke callback may commit with the generation still valid. Manual commits
        # during a cooperative-sticky rebalance can be refused or lose the assignment (librdkafka #4059).
        "partition.assignment.strategy": "range",
        "statistics.interval.ms": 5000,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "queued.max.messages.kbytes": 8 * 1024,  # prefetch: ample at tens of thousands/s; keeps RSS small
        **settings.kafka_client_config(),
        "group.id": settings.group_id,
        # Offsets move only through Checkpoint's synchronous commit.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }


def producer_config(settings: Settings) -> dict:
    # Consumer-only properties in the passthrough would make librdkafka warn on the producer; drop them.
    consumer_only = (
        "auto.offset.reset",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "heartbeat.interval.ms",
        "partition.assignment.strategy",
        "group.instance.id",
        "fetch.",
    )
    return {k: v for k, v in settings.kafka_client_config().items() if not k.startswith(consumer_only)}


def check_kafka_config(settings: Settings) -> None:
    """Build (and drop) a consumer and a producer from the settings, so an unknown or invalid librdkafka
    property stops start-up with one line before anything else is done."""
    quiet = {"log_level": 0}  # they connect to the bootstrap servers at once; their logs would be noise
    try:
        producer = Producer({**producer_config(settings), **quiet})
        consumer = Consumer({**consumer_config(settings), **quiet})
    except KafkaException as err:
        raise _config_error(err, settings) from None
    close_clients(consumer, producer, flush_timeout=0)


def open_clients(settings: Settings, errors: KafkaErrors, stats_cb) -> tuple[Consumer, KafkaSink]:
    """The pipeline's consumer (reporting to `errors` and `stats_cb`) and its producer, as a KafkaSink."""
    consumer = None
    try:
        consumer = Consumer({**consumer_config(settings), "stats_cb": stats_cb, "error_cb": errors})
        return consumer, KafkaSink(producer_config(settings), settings.output_topic, settings.dlq_topic)
    except KafkaException as err:
        close_clients(consumer, None, flush_timeout=0)
        raise _config_error(err, settings) from None


def close_clients(consumer: Consumer | None, producer: Producer | None, flush_timeout: float) -> None:
    """Close both while the interpreter is alive; safe to call again. A librdkafka client left to the
    interpreter's teardown keeps its threads running into the process exit, where they can crash it (SIGSEGV
    in TLS code, or calling back into a finalised interpreter). The consumer first: closing it leaves the
    group, and its revoke callback may still produce and commit. The producer then sends what it holds for at
    most flush_timeout seconds; the rest is dropped (uncommitted, so redelivered), as close() would wait on it."""
    if consumer is not None:
        try:
            consumer.close()
        except (KafkaException, RuntimeError) as err:
            log.warning("consumer close: %s", err)
    if producer is not None:
        try:
            producer.flush(flush_timeout)
            producer.purge()
            producer.close()
        except RuntimeError:
            pass  # closed already


class KafkaErrors:
    """The consumer's error callback. Keeps /readyz's broker flag, stops the process on a fatal error, and
    treats a certificate or login the broker refuses before this member ever joined as configuration, not an
    outage: `refused` is then the one line start-up stops with, instead of retrying for ever."""

    def __init__(self, health: Health, stop: threading.Event):
        self.health = health
        self.stop = stop
        self.joined = False  # set by the pipeline at the first assignment
        self.refused: ConfigError | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.health.broker_ok = False
        if not self.joined and _refused_by_broker(err):
            self.refused = ConfigError(f"Kafka refused the connection: {err.str()}")
            self.stop.set()
            return
        if err.fatal():
            log.error("Kafka client fatal error: %s", err.str())
            self.stop.set()
        elif err.code() != KafkaError._TRANSPORT:  # transport blips are retried by librdkafka
            log.warning("Kafka: %s", err.str())


def _config_error(err: KafkaException, settings: Settings) -> ConfigError:
    message = err.args[0].str()
    for key, value in settings.kafka_config.items():  # librdkafka may quote a value; never a secret one
        if value and is_secret_key(key):
            message = message.replace(value, "***")
    return ConfigError(f"librdkafka configuration: {message}")


def _refused_by_broker(err: KafkaError) -> bool:
    # A broker certificate that does not verify, or SASL credentials rejected: a retry repeats them.
    return err.code() == KafkaError._AUTHENTICATION or (err.code() == KafkaError._SSL and "certificate" in err.str())
