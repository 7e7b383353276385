from datetime import datetime, timezone

from streamer.batch import Batch
from streamer.decode import DeadLetter, Event


def event(p, o):
    return Event("raw", p, o, None, None, "m", datetime.now(timezone.utc), None, None, None, "{}", True)


def dead(p, o):
    return DeadLetter("raw", p, o, None, None, b"", "empty", "", "decode")


def test_next_offsets_cover_events_and_dead_letters():
    b = Batch()
    for item in (event(0, 5), dead(0, 6), event(1, 9), event(0, 7)):
        b.add(item)
    assert b.next_offsets == {("raw", 0): 8, ("raw", 1): 10}
    assert len(b) == 4 and len(b.events) == 3 and len(b.dead_letters) == 1


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
