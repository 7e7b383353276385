"""Topic administration: create the topics streamer uses, idempotently."""

from __future__ import annotations

from streamer.config import redact_config
from streamer.errors import StreamerError

# Topics streamer creates accept records up to this size, so an oversized input still reaches streamer (and
# its dead-letter topic) instead of being refused by the broker. The producer stays below it (see sink.py).
TOPIC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def ensure_topics(kafka_config: dict, topics: dict[str, int], timeout: float = 30.0,
                  replication_factor: int = -1, topic_config: dict[str, str] | None = None) -> dict[str, str]:
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
            [NewTopic(name, num_partitions=n, replication_factor=replication_factor,
                      config={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES), **(topic_config or {})})
             for name, n in topics.items()],
            operation_timeout=timeout, request_timeout=timeout)
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
            raise StreamerError(f"cannot create topic {name}: no answer from Kafka at {bootstrap} "
                                f"within {timeout:g}s ({type(err).__name__}; config {redact_config(kafka_config)})") from None

    # CreateTopics returns once the controller has the topic; the broker's metadata may lag behind. Wait
    # until every topic is visible with a leader per partition, so callers can produce at once.
    md = _wait_visible(admin, bootstrap, topics, timeout)
    existing = [name for name, state in result.items() if state == "exists"]
    if existing:
        for name in existing:
            have = len(md.topics[name].partitions) if name in md.topics else 0
            if have < topics[name]:
                raise StreamerError(f"topic {name} exists with {have} partitions, fewer than the {topics[name]} "
                                    "streamer needs; grow it with kafka-topics --alter or choose another name")
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
    import time

    deadline = time.monotonic() + timeout
    while True:
        md = _metadata(admin, bootstrap, timeout)
        if all(name in md.topics and md.topics[name].error is None and md.topics[name].partitions
               and all(p.leader >= 0 for p in md.topics[name].partitions.values()) for name in topics):
            return md
        if time.monotonic() >= deadline:
            missing = sorted(n for n in topics if n not in md.topics)
            raise StreamerError(f"topics {', '.join(missing) or 'created'} not visible with leaders on {bootstrap} "
                                f"within {timeout:g}s")
        time.sleep(0.1)


def _metadata(admin, bootstrap: str, timeout: float):
    from confluent_kafka import KafkaException

    try:
        return admin.list_topics(timeout=timeout)
    except KafkaException as err:
        raise StreamerError(f"cannot read topic metadata from Kafka at {bootstrap}: {err.args[0].str()}") from None
