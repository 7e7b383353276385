from datetime import UTC, datetime

import pytest

from streamer.batch import Batch
from streamer.decode import DeadLetter, Event
from streamer.score import score_batch


class Scorer:
    """Fails on any batch holding a message with `poison` in it; returns one value per message otherwise."""

    def __init__(self, poison: str = "boom"):
        self.poison = poison
        self.calls = 0

    def score(self, messages, levels):
        self.calls += 1
        assert len(messages) == len(levels)
        if any(self.poison in m for m in messages):
            raise ValueError(f"cannot score {self.poison!r}")
        return list(messages)


def batch_of(messages) -> Batch:
    b = Batch()
    for i, m in enumerate(messages):
        b.add(
            Event(
                "raw",
                i % 2,
                100 + i,
                b"k",
                None,
                m,
                datetime.now(UTC),
                None,
                None,
                None,
                f'{{"message": "{m}"}}',
                True,
            )
        )
    b.add(DeadLetter("raw", 0, 200, None, None, b"", "empty", "no value", "decode"))
    return b


def test_a_clean_batch_is_scored_in_one_call():
    b, scorer = batch_of(["a", "b", "c"]), Scorer()
    kept, columns = score_batch(scorer, b)
    assert kept is b and columns == ["a", "b", "c"] and scorer.calls == 1


def test_only_the_events_that_fail_become_dead_letters():
    messages = [f"m{i}" for i in range(40)]
    messages[7], messages[31] = "boom 7", "boom 31"
    b = batch_of(messages)
    kept, columns = score_batch(Scorer(), b)
    assert columns == [m for m in messages if "boom" not in m]
    assert [e.offset for e in kept.events] == [100 + i for i in range(40) if i not in (7, 31)]
    dead = [d for d in kept.dead_letters if d.stage == "score"]
    assert [(d.offset, d.error_class, d.value) for d in dead] == [
        (107, "score_failed", b'{"message": "boom 7"}'),
        (131, "score_failed", b'{"message": "boom 31"}'),
    ]
    assert dead[0].reason == "ValueError: cannot score 'boom'"
    # the decode-stage dead letter stays, and the commit still covers every record of the batch
    assert kept.dead_letters[0].stage == "decode" and len(kept) == len(b) == 41
    assert kept.next_offsets == b.next_offsets == {("raw", 0): 201, ("raw", 1): 140}


def test_a_broken_scorer_is_an_error_not_dead_letters():
    with pytest.raises(ValueError):
        score_batch(Scorer(poison=""), batch_of(["a", "b"]))  # fails on everything, the canary too


def test_an_empty_batch_is_not_scored():
    scorer = Scorer()
    assert score_batch(scorer, Batch()) == (Batch(), None) and scorer.calls == 0
