"""The delivery contract read back from outside, trusting nothing the pipeline says about itself: what is in
PostgreSQL, on the output topic and on the dead-letter topic, compared with what was produced.

- every valid record is in log_entries once and in ml_predictions once (no loss, no duplicate rows, no row
  for anything else), and on the output topic at least once (repeats are counted: at least once allows them);
- the source order on the output topic is measured, not promised: per output partition and source partition,
  records seen for the first time after a later one are counted (repeats of records already seen are
  replays). Two batches are published at once and a replay after a fault can overlap the next batch, so at
  least once allows them; the drill reports the figure, the order promise it checks is that of the commits;
- every invalid input is a decode-stage dead letter with its original bytes (or, refused whole by the topic,
  truncated with its size and sha256), every record the database refuses a store-stage one;
- optionally, the content: each row and output record equals the record decoded and scored afresh.

Records are named by their source coordinates (partition, offset, record_index): a message may hold several.
The chaos drill and the integration tests share it; read_back() returns figures, check() asserts them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import orjson

from testkit.clients import Record, consume_all, query
from testkit.pipeline import MODELS, committed, end_offsets

Coord = tuple[int, int, int]  # source partition, offset, record_index
# What one valid record must be: (message, predicted_level, severity, anomaly_score, the event without its
# `streamer` part). severity and score None: only the level is reproducible (see scored_afresh).
Content = tuple[str, str, str | None, float | None, dict]


@dataclass
class Topics:
    raw: str
    scored: str
    deadletter: str
    group: str | None = None  # given: also check that its commits reached the end of every partition


@dataclass
class Expected:
    """What the pipeline must have delivered for what was produced."""

    records: dict[Coord, Content | None]  # valid records; None: check where it is, not what it holds
    decode_dead: dict[Coord, bytes]  # invalid inputs -> their original bytes
    store_dead: set[Coord] = field(default_factory=set)  # decoded fine, refused by the database
    model_version: str | None = None  # given: predictions of other versions count as extra rows
    produced: int | None = None  # messages written to the input topic, when known


@dataclass
class ReadBack:
    lost_log_entries: int = 0
    lost_predictions: int = 0
    lost_scored: int = 0
    lost_dead_letters: int = 0  # invalid or refused inputs missing on the dead-letter topic or altered there
    duplicate_rows: int = 0  # log_entries + ml_predictions rows beyond one per record
    extra_rows: int = 0  # rows for coordinates that are not valid records (or of another model version)
    wrong_rows: int = 0  # log_entries.message differs from the input's
    wrong_predictions: int = 0  # ml_predictions differ from scoring the input again
    duplicates_scored: int = 0
    extra_scored: int = 0
    wrong_scored: int = 0  # output records whose event, source or scores differ
    out_of_order_scored: int = 0  # first seen after a later record of the same source partition
    dead_letters: int = 0  # distinct inputs on the dead-letter topic
    duplicates_dead_letters: int = 0
    extra_dead_letters: int = 0  # dead letters for records that should have been delivered
    truncated_dead_letters: int = 0  # refused whole by the topic: value cut, size and sha256 kept
    rejected_by_database: int = 0  # valid or refused records dead-lettered by the store stage
    committed_at_end: bool | None = None  # None: no group given
    dead_lettered: set[Coord] = field(default_factory=set)  # found intact where they belong
    missing_dead_letters: list[Coord] = field(default_factory=list)  # the first few
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.lost_log_entries + self.lost_predictions + self.lost_scored + self.lost_dead_letters

    def figures(self) -> dict:
        """The counts, for a report (the sets left out)."""
        return {k: v for k, v in vars(self).items() if k not in ("dead_lettered", "missing_dead_letters", "problems")}


def read_back(
    bootstrap: str, db_url: str, topics: Topics, expected: Expected, partitions: int, timeout: float = 900
) -> ReadBack:
    """Read PostgreSQL and both output topics back and count every way they differ from `expected`."""
    out = ReadBack()
    if expected.produced is not None:
        held = sum(end_offsets(bootstrap, topics.raw, partitions).values())
        if held != expected.produced:
            out.problems.append(f"the input topic holds {held} records, the producer wrote {expected.produced}")
    if topics.group is not None:
        ends = end_offsets(bootstrap, topics.raw, partitions)
        done = committed(bootstrap, topics.group, topics.raw, partitions)
        # An empty partition has nothing to commit (its committed offset stays unset), as caught_up() allows.
        out.committed_at_end = all(done.get(q, -1) >= e for q, e in ends.items() if e > 0)
        if not out.committed_at_end:
            out.problems.append(f"committed {done}, partition ends {ends}")
    _check_rows(out, db_url, topics.raw, expected)
    _check_scored(out, consume_all(bootstrap, topics.scored, timeout=timeout), topics.raw, expected)
    _check_dead_letters(out, consume_all(bootstrap, topics.deadletter, timeout=timeout), expected)
    return out


def check(result: ReadBack) -> None:
    """Assert the contract: nothing lost, no duplicate or extra row, nothing extra or wrong on the output
    topic, no dead letter for a valid record, every group commit at the end (repeats on the topics
    are allowed)."""
    assert result.lost == 0, f"lost: {result.figures()}"
    assert result.duplicate_rows == result.extra_rows == 0, f"duplicate or extra rows: {result.figures()}"
    assert result.wrong_rows == result.wrong_predictions == 0, f"wrong rows: {result.figures()}"
    assert result.extra_scored == result.wrong_scored == 0, f"output topic: {result.figures()}"
    assert result.extra_dead_letters == 0, f"dead letters for valid records: {result.figures()}"
    assert result.committed_at_end is not False, f"the group's commits are not at the end: {result.problems}"
    assert not result.problems, result.problems


def _check_rows(out: ReadBack, db_url: str, raw_topic: str, expected: Expected) -> None:
    valid = expected.records
    entries = query(
        db_url,
        "SELECT kafka_partition, kafka_offset, record_index, message FROM log_entries WHERE kafka_topic = %s",
        [raw_topic],
    )
    rows = Counter((q, o, r) for q, o, r, _ in entries)
    out.wrong_rows = sum(1 for q, o, r, m in entries if (c := valid.get((q, o, r))) is not None and m != c[0])
    del entries
    predictions = query(
        db_url,
        "SELECT kafka_partition, kafka_offset, record_index, model_version, predicted_level, severity, "
        "anomaly_score FROM ml_predictions WHERE kafka_topic = %s",
        [raw_topic],
    )
    version = expected.model_version
    preds = Counter((q, o, r) for q, o, r, v, *_ in predictions if version is None or v == version)
    out.wrong_predictions = sum(
        1
        for q, o, r, _, *scores in predictions
        if (c := valid.get((q, o, r))) is not None and not _same_scores(tuple(scores), c[1:4])
    )
    other_versions = sum(1 for row in predictions if version is not None and row[3] != version)
    del predictions
    out.lost_log_entries = len(valid.keys() - rows.keys())
    out.lost_predictions = len(valid.keys() - preds.keys())
    out.duplicate_rows = sum(n - 1 for n in rows.values()) + sum(n - 1 for n in preds.values())
    out.extra_rows = len(rows.keys() - valid.keys()) + len(preds.keys() - valid.keys()) + other_versions


def _check_scored(out: ReadBack, scored: list[Record], raw_topic: str, expected: Expected) -> None:
    valid = expected.records
    seen: Counter = Counter()
    latest: dict[tuple[int, int], tuple[int, int]] = {}  # (output, source partition) -> last (offset, index)
    for r in scored:  # in (partition, offset) order: each output partition as a consumer reads it
        c = source(r)
        seen[c] += 1
        if seen[c] == 1:
            where, at = (r.partition, c[0]), (c[1], c[2])
            if where in latest and at < latest[where]:
                out.out_of_order_scored += 1
            latest[where] = max(at, latest.get(where, at))
        if c in valid and not _same_output(r, c, raw_topic, valid[c]):
            out.wrong_scored += 1
    out.lost_scored = len(valid.keys() - seen.keys())
    out.duplicates_scored = sum(n - 1 for n in seen.values())
    out.extra_scored = len(seen.keys() - valid.keys())


def _same_output(r: Record, c: Coord, raw_topic: str, want: Content | None) -> bool:
    body = orjson.loads(r.value or b"null")
    mine = body.pop("streamer", {})
    src = mine.get("source", {})
    if src.get("topic") != raw_topic or src.get("offset") != c[1] or not mine.get("model_version"):
        return False
    if want is None:
        return mine.get("severity") in ("critical", "high", "medium", "low")
    got = (mine.get("predicted_level"), mine.get("severity"), mine.get("anomaly_score"))
    return body == want[4] and _same_scores(got, want[1:4])


def _check_dead_letters(out: ReadBack, dead: list[Record], expected: Expected) -> None:
    seen: Counter = Counter()
    truncated: set[Coord] = set()
    for r in dead:
        c = source(r)
        seen[c] += 1
        stage = r.header("deadletter.stage")
        if not (r.header("deadletter.error_class") and r.header("deadletter.reason")):
            continue
        if c in expected.decode_dead and stage == b"decode" and _same_value(r, expected.decode_dead[c]):
            out.dead_lettered.add(c)
            if r.header("deadletter.truncated") == b"true":
                truncated.add(c)
        elif (
            c in expected.store_dead and stage == b"store" and (r.header("deadletter.error_class") or b"")[:3] == b"db_"
        ):
            out.dead_lettered.add(c)
    wanted = expected.decode_dead.keys() | expected.store_dead
    out.dead_letters = len(seen)
    out.truncated_dead_letters = len(truncated)
    out.duplicates_dead_letters = sum(n - 1 for n in seen.values())
    out.lost_dead_letters = len(wanted - out.dead_lettered)
    out.extra_dead_letters = len(seen.keys() - wanted)
    out.missing_dead_letters = sorted(wanted - out.dead_lettered)[:5]
    out.rejected_by_database = len(seen.keys() & (expected.records.keys() | expected.store_dead))


def source(record: Record) -> Coord:
    """The input record an output record or dead letter came from, from its headers."""
    return (
        int(record.header("source.partition") or -1),
        int(record.header("source.offset") or -1),
        int(record.header("source.record_index") or 0),
    )


def _same_value(record: Record, original: bytes) -> bool:
    """The dead letter carries the original bytes, or — refused whole by the topic — their first bytes with
    the original's size and sha256 in its headers."""
    value = record.value or b""
    if record.header("deadletter.truncated") != b"true":
        return value == original
    return (
        original.startswith(value)
        and record.header("deadletter.original_size") == b"%d" % len(original)
        and record.header("deadletter.original_sha256") == hashlib.sha256(original).hexdigest().encode()
    )


def _same_scores(got: tuple, want: tuple) -> bool:
    """(predicted_level, severity, anomaly_score): labels equal, score equal to the 4 places the output keeps;
    want[2] None: the level only (the rest is learnt from the member's own stream)."""
    level, sev, score = got
    if want[2] is None:
        return level == want[0] and sev is not None and score is not None
    return level == want[0] and sev == want[1] and score is not None and abs(score - want[2]) <= 1e-4


def scored_afresh(values: list[bytes], coords: list[tuple[int, int] | None], sent: set, raw_topic: str) -> dict:
    """Coord -> Content for every record of the inputs at `sent` coordinates, decoded and scored here with the
    repository's model as the members do."""
    from streamer.config import Settings
    from streamer.decode import Decoder, Event
    from streamer.ml.scorer import Scorer

    defaults = Settings()
    decoder = Decoder(max_message_bytes=defaults.max_message_bytes, message_fields=defaults.message_field_names())
    scorer = Scorer.load(MODELS)
    events = []
    for i, c in enumerate(coords):
        if c in sent:
            decoded = decoder.decode(values[i], topic=raw_topic, partition=c[0], offset=c[1])
            events += [d for d in (decoded if isinstance(decoded, list) else [decoded]) if isinstance(d, Event)]
    out: dict[Coord, Content] = {}
    for start in range(0, len(events), 20_000):
        chunk = events[start : start + 20_000]
        cols = scorer.score([e.message for e in chunk], [e.level for e in chunk])
        scores = cols.anomaly_score.tolist()
        # Below the model's familiarity gate the anomaly score comes from counts each member learns from what
        # it scored itself (kills and rebalances change that history), so only the level is reproducible.
        learnt = (cols.familiarity < scorer.min_familiarity).tolist()
        for j, e in enumerate(chunk):
            raw = {k: v for k, v in e.raw.items() if k != "streamer"}
            out[(e.partition, e.offset, e.record_index)] = (
                e.message,
                cols.predicted_level[j],
                None if learnt[j] else cols.severity[j],
                None if learnt[j] else scores[j],
                raw,
            )
    return out
