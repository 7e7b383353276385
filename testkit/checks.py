"""Waiting for a group to catch up, and the delivery contract asserted on what it left behind."""

from __future__ import annotations

from testkit.clients import wait_for
from testkit.pipeline import caught_up, committed, end_offsets
from testkit.readback import Expected, Topics, check, read_back


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


def check_delivery(bootstrap, topics, db_url, coords, values, invalid, partitions=6):
    """The at-least-once contract for single-record values, read back by testkit.readback (asserted);
    returns the repeats on the output topic."""
    expected = Expected(
        records={(*coords[i], 0): None for i in range(len(values)) if i not in invalid},
        decode_dead={(*coords[i], 0): values[i] for i in invalid},
    )
    result = read_back(
        bootstrap, db_url, Topics(topics.raw, topics.scored, topics.deadletter, topics.group), expected, partitions
    )
    check(result)
    return result.duplicates_scored
