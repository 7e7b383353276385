"""The read-back checker (testkit.readback) on records made here: it must see loss, repeats, extra records,
records out of source order and altered dead letters, or the drill and the tests that use it prove nothing."""

from __future__ import annotations

import hashlib

import orjson

from testkit.clients import Record
from testkit.readback import Expected, ReadBack, _check_dead_letters, _check_scored

RAW = "t.raw"


def scored(output_partition: int, offset: int, source: tuple[int, int]) -> Record:
    body = {
        "message": "m",
        "streamer": {"source": {"topic": RAW, "offset": source[1]}, "model_version": "v", "severity": "low"},
    }
    headers = [("source.partition", b"%d" % source[0]), ("source.offset", b"%d" % source[1])]
    return Record("t.scored", output_partition, offset, None, orjson.dumps(body), headers)


def dead(offset: int, value: bytes, stage: bytes = b"decode", extra: tuple = ()) -> Record:
    headers = [
        ("source.partition", b"0"),
        ("source.offset", b"%d" % offset),
        ("deadletter.stage", stage),
        ("deadletter.error_class", b"db_54000" if stage == b"store" else b"json"),
        ("deadletter.reason", b"why"),
        *extra,
    ]
    return Record("t.dlq", 0, offset, None, value, headers)


def check_scored(records: list[Record], valid: set[tuple[int, int, int]]) -> ReadBack:
    out = ReadBack()
    _check_scored(out, records, RAW, Expected(records=dict.fromkeys(valid), decode_dead={}))
    return out


def test_every_record_once_in_source_order_is_clean():
    out = check_scored(
        [scored(0, 0, (1, 0)), scored(0, 1, (1, 1)), scored(1, 0, (2, 5))], {(1, 0, 0), (1, 1, 0), (2, 5, 0)}
    )
    assert (out.lost_scored, out.duplicates_scored, out.extra_scored, out.out_of_order_scored, out.wrong_scored) == (
        0,
    ) * 5


def test_loss_repeats_and_extras_are_counted():
    out = check_scored([scored(0, 0, (1, 0)), scored(0, 1, (1, 0)), scored(0, 2, (1, 9))], {(1, 0, 0), (1, 1, 0)})
    assert (out.lost_scored, out.duplicates_scored, out.extra_scored) == (1, 1, 1)


def test_a_replay_is_a_repeat_but_a_new_record_behind_a_later_one_is_out_of_order():
    replay = [scored(0, 0, (1, 0)), scored(0, 1, (1, 1)), scored(0, 2, (1, 0)), scored(0, 3, (1, 1))]
    assert check_scored(replay, {(1, 0, 0), (1, 1, 0)}).out_of_order_scored == 0
    swapped = [scored(0, 0, (1, 1)), scored(0, 1, (1, 0))]
    assert check_scored(swapped, {(1, 0, 0), (1, 1, 0)}).out_of_order_scored == 1
    other_partitions = [scored(0, 0, (1, 1)), scored(0, 1, (2, 0)), scored(1, 0, (1, 0))]
    assert check_scored(other_partitions, {(1, 0, 0), (1, 1, 0), (2, 0, 0)}).out_of_order_scored == 0


def test_a_wrong_source_topic_is_wrong_content():
    record = scored(0, 0, (1, 0))
    body = orjson.loads(record.value)
    body["streamer"]["source"]["topic"] = "elsewhere"
    altered = Record(record.topic, 0, 0, None, orjson.dumps(body), record.headers)
    assert check_scored([altered], {(1, 0, 0)}).wrong_scored == 1


def test_dead_letters_must_keep_their_bytes_or_say_how_they_were_cut():
    original = b"x" * 100
    expected = Expected(
        records={}, decode_dead={(0, 1, 0): b"bad", (0, 2, 0): original, (0, 3, 0): b"gone"}, store_dead={(0, 4, 0)}
    )
    cut = dead(
        2,
        original[:10],
        extra=(
            ("deadletter.truncated", b"true"),
            ("deadletter.original_size", b"100"),
            ("deadletter.original_sha256", hashlib.sha256(original).hexdigest().encode()),
        ),
    )
    out = ReadBack()
    _check_dead_letters(
        out, [dead(1, b"bad"), cut, dead(3, b"altered"), dead(4, b"{}", b"store"), dead(5, b"ok")], expected
    )
    assert out.dead_lettered == {(0, 1, 0), (0, 2, 0), (0, 4, 0)}
    assert (out.lost_dead_letters, out.truncated_dead_letters, out.extra_dead_letters) == (1, 1, 1)
