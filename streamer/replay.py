"""Consumer-group offset resets for re-scoring, with the semantics of `kafka-consumer-groups --reset-offsets`.

    reset = parse_reset(to_earliest=True)                  # or to_latest / to_datetime / to_offset / shift_by
    plan = make_plan(kafka_config, "streamer", ["logs.raw"], reset)
    apply(kafka_config, plan)                               # refuses unless the group is Empty or Dead

Targets per partition (earliest/latest are the log-start offset and the high watermark):
  earliest, latest;  datetime -> the first offset whose timestamp is at or after it (offsets_for_times),
  latest when there is none;  offset -> the given offset;  shift-by N -> committed + N (a partition with no
  committed offset is an error, as in Kafka). Offset and shift targets are clamped to [earliest, latest].
The group must have no members: the broker only accepts offsets from outside the group while it is empty,
and a running pipeline would overwrite them with its next commit anyway.

Offsets count Kafka messages, not records: a message holding several records (OTLP, a JSON array, NDJSON) is
read again whole, and each of its records, keyed by (topic, partition, offset, record_index), gets its new
prediction row while its log entry stays the one already stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streamer.errors import ConfigError, StreamerError

INACTIVE_STATES = ("EMPTY", "DEAD")  # DEAD: the group does not exist (yet)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class Reset:
    kind: str  # earliest | latest | datetime | offset | shift
    timestamp_ms: int | None = None  # datetime
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)  # offset: (topic, partition) -> offset
    shift: int = 0  # shift
    label: str = ""  # how to describe it to the user


@dataclass
class PartitionReset:
    topic: str
    partition: int
    earliest: int
    latest: int
    before: int | None  # committed offset, None when the group has none
    after: int
    note: str = ""  # e.g. "clamped from 900"


@dataclass
class Plan:
    group: str
    state: str  # the group's state when planned (EMPTY, STABLE, ...)
    members: int
    reset: Reset
    partitions: list[PartitionReset]

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE_STATES or self.members > 0

    def to_reread(self) -> int:
        """Offsets the group will read again (or skip, when negative) compared with before."""
        return sum((p.before if p.before is not None else p.earliest) - p.after for p in self.partitions)


def parse_datetime(text: str) -> int:
    """ISO 8601 -> milliseconds since the epoch; a time without an offset is taken as UTC."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--to-datetime {text!r} is not ISO 8601 (e.g. 2024-06-01T12:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def parse_offset(text: str) -> tuple[str, int, int]:
    """TOPIC:PARTITION:OFFSET (topic names cannot contain ':')."""
    parts = text.rsplit(":", 2)
    try:
        if len(parts) != 3 or not _TOPIC_NAME.match(parts[0]):
            raise ValueError
        topic, partition, offset = parts[0], int(parts[1]), int(parts[2])
        if partition < 0 or offset < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"--to-offset expects TOPIC:PARTITION:OFFSET with non-negative numbers, got {text!r}"
        ) from None
    return topic, partition, offset


def parse_scope(text: str) -> tuple[str, list[int] | None]:
    """T (every partition) or T:0,1,2 (those partitions), as kafka-consumer-groups --topic takes it."""
    topic, sep, parts = text.partition(":")
    if not _TOPIC_NAME.match(topic):
        raise ConfigError(f"--topic {text!r}: not a topic name (a regex or list is not accepted here)")
    if not sep:
        return topic, None
    try:
        partitions = sorted({int(p) for p in parts.split(",") if p.strip()})
    except ValueError:
        raise ConfigError(f"--topic {text!r}: partitions must be numbers, e.g. {topic}:0,1") from None
    if not partitions or partitions[0] < 0:
        raise ConfigError(f"--topic {text!r}: give at least one partition >= 0")
    return topic, partitions


def parse_reset(
    to_earliest: bool = False,
    to_latest: bool = False,
    to_datetime: str | None = None,
    to_offset: list[str] | None = None,
    shift_by: int | None = None,
) -> Reset:
    given = [to_earliest, to_latest, to_datetime is not None, bool(to_offset), shift_by is not None]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by")
    if to_earliest:
        return Reset("earliest", label="earliest")
    if to_latest:
        return Reset("latest", label="latest")
    if to_datetime is not None:
        return Reset("datetime", timestamp_ms=parse_datetime(to_datetime), label=f"datetime {to_datetime}")
    if to_offset:
        offsets: dict[tuple[str, int], int] = {}
        for item in to_offset:
            topic, partition, offset = parse_offset(item)
            if (topic, partition) in offsets and offsets[(topic, partition)] != offset:
                raise ConfigError(f"--to-offset names {topic}:{partition} twice with different offsets")
            offsets[(topic, partition)] = offset
        return Reset("offset", offsets=offsets, label="offset " + ", ".join(to_offset))
    assert shift_by is not None  # exactly one of the five was given, checked above
    return Reset("shift", shift=int(shift_by), label=f"shift by {shift_by:+d}")


def _admin(kafka_config: dict):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"log_level": 0, **kafka_config})


def _kafka_reason(err: BaseException) -> str:
    from confluent_kafka import KafkaException

    if isinstance(err, KafkaException) and err.args:
        inner = err.args[0]
        return inner.str() if hasattr(inner, "str") else str(inner)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def group_state(kafka_config: dict, group: str, timeout: float = 30.0) -> tuple[str, int]:
    """(state name, number of members) from DescribeConsumerGroups; a group that does not exist is DEAD."""
    admin = _admin(kafka_config)
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(timeout + 5)
    except Exception as err:
        raise StreamerError(
            f"cannot describe consumer group {group} at {kafka_config.get('bootstrap.servers')}: {_kafka_reason(err)}"
        ) from None
    return desc.state.name, len(desc.members or [])


def _committed(kafka_config: dict, group: str, partitions: list[tuple[str, int]], timeout: float) -> dict:
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    admin = _admin(kafka_config)
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in partitions])
    try:
        got = admin.list_consumer_group_offsets([request], request_timeout=timeout)[group].result(timeout + 5)
    except Exception as err:
        raise StreamerError(f"cannot read the committed offsets of group {group}: {_kafka_reason(err)}") from None
    return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in got.topic_partitions}


def _partitions(consumer, scope: list[tuple[str, list[int] | None]], timeout: float) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for topic, wanted in scope:
        try:
            md = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        except Exception as err:
            raise StreamerError(f"cannot read metadata of topic {topic}: {_kafka_reason(err)}") from None
        if md is None or md.error is not None or not md.partitions:
            raise StreamerError(f"topic {topic} does not exist")
        have = sorted(md.partitions)
        if wanted is None:
            out += [(topic, p) for p in have]
            continue
        missing = [p for p in wanted if p not in md.partitions]
        if missing:
            raise StreamerError(f"topic {topic} has partitions 0..{have[-1]}, not {missing[0]}")
        out += [(topic, p) for p in wanted]
    return out


def make_plan(kafka_config: dict, group: str, topics: list[str], reset: Reset, timeout: float = 30.0) -> Plan:
    """Read the group's state, the partitions' bounds and committed offsets; compute every partition's target.

    topics: names, each optionally `name:0,1` to limit the partitions; ignored for --to-offset, which names
    its partitions itself. Changes nothing.
    """
    from confluent_kafka import Consumer, TopicPartition

    if reset.kind == "offset":
        scope: list[tuple[str, list[int] | None]] = []
        for t, p in sorted(reset.offsets):
            if scope and scope[-1][0] == t:
                scope[-1][1].append(p)  # type: ignore[union-attr]
            else:
                scope.append((t, [p]))
    else:
        scope = [parse_scope(t) for t in topics]
        if not scope:
            raise ConfigError("no topic to reset")
    state, members = group_state(kafka_config, group, timeout)
    # A consumer that never subscribes or commits: bounds, metadata and timestamp lookups only.
    consumer = Consumer(
        {"log_level": 0, **kafka_config, "group.id": f"{group}.replay-probe", "enable.auto.commit": False}
    )
    try:
        partitions = _partitions(consumer, scope, timeout)
        committed = _committed(kafka_config, group, partitions, timeout)
        bounds = {}
        for t, p in partitions:
            try:
                bounds[(t, p)] = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=timeout)
            except Exception as err:
                raise StreamerError(f"cannot read the offsets of {t}[{p}]: {_kafka_reason(err)}") from None
        by_time = {}
        if reset.kind == "datetime" and reset.timestamp_ms is not None:
            try:
                found = consumer.offsets_for_times(
                    [TopicPartition(t, p, reset.timestamp_ms) for t, p in partitions], timeout=timeout
                )
            except Exception as err:
                raise StreamerError(f"cannot look up offsets by time: {_kafka_reason(err)}") from None
            for tp in found:
                if tp.error is not None:
                    raise StreamerError(f"cannot look up {tp.topic}[{tp.partition}] by time: {tp.error.str()}")
                by_time[(tp.topic, tp.partition)] = tp.offset
    finally:
        consumer.close()

    rows = []
    for key in partitions:
        low, high = bounds[key]
        before = committed.get(key)
        note = ""
        if reset.kind == "earliest":
            after = low
        elif reset.kind == "latest":
            after = high
        elif reset.kind == "datetime":
            at_time = by_time.get(key, -1)
            after = at_time if at_time >= 0 else high  # no message at or after that time: the end
        else:
            if reset.kind == "offset":
                wanted = reset.offsets[key]
            else:
                if before is None:
                    raise StreamerError(
                        f"cannot shift {key[0]}[{key[1]}]: group {group} has no committed offset "
                        "there (reset it with --to-earliest, --to-datetime or --to-offset first)"
                    )
                wanted = before + reset.shift
            after = min(max(wanted, low), high)
            if after != wanted:
                note = f"clamped from {wanted}"
        rows.append(PartitionReset(key[0], key[1], low, high, before, after, note))
    return Plan(group, state, members, reset, rows)


def refuse_if_active(plan: Plan) -> None:
    if plan.active:
        raise StreamerError(
            f"consumer group {plan.group} is active (state {plan.state}, {plan.members} "
            f"member{'s' if plan.members != 1 else ''}); stop every `streamer run` of this group, "
            "wait until it is Empty, then retry. Nothing was changed"
        )


def apply(kafka_config: dict, plan: Plan, timeout: float = 30.0) -> dict[tuple[str, int], int | None]:
    """Check the group is still inactive, commit the plan's offsets, read them back. Returns what is committed."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    state, members = group_state(kafka_config, plan.group, timeout)
    plan.state, plan.members = state, members
    refuse_if_active(plan)
    if not plan.partitions:
        return {}
    admin = _admin(kafka_config)
    request = ConsumerGroupTopicPartitions(
        plan.group, [TopicPartition(p.topic, p.partition, p.after) for p in plan.partitions]
    )
    try:
        result = admin.alter_consumer_group_offsets([request], request_timeout=timeout)[plan.group].result(timeout + 5)
    except Exception as err:
        # The broker rejects offsets from outside a group that gained a member since our check.
        raise StreamerError(
            f"resetting group {plan.group} failed: {_kafka_reason(err)} (did a consumer join the "
            "group meanwhile? check with `streamer status` and retry)"
        ) from None
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        tp = failed[0]
        raise StreamerError(
            f"resetting {tp.topic}[{tp.partition}] of group {plan.group} failed: {tp.error.str()} "
            f"({len(failed)} of {len(plan.partitions)} partitions failed)"
        )
    now = _committed(kafka_config, plan.group, [(p.topic, p.partition) for p in plan.partitions], timeout)
    wrong = [p for p in plan.partitions if now.get((p.topic, p.partition)) != p.after]
    if wrong:
        p = wrong[0]
        raise StreamerError(
            f"group {plan.group}: {p.topic}[{p.partition}] reads back as "
            f"{now.get((p.topic, p.partition))}, not {p.after}; a consumer may have committed meanwhile"
        )
    return now


def table(plan: Plan) -> list[str]:
    """The plan as aligned text lines: one row per partition, offsets before and after."""
    head = ("TOPIC", "PARTITION", "EARLIEST", "LATEST", "BEFORE", "AFTER", "CHANGE", "")
    rows = [head]
    for p in plan.partitions:
        start = p.before if p.before is not None else p.earliest
        change = p.after - start
        rows.append(
            (
                p.topic,
                str(p.partition),
                str(p.earliest),
                str(p.latest),
                "-" if p.before is None else str(p.before),
                str(p.after),
                f"{change:+d}" if change else "0",
                p.note,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
