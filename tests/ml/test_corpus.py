import time

from streamer.levels import LEVELS, normalise
from streamer.ml.corpus import ANOMALY_TYPES, FAMILIES, generate, iter_events


def test_same_seed_same_events_other_seed_other_events():
    assert generate(500, seed=7) == generate(500, seed=7)
    assert generate(500, seed=7) != generate(500, seed=8)


def test_events_are_ecs_shaped_and_labelled():
    events = generate(5000, seed=1)
    families, types, levels = set(), set(), set()
    declared = 0
    for e in events:
        assert isinstance(e["message"], str) and e["message"]
        assert e["@timestamp"].endswith("Z")
        assert e["host.name"] and e["service.name"]
        lab = e["labels"]
        assert lab["level"] in LEVELS
        assert (lab["anomaly_type"] is not None) == lab["is_anomaly"]
        families.add(lab["family"])
        types.add(lab["anomaly_type"])
        levels.add(lab["level"])
        if "log.level" in e:
            declared += 1
            assert normalise(e["log.level"]) == lab["level"]  # declared levels are true, spelled variously
    assert families == set(FAMILIES)
    assert types - {None} == set(ANOMALY_TYPES)
    assert levels == set(LEVELS)
    assert 0.6 < declared / len(events) < 0.95  # sometimes absent


def test_timestamps_increase():
    ts = [e["@timestamp"] for e in generate(2000, seed=2)]
    assert ts == sorted(ts)


def test_values_vary_so_nothing_can_be_memorised():
    msgs = [e["message"] for e in generate(5000, seed=3)]
    assert len(set(msgs)) > 0.9 * len(msgs)


def test_level_is_not_a_function_of_one_keyword():
    # the same words appear at several levels (retries vs giving up, slow vs fast queries ...)
    by_word: dict[str, set] = {}
    for e in generate(20000, seed=4):
        for w in set(e["message"].lower().split()):
            by_word.setdefault(w, set()).add(e["labels"]["level"])
    for word in ("failed", "error", "retrying", "duration:"):
        assert len(by_word[word]) >= 2, word


def test_iterator_is_endless_and_fast_enough():
    it = iter_events(seed=5)
    t0 = time.perf_counter()
    for _ in range(20000):
        next(it)
    # generous bound (the target is >= 50k events/s; this only catches a gross regression)
    assert time.perf_counter() - t0 < 5
