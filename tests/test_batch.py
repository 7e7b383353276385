from datetime import UTC, datetime

from streamer.batch import Batch
from streamer.decode import DeadLetter, Decoder, Event


def event(p, o):
    return Event("raw", p, o, None, None, "m", datetime.now(UTC), None, None, None, "{}", True)


def dead(p, o):
    return DeadLetter("raw", p, o, None, None, b"", "empty", "", "decode")


def test_next_offsets_cover_events_and_dead_letters():
    b = Batch()
    for item in (event(0, 5), dead(0, 6), event(1, 9), event(0, 7)):
        b.add(item)
    assert b.next_offsets == {("raw", 0): 8, ("raw", 1): 10}
    assert len(b) == 4 and len(b.events) == 3 and len(b.dead_letters) == 1


class Polled:
    """The part of confluent_kafka.Message that Batch.add_polled reads."""

    def __init__(self, partition, offset, value):
        self._p, self._o, self._v = partition, offset, value

    def topic(self):
        return "raw"

    def partition(self):
        return self._p

    def offset(self):
        return self._o

    def value(self):
        return self._v

    def timestamp(self):
        return (1, 1_700_000_000_000)

    def key(self):
        return b"k"

    def headers(self):
        return None


def test_add_polled_decodes_in_order_and_covers_every_offset():
    b = Batch()
    b.add_polled([Polled(0, 5, b'{"message": "a"}'), Polled(1, 9, b"\xff"), Polled(0, 6, b"plain line")], Decoder())
    b.add_polled([Polled(1, 10, b""), Polled(2, 0, b'{"msg": "c"}')], Decoder())
    b.add_polled([], Decoder())
    assert [(e.partition, e.offset, e.message) for e in b.events] == [(0, 5, "a"), (0, 6, "plain line"), (2, 0, "c")]
    assert [(d.partition, d.offset, d.error_class) for d in b.dead_letters] == [
        (1, 9, "invalid_utf8"),
        (1, 10, "empty"),
    ]
    assert b.next_offsets == {("raw", 0): 7, ("raw", 1): 11, ("raw", 2): 1}
    assert len(b) == 5 and b.first_record_at is not None


def test_without_drops_partitions_entirely():
    b = Batch()
    for item in (event(0, 5), dead(1, 6), event(1, 9), event(2, 1)):
        b.add(item)
    kept = b.without({("raw", 1)})
    assert kept.next_offsets == {("raw", 0): 6, ("raw", 2): 2}
    assert [e.partition for e in kept.events] == [0, 2] and not kept.dead_letters and len(kept) == 2


def test_merged_with_keeps_order_and_the_highest_offsets():
    first, later = Batch(), Batch()
    first.add(event(0, 1))
    first.add(dead(1, 4))
    later.add(event(0, 2))
    later.add(event(2, 7))
    merged = first.merged_with(later)
    assert [(e.partition, e.offset) for e in merged.events] == [(0, 1), (0, 2), (2, 7)]
    assert merged.next_offsets == {("raw", 0): 3, ("raw", 1): 5, ("raw", 2): 8}
    assert len(merged) == 4
