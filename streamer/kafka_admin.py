"""Topic administration: create the topics streamer uses, idempotently."""

from __future__ import annotations

import threading
import time

from streamer.config import redact_config
from streamer.errors import StreamerError

# Topics streamer creates accept records up to this size, so an oversized input still reaches streamer (and
# its dead-letter topic) instead of being refused by the broker. The producer stays below it (see sink.py).
TOPIC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def ensure_topics(
    kafka_config: dict,
    topics: dict[str, int],
    timeout: float = 30.0,
    replication_factor: int = -1,
    topic_config: dict[str, str] | None = None,
) -> dict[str, str]:
    """Create each topic (name -> partition count) that does not exist yet.

    Returns name -> "created" | "exists". An existing topic with fewer partitions than asked is reported as
    an error rather than silently grown (growing changes the key -> partition mapping). replication_factor -1
    means the broker's default.replication.factor. Raises StreamerError on any other failure.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    if not topics:
        return {}
    admin = AdminClient(_quiet(kafka_config))
    bootstrap = kafka_config.get("bootstrap.servers", "?")
    try:
        futures = admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=n,
                    replication_factor=replication_factor,
                    config={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES), **(topic_config or {})},
                )
                for name, n in topics.items()
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
    except KafkaException as err:
        raise StreamerError(f"cannot create topics on {bootstrap}: {err.args[0].str()}") from None

    result: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout + 5)
            result[name] = "created"
        except KafkaException as err:
            kerr = err.args[0]
            if kerr.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StreamerError(f"cannot create topic {name} on {bootstrap}: {kerr.str()}") from None
            result[name] = "exists"
        except Exception as err:  # a future that timed out: the broker is unreachable
            raise StreamerError(
                f"cannot create topic {name}: no answer from Kafka at {bootstrap} "
                f"within {timeout:g}s ({type(err).__name__}; config {redact_config(kafka_config)})"
            ) from None

    # CreateTopics returns once the controller has the topic; the broker's metadata may lag behind. Wait
    # until every topic is visible with a leader per partition, so callers can produce at once.
    md = _wait_visible(admin, bootstrap, topics, timeout)
    existing = [name for name, state in result.items() if state == "exists"]
    if existing:
        for name in existing:
            have = len(md.topics[name].partitions) if name in md.topics else 0
            if have < topics[name]:
                raise StreamerError(
                    f"topic {name} exists with {have} partitions, fewer than the {topics[name]} "
                    "streamer needs; grow it with kafka-topics --alter or choose another name"
                )
    return result


def delete_topics(kafka_config: dict, names: list[str], timeout: float = 30.0) -> None:
    """Delete topics, ignoring ones that do not exist (used by tests and tooling)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    if not names:
        return
    admin = AdminClient(_quiet(kafka_config))
    for name, fut in admin.delete_topics(list(names), operation_timeout=timeout, request_timeout=timeout).items():
        try:
            fut.result(timeout=timeout + 5)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise StreamerError(f"cannot delete topic {name}: {err.args[0].str()}") from None


def _quiet(kafka_config: dict) -> dict:
    # librdkafka would print every failed connect attempt; our StreamerError says it once.
    return {"log_level": 0, **kafka_config}


def _wait_visible(admin, bootstrap: str, topics: dict[str, int], timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        md = _metadata(admin, bootstrap, timeout)
        if all(
            name in md.topics
            and md.topics[name].error is None
            and md.topics[name].partitions
            and all(p.leader >= 0 for p in md.topics[name].partitions.values())
            for name in topics
        ):
            return md
        if time.monotonic() >= deadline:
            missing = sorted(n for n in topics if n not in md.topics)
            raise StreamerError(
                f"topics {', '.join(missing) or 'created'} not visible with leaders on {bootstrap} within {timeout:g}s"
            )
        time.sleep(0.1)


def _metadata(admin, bootstrap: str, timeout: float):
    from confluent_kafka import KafkaException

    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as err:
        raise StreamerError(f"cannot read topic metadata from Kafka at {bootstrap}: {err.args[0].str()}") from None


# The producer's own record limit (KafkaSink): below the topics' limit, so an oversized record fails in the
# client, where its dead letter can still be sent, rather than at the broker.
PRODUCER_MAX_MESSAGE_BYTES = TOPIC_MAX_MESSAGE_BYTES - 64 * 1024
# What a scored record adds to the input event at most, roughly: the `streamer` member and the source headers.
SCORED_OVERHEAD_BYTES = 1024


def topic_limits(
    kafka_config: dict, names: list[str], timeout: float = 10.0, cancel: threading.Event | None = None
) -> dict[str, int]:
    """name -> max.message.bytes as the broker applies it (the topic's own or the broker's default).

    Once `cancel` is set it gives up within 0.1 s, so a process that stops meanwhile destroys the client
    before it exits (a librdkafka client alive at the exit can crash it)."""
    from concurrent.futures import wait

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    if not names:
        return {}
    admin = AdminClient(_quiet(kafka_config))
    bootstrap = kafka_config.get("bootstrap.servers", "?")
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, n) for n in names], request_timeout=timeout)
    pending, deadline = set(futures.values()), time.monotonic() + timeout + 5
    while pending and time.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            raise StreamerError("cannot read topic configurations: the process is stopping")
        _, pending = wait(pending, timeout=0.1)
    limits = {}
    for resource, fut in futures.items():
        try:
            entries = fut.result(timeout=0)
        except KafkaException as err:
            raise StreamerError(
                f"cannot read the configuration of topic {resource.name}: {err.args[0].str()}"
            ) from None
        except Exception as err:  # a future that timed out: the broker is unreachable
            raise StreamerError(
                f"cannot read topic configurations: no answer from Kafka at {bootstrap} "
                f"within {timeout:g}s ({type(err).__name__})"
            ) from None
        limits[resource.name] = int(entries["max.message.bytes"].value)
    return limits


def topic_limit_warnings(
    kafka_config: dict,
    output_topic: str,
    dlq_topic: str,
    input_topics: list[str],
    max_event_bytes: int,
    producer_max_bytes: int = PRODUCER_MAX_MESSAGE_BYTES,
    timeout: float = 10.0,
    cancel: threading.Event | None = None,
) -> list[str]:
    """One line per topic whose max.message.bytes is below the largest record streamer may send it.

    The broker refuses such a record whenever it comes; streamer does not retry it forever (KafkaSink.flush
    sends it to the dead-letter topic truncated), but the operator should know before it happens. Sizes are
    compared before compression: the broker checks the compressed batch, so this is the cautious side."""
    from streamer.sink import TRUNCATED_BYTES

    plain_inputs = [t for t in input_topics if not t.startswith("^")]  # a regex names no topic to describe
    names = list(dict.fromkeys([output_topic, dlq_topic, *plain_inputs]))
    limits = topic_limits(kafka_config, names, timeout, cancel)
    # A dead letter keeps the original value: as large as the input topics let in, up to the producer's limit.
    largest_input = max((limits[t] for t in plain_inputs), default=producer_max_bytes)
    largest_scored = min(max_event_bytes + SCORED_OVERHEAD_BYTES, producer_max_bytes)
    largest_dead = min(max(largest_input, largest_scored), producer_max_bytes)
    warnings = []
    if limits[output_topic] < largest_scored:
        warnings.append(
            f"topic {output_topic} accepts records up to {limits[output_topic]:,} bytes (max.message.bytes) but "
            f"a scored record may reach about {largest_scored:,} (STREAMER_MAX_MESSAGE_BYTES "
            f"{max_event_bytes:,} plus the streamer member): a larger one is still stored, and goes to "
            f"{dlq_topic} truncated to {TRUNCATED_BYTES // 1024} KiB instead; raise max.message.bytes or lower "
            "STREAMER_MAX_MESSAGE_BYTES"
        )
    if limits[dlq_topic] < largest_dead:
        kept = (
            f"truncated to {TRUNCATED_BYTES // 1024} KiB with headers deadletter.truncated, "
            "deadletter.original_size and deadletter.original_sha256"
            if limits[dlq_topic] > TRUNCATED_BYTES + 4096
            else "without their value (deadletter.value_omitted), as even a truncated one does not fit"
        )
        warnings.append(
            f"topic {dlq_topic} accepts records up to {limits[dlq_topic]:,} bytes (max.message.bytes) but a "
            f"dead letter keeps the original value, up to {largest_dead:,} bytes: larger ones are sent {kept}; "
            f"raise max.message.bytes to {largest_dead:,} to keep them whole"
        )
    return warnings
