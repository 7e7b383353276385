"""Read-back checks of the delivery contract, shared by tests (and the chaos drill's style of checking)."""

from __future__ import annotations

from testkit.clients import consume_all, query, wait_for
from testkit.pipeline import caught_up, committed, end_offsets


def wait_caught_up(bootstrap, topics, procs, timeout=120):
    def done():
        for p in procs:
            assert p.alive(), f"streamer exited early:\n{p.output()[-3000:]}"
        return caught_up(bootstrap, topics.group, topics.raw, 6)

    try:
        wait_for(done, timeout=timeout, interval=0.5, what="the group to commit the end of every partition")
    except AssertionError as err:
        logs = "\n".join(
            f"--- member {i}:\n"
            + "\n".join(line for line in p.output().splitlines() if not line.startswith("%"))[-3000:]
            for i, p in enumerate(procs)
        )
        raise AssertionError(
            f"{err}\ncommitted {committed(bootstrap, topics.group, topics.raw, 6)}, "
            f"ends {end_offsets(bootstrap, topics.raw, 6)}\n{logs}"
        ) from None


def check_delivery(bootstrap, topics, db_url, coords, values, invalid):
    """The at-least-once contract, read back from PostgreSQL and both output topics."""
    valid = {coords[i] for i in range(len(values)) if i not in invalid}
    rows = query(db_url, "select kafka_partition, kafka_offset from log_entries where kafka_topic = %s", [topics.raw])
    assert len(rows) == len(set(rows)) == len(valid), "log_entries: wrong number of rows"
    assert set(rows) == valid, "log_entries: lost or extra events"
    preds = query(
        db_url,
        "select kafka_partition, kafka_offset, count(*) from ml_predictions where kafka_topic = %s group by 1, 2",
        [topics.raw],
    )
    assert {(p, o) for p, o, _ in preds} == valid and all(n == 1 for _, _, n in preds)

    scored = consume_all(bootstrap, topics.scored)
    seen = {(int(r.header("source.partition")), int(r.header("source.offset"))) for r in scored}
    assert seen == valid, "logs.scored: lost or extra events"
    for r in scored[:50]:
        body = r.json()["streamer"]
        assert body["source"]["topic"] == topics.raw
        assert body["severity"] in ("critical", "high", "medium", "low") and body["model_version"]

    dead = consume_all(bootstrap, topics.deadletter)
    by_coord = {(int(r.header("source.partition")), int(r.header("source.offset"))): r for r in dead}
    assert set(by_coord) == {coords[i] for i in invalid}, "dead letters: lost or extra"
    for i in invalid:
        r = by_coord[coords[i]]
        assert (r.value or b"") == values[i], "a dead letter lost its original bytes"
        assert r.header("deadletter.error_class") and r.header("deadletter.reason")
        assert r.header("deadletter.stage") == b"decode" and r.header("source.topic") == topics.raw.encode()
    return len(scored) - len(valid)
