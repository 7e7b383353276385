"""What a drill will do, drawn before it starts: its parameters, the workload (valid events, invalid ones of
every kind, messages of several records, poison records) and the point of the stream at which each fault
fires. One seed repeats all of it."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bench import faults
from testkit.workload import workload

PARTITIONS = 6
MAX_BYTES = 16 * 1024 * 1024  # the workload has 2 MiB values; the broker's default limit is 1 MiB
OUTAGES = ("db_down", "broker_down", "slow_db")  # faults left in place for a while, one at a time
SERVER_FAULTS = ("broker", "database", *OUTAGES)
MEMBER_FAULTS = ("kill", "join", "leave")


@dataclass
class Params:
    events: int = 200_000
    invalid_ratio: float = 0.01
    kills: int = 10
    broker_restarts: int = 1
    db_restarts: int = 1
    rebalance: bool = True  # a third member joins, later leaves
    # Outages, each fault left in place this long while the stream goes on (one at a time).
    db_outages: int = 1
    db_outage_seconds: float = 180.0  # PostgreSQL stopped: longer than a member's 60 s start-up wait
    broker_outages: int = 1
    broker_outage_seconds: float = 60.0  # broker stopped: beyond the members' 6 s session timeout (and 45 s)
    slow_db: int = 1
    slow_db_seconds: float = 30.0
    slow_db_latency: float = 0.5  # s added to every chunk each way: a batch's store takes seconds, not ~50 ms
    poison_every: int = 1000  # one poison record (faults.POISON_KINDS in turn) per this many events; 0: none
    seed: int | None = None  # None: drawn at random and reported, so a run can be repeated
    # A steady stream rather than one burst: the group drains a burst in seconds and every fault would land
    # after the work. 2,000/s is about a third of what two members handle on 2 cores, so backlogs built up
    # during a fault are drained under load. The producer also stays at most max_lag records ahead.
    rate: float = 2_000.0  # records/s produced at most; 0 = no limit
    max_lag: int = 20_000
    timeout: float = 3600.0  # for the whole drill
    stall_timeout: float = 120.0  # records waiting and no commit for this long: the group is stuck
    bootstrap: str | None = None  # default: STREAMER_BOOTSTRAP_SERVERS or streamer's own default
    database_url: str | None = None  # default: STREAMER_DATABASE_URL or streamer's own default
    keep: bool = False  # keep topics, schema and logs even when the drill passes


@dataclass
class Fault:
    at: float  # fraction of the events produced when it fires
    kind: str  # kill | broker | database | join | leave | db_down | broker_down | slow_db
    fired_s: float | None = None  # seconds into the drill
    produced: int | None = None  # records produced when it fired
    progress: int | None = None  # records the group had committed when it fired
    detail: str = ""
    took_s: float | None = None  # how long the fault itself took (restarts)
    caught_up_s: float | None = None  # from firing until every record acknowledged before it was committed
    ends: dict | None = None  # partition -> acknowledged end offset when it fired


@dataclass
class Workload:
    values: list[bytes]
    keys: list
    invalid: set[int]  # indexes of the values the decoder must dead-letter
    poison: dict[int, str]  # index -> poison kind (faults.POISON_KINDS), decode- and store-stage ones

    @property
    def stored_poison(self) -> int:
        """Poison records that decode and that the database refuses."""
        return sum(k in faults.STORE_POISON for k in self.poison.values())


def drill_workload(p: Params, seed: int) -> Workload:
    values, keys, invalid = workload(p.events, p.invalid_ratio, seed=seed)
    with_multi_record_messages(values, invalid)
    poison = faults.with_poison(values, invalid, p.poison_every, random.Random(seed + 1))
    return Workload(values, keys, invalid, poison)


def with_multi_record_messages(values: list[bytes], invalid: set[int], every: int = 20) -> None:
    """Every `every`-th valid JSON event becomes a message of two records, NDJSON or a JSON array in turn,
    the second record being the next value (so its content is known and stays distinct)."""
    for n, i in enumerate(range(0, len(values) - 1, every)):
        first, second = values[i], values[i + 1]
        if i in invalid or i + 1 in invalid or not (first.startswith(b"{") and second.startswith(b"{")):
            continue
        values[i] = first + b"\n" + second if n % 2 else b"[" + first + b"," + second + b"]"


def schedule(p: Params, r: random.Random) -> list[Fault]:
    """The faults in the order they fire, each at a random point of the stream."""
    planned = [Fault(r.uniform(0.03, 0.85), "kill") for _ in range(p.kills)]
    planned += [Fault(r.uniform(0.15, 0.75), "broker") for _ in range(p.broker_restarts)]
    planned += [Fault(r.uniform(0.15, 0.75), "database") for _ in range(p.db_restarts)]
    planned += [Fault(r.uniform(0.15, 0.75), "db_down") for _ in range(p.db_outages)]
    planned += [Fault(r.uniform(0.15, 0.75), "broker_down") for _ in range(p.broker_outages)]
    planned += [Fault(r.uniform(0.15, 0.75), "slow_db") for _ in range(p.slow_db)]
    if p.rebalance:
        join = r.uniform(0.05, 0.45)
        planned += [Fault(join, "join"), Fault(join + r.uniform(0.1, 0.3), "leave")]
    return sorted(planned, key=lambda f: f.at)
