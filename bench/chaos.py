"""`make chaos`: fault injection against the real stack, with figures.

Produces N events (about 1 % invalid, every kind in testkit.workload, plus poison records of every class in
bench.faults.POISON_KINDS) into fresh topics, as a steady stream, while two `streamer run` processes consume
them as one group, and meanwhile SIGKILLs a member at random moments (and restarts it), restarts the Kafka
broker, restarts PostgreSQL, adds a third member and removes it again, stops PostgreSQL for minutes, stops the
broker for longer than the session timeout, and slows the database down (a proxy adding latency). Each fault
fires when production passes a randomly drawn point (between 3 % and 85 % of the events), so faults land while
the stream flows; outages (one at a time) last their configured time. Then everything is read back:

- every valid input (topic, partition, offset) is in log_entries exactly once, and in ml_predictions exactly
  once for the model version;
- every invalid input is on the dead-letter topic with its original bytes (or, refused whole by the topic,
  truncated with its size and sha256); every poison record the database refuses, as a store-stage one;
- logs.scored holds every valid input at least once (duplicates are counted: at least once allows them);
- the group's committed offsets reach the end of every partition, and no running member is stuck (out of
  the group, or holding a partition that does not progress).

Prints a table, writes bench/results/chaos.json and chaos.md, and exits 1 on any loss or duplicate row.

    .venv/bin/python bench/chaos.py [--events N] [--kills K] [--seed S] ...     (`make chaos`: the defaults)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import faults
from streamer.config import Settings
from testkit.clients import consume_all, query, with_search_path
from testkit.pipeline import MODELS, StreamerProcess, committed, end_offsets
from testkit.workload import workload

RESULTS = ROOT / "bench" / "results"
PARTITIONS = 6
MAX_BYTES = 16 * 1024 * 1024  # the workload has 2 MiB values; the broker's default limit is 1 MiB
BASE_MEMBERS = ("a", "b")
EXTRA_MEMBER = "c"
OUTAGES = ("db_down", "broker_down", "slow_db")  # faults left in place for a while, one at a time
CRASH_LOOP = 4  # a member exiting this often with no progress in between ends the drill


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
    bootstrap: str | None = None  # default: STREAMER_BOOTSTRAP_SERVERS or 127.0.0.1:9092
    database_url: str | None = None  # default: STREAMER_DATABASE_URL or the make up database
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
class Result:
    params: dict
    run_id: str
    topics: dict
    model_version: str
    events: int = 0
    valid: int = 0
    invalid: int = 0
    kills: int = 0
    broker_restarts: int = 0
    db_restarts: int = 0
    members_added: int = 0
    members_removed: int = 0
    db_outages: int = 0
    broker_outages: int = 0
    slow_db_windows: int = 0
    poison: dict = field(default_factory=dict)  # kind -> records in the flow
    poison_dead_lettered: dict = field(default_factory=dict)  # kind -> found where it belongs on the DLQ
    truncated_dead_letters: int = 0  # dead letters the DLQ refused whole: value cut, size and sha256 kept
    stuck_members: int = 0  # running members not consuming: out of the group, or holding partitions behind
    unexpected_exits: int = 0
    lost_log_entries: int = 0
    lost_predictions: int = 0
    lost_scored: int = 0
    lost_dead_letters: int = 0  # invalid inputs missing on the dead-letter topic or without their bytes
    duplicate_rows: int = 0  # log_entries + ml_predictions rows beyond one per input
    extra_rows: int = 0  # rows for coordinates that are not valid inputs
    duplicates_scored: int = 0
    extra_scored: int = 0
    duplicates_dead_letters: int = 0
    dead_letters: int = 0  # distinct inputs on the dead-letter topic
    rejected_by_database: int = 0  # valid inputs dead-lettered by the store stage
    # Content, not just coordinates: a batch merged or trimmed wrongly under faults would pair an event with
    # another event's scores. Each row/record is compared with the input decoded and scored afresh.
    wrong_rows: int = 0  # log_entries.message differs from the input's
    wrong_predictions: int = 0  # ml_predictions differ from scoring the input again
    wrong_scored: int = 0  # logs.scored records whose event or scores differ
    committed_at_end: bool = False
    wall_seconds: float = 0.0  # first member started .. the group committed the end
    verify_seconds: float = 0.0  # reading everything back
    produce_seconds: float = 0.0
    timeline: list = field(default_factory=list)
    exits: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    code: dict = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.lost_log_entries + self.lost_predictions + self.lost_scored + self.lost_dead_letters

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.duplicate_rows == 0
            and self.extra_rows == 0
            and self.extra_scored == 0
            and self.stuck_members == 0
            and self.wrong_rows == 0
            and self.wrong_predictions == 0
            and self.wrong_scored == 0
            and self.committed_at_end
            and not self.problems
        )

    def to_json(self) -> dict:
        return {**asdict(self), "lost": self.lost, "ok": self.ok}


class Feeder(threading.Thread):
    """Produces the workload in order, at most `max_lag` records ahead of the group's commits (and at most
    `rate` per second), so production overlaps the whole drill. Remembers where each record landed."""

    def __init__(self, kafka_config: dict, topic: str, values: list[bytes], keys: list, max_lag: int, rate: float):
        super().__init__(daemon=True, name="chaos-feeder")
        self.kafka_config, self.topic, self.values, self.keys = kafka_config, topic, values, keys
        self.max_lag, self.rate = max_lag, rate
        self.coords: list[tuple[int, int] | None] = [None] * len(values)
        self.acked_ends: dict[int, int] = {}  # partition -> last acknowledged offset + 1
        self.errors: list[str] = []
        self.committed = 0  # records the group has committed; the controller keeps it current
        self.produced = 0
        self.failure: str | None = None
        self.seconds = 0.0
        self.abort = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._produce()
        except Exception as err:  # reported as a drill problem, never swallowed
            self.failure = f"{type(err).__name__}: {err}"
        finally:
            self.seconds = time.monotonic() - started
            self.done.set()

    def _delivered(self, i: int, err, msg) -> None:
        if err is not None:
            self.errors.append(f"record {i}: {err.str()}")
        else:
            p, o = msg.partition(), msg.offset()
            self.coords[i] = (p, o)
            if o >= self.acked_ends.get(p, 0):
                self.acked_ends[p] = o + 1

    def _produce(self) -> None:
        from confluent_kafka import Producer

        # Idempotent, with a long delivery timeout: the producer rides out the broker restart without
        # duplicating or reordering, so the delivery reports are the ground truth of what was written.
        producer = Producer(
            {
                **self.kafka_config,
                "enable.idempotence": True,
                "linger.ms": 20,
                "compression.type": "lz4",
                "message.max.bytes": MAX_BYTES,
                "message.timeout.ms": 600_000,
                "log_level": 0,
            }
        )
        started = time.monotonic()
        for i, (value, key) in enumerate(zip(self.values, self.keys)):
            while i - self.committed >= self.max_lag or (self.rate and time.monotonic() < started + i / self.rate):
                if self.abort.is_set():
                    return
                producer.poll(0.05)
            while True:
                try:
                    producer.produce(self.topic, value, key, on_delivery=partial(self._delivered, i))
                    break
                except BufferError:
                    producer.poll(0.1)
            self.produced = i + 1
            producer.poll(0)
        left = producer.flush(600)
        if left:
            self.failure = f"{left} records not acknowledged by Kafka within 600s"


class Probe:
    """Reads the group's committed offsets without joining it; quiet and tolerant while the broker is away."""

    def __init__(self, kafka_config: dict, group: str, topic: str):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({**kafka_config, "group.id": group, "enable.auto.commit": False, "log_level": 0})
        self.partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def committed(self) -> dict[int, int] | None:
        from confluent_kafka import KafkaException

        try:
            got = self.consumer.committed(self.partitions, timeout=5)
        except KafkaException:
            return None
        return {tp.partition: max(tp.offset, 0) for tp in got}

    def close(self) -> None:
        self.consumer.close()


class Drill:
    def __init__(self, p: Params, log=print):
        from streamer.ml.artifacts import read_metadata

        self.p = p
        self.log = log
        self.seed = p.seed if p.seed is not None else random.SystemRandom().randrange(1, 10**6)
        self.rng = random.Random(self.seed)
        defaults = Settings()  # the servers streamer itself defaults to
        self.bootstrap = p.bootstrap or os.environ.get("STREAMER_BOOTSTRAP_SERVERS") or defaults.bootstrap_servers
        self.base_url = p.database_url or os.environ.get("STREAMER_DATABASE_URL") or defaults.database_url
        self.kafka = {"bootstrap.servers": self.bootstrap}
        self.run_id = f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        base = f"chaos-{self.run_id}"
        self.topics = {
            "raw": f"{base}.raw",
            "scored": f"{base}.scored",
            "deadletter": f"{base}.deadletter",
            "group": f"g-{base}",
        }
        self.schema = f"chaos_{self.run_id.replace('-', '_')}"
        self.db_url = with_search_path(self.base_url, self.schema)
        self.run_dir = RESULTS / "tmp" / base  # git-ignored: the members' logs
        self.model_version = read_metadata(MODELS)["model_version"]
        self.members: dict[str, StreamerProcess | None] = {}
        self.feeder: Feeder | None = None
        self.generation = Counter()
        self.proxy: faults.SlowProxy | None = None  # members reach PostgreSQL through it when slow_db
        self.outage: tuple[Fault, float, object] | None = None  # under way: the fault, when it ends, how
        self.poison: dict[int, str] = {}  # value index -> poison kind
        self.started = time.monotonic()
        self.result = Result(
            params={**asdict(p), "seed": self.seed},
            run_id=self.run_id,
            topics=self.topics,
            model_version=self.model_version,
            code=_code_state(),
        )

    # --- set-up ---------------------------------------------------------------------------------------

    def check_faults(self) -> None:
        """Refuse before starting when a requested fault cannot be injected on this machine."""
        if self.p.broker_restarts or self.p.broker_outages:
            faults.check_broker()
        if self.p.db_restarts or self.p.db_outages:
            faults.database_cluster(self.base_url)

    def set_up(self) -> None:
        from streamer.db import connect
        from streamer.db.migrations import migrate
        from streamer.kafka_admin import ensure_topics

        t = self.topics
        ensure_topics(
            self.kafka,
            {t["raw"]: PARTITIONS, t["scored"]: PARTITIONS},
            topic_config={"max.message.bytes": str(MAX_BYTES)},
        )
        # With poison: the broker's default limit, so the oversized ones are refused whole and sent truncated.
        dlq_limit = faults.DLQ_LIMIT_BYTES if self.p.poison_every else MAX_BYTES
        ensure_topics(self.kafka, {t["deadletter"]: 1}, topic_config={"max.message.bytes": str(dlq_limit)})
        if self.p.slow_db:
            from urllib.parse import urlsplit

            target = urlsplit(self.db_url)
            self.proxy = faults.SlowProxy(target.hostname, target.port or 5432)
        query(self.base_url, f'CREATE SCHEMA "{self.schema}"')
        with connect(self.db_url) as conn:
            migrate(conn)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "STREAMER_METRICS_PORT"}  # members can't share a port
        db_url = self.db_url
        if self.proxy is not None:
            from urllib.parse import urlsplit

            server = urlsplit(db_url).netloc.rsplit("@", 1)[-1]
            db_url = db_url.replace(server, f"127.0.0.1:{self.proxy.port}", 1)
        env.update(
            {
                "STREAMER_BOOTSTRAP_SERVERS": self.bootstrap,
                "STREAMER_DATABASE_URL": db_url,
                "STREAMER_INPUT_TOPIC": self.topics["raw"],
                "STREAMER_OUTPUT_TOPIC": self.topics["scored"],
                "STREAMER_DLQ_TOPIC": self.topics["deadletter"],
                "STREAMER_GROUP_ID": self.topics["group"],
            }
        )
        return env

    def start_member(self, name: str) -> StreamerProcess:
        self.generation[name] += 1
        proc = StreamerProcess(self.env(), self.run_dir / f"{name}-{self.generation[name]}.log")
        self.members[name] = proc
        return proc

    def schedule(self) -> list[Fault]:
        r, p = self.rng, self.p
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

    # --- the drill ------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str, done: int | None = None) -> None:
        where = ""
        if done is not None and self.result.events:
            n = self.result.events
            where = f" produced {self.feeder.produced / n:4.0%} committed {done / n:4.0%}"
        self.log(f"chaos [{self.elapsed():7.1f}s{where}] {text}")

    def run(self) -> Result:
        p, res = self.p, self.result
        self.check_faults()
        self.say(f"seed {self.seed}: generating {p.events:,} events ({p.invalid_ratio:.1%} invalid)")
        values, keys, invalid = workload(p.events, p.invalid_ratio, seed=self.seed)
        with_multi_record_messages(values, invalid)
        self.poison = faults.with_poison(values, invalid, p.poison_every, random.Random(self.seed + 1))
        res.poison = dict(Counter(self.poison.values()))
        stored_poison = sum(k in faults.STORE_POISON for k in self.poison.values())
        res.events, res.invalid = len(values), len(invalid)
        res.valid = len(values) - len(invalid) - stored_poison
        self.set_up()
        self.say(
            f"topics {self.topics['raw']} (+ .scored, .deadletter), schema {self.schema}, "
            f"logs in {self.run_dir.relative_to(ROOT)}"
        )
        plan = self.schedule()
        self.say("plan: " + ", ".join(f"{f.kind}@{f.at:.0%}" for f in plan))
        self.started = time.monotonic()
        for name in BASE_MEMBERS:
            self.start_member(name)
        feeder = self.feeder = Feeder(self.kafka, self.topics["raw"], values, keys, p.max_lag, p.rate)
        feeder.start()
        probe = Probe(self.kafka, self.topics["group"], self.topics["raw"])
        try:
            self.control(feeder, probe, plan)
        finally:
            if self.outage is not None:  # the drill ended early: put the stack back before anything else
                self.end_outage()
            feeder.abort.set()
            feeder.join(30)
            probe.close()
            self.stop_members()
            if self.proxy is not None:
                self.proxy.close()
        res.produce_seconds = round(feeder.seconds, 1)
        res.wall_seconds = round(self.elapsed(), 1)
        res.timeline = [asdict(f) for f in plan]
        if feeder.failure or feeder.errors:
            res.problems.append(
                f"producer: {feeder.failure or ''} {len(feeder.errors)} delivery errors {feeder.errors[:3]}".strip()
            )
        if any(c is None for c in feeder.coords):
            res.problems.append(f"{sum(c is None for c in feeder.coords)} records were never acknowledged")
        self.say("reading everything back")
        started = time.monotonic()
        try:
            self.verify(values, invalid, feeder.coords)
        except Exception as err:  # a broker or database that did not come back: say so, keep the figures
            res.problems.append(f"read-back failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
        res.verify_seconds = round(time.monotonic() - started, 1)
        return res

    def control(self, feeder: Feeder, probe: Probe, plan: list[Fault]) -> None:
        res, p = self.result, self.p
        todo = list(plan)
        restarts: list[tuple[float, str]] = []  # (monotonic time, member) to start again
        watching: list[Fault] = []  # faults whose earlier records are not all committed yet
        crashes: Counter = Counter()  # exits by themselves since the group last committed more
        done_count = 0
        progressed_at = time.monotonic()
        deadline = self.started + p.timeout
        while True:
            offsets = probe.committed()
            if offsets is not None:
                if sum(offsets.values()) > done_count:
                    crashes.clear()
                    progressed_at = time.monotonic()
                done_count = sum(offsets.values())
                feeder.committed = done_count
                for f in list(watching):
                    if all(offsets.get(q, 0) >= e for q, e in f.ends.items()):
                        f.caught_up_s = round(self.elapsed() - f.fired_s, 1)
                        watching.remove(f)

            for name, proc in list(self.members.items()):
                if proc is not None and not proc.alive():  # killed/removed members are None
                    code = proc.proc.returncode
                    tail = " | ".join(proc.output().strip().splitlines()[-3:])[-600:]
                    res.unexpected_exits += 1
                    res.exits.append(
                        {
                            "member": name,
                            "code": code,
                            "at_s": round(self.elapsed(), 1),
                            "log": str(proc.log_path.relative_to(ROOT)),
                            "last_lines": tail,
                        }
                    )
                    self.say(f"member {name} exited by itself with code {code}: {tail}", done_count)
                    proc.close()
                    self.members[name] = None
                    if not (self.outage and self.outage[0].kind == "db_down"):  # start-up gives up after 60 s
                        crashes[name] += 1
                    if crashes[name] >= CRASH_LOOP:
                        res.problems.append(
                            f"member {name} exited by itself {CRASH_LOOP} times without the "
                            f"group making progress; last lines: {tail}"
                        )
                        return
                    if name in BASE_MEMBERS:
                        restarts.append((time.monotonic() + 1.0, name))
            for when, name in list(restarts):
                if time.monotonic() >= when:
                    restarts.remove((when, name))
                    self.start_member(name)
                    self.say(f"started {name} again (generation {self.generation[name]})", done_count)

            if self.outage is not None and time.monotonic() >= self.outage[1]:
                try:
                    self.end_outage()
                except faults.FaultFailed as err:
                    res.problems.append(f"{err}")
                    return
                progressed_at = time.monotonic()  # the stall clock starts when the fault is over
            if todo and feeder.produced >= todo[0].at * res.events:  # one per round: points can bunch up
                try:
                    fired = self.fire(todo[0], done_count, restarts)
                except faults.FaultFailed as err:
                    res.problems.append(f"{todo[0].kind} fault: {err}")
                    return
                if fired:
                    watching.append(todo.pop(0))

            if feeder.done.is_set() and not todo and not restarts and self.outage is None:
                ends = dict(feeder.acked_ends)
                if offsets is not None and all(offsets.get(q, 0) >= e for q, e in ends.items()):
                    self.say("the group committed the end of every partition", done_count)
                    res.stuck_members = self.stuck_members(offsets, ends)
                    return
            if feeder.failure:
                res.problems.append(f"producer failed: {feeder.failure}")
                return
            if (
                self.outage is None
                and feeder.produced > done_count
                and time.monotonic() - progressed_at > p.stall_timeout
            ):
                behind = {
                    q: f"{offsets.get(q, 0)}/{e}"
                    for q, e in dict(feeder.acked_ends).items()
                    if offsets is not None and offsets.get(q, 0) < e
                }
                if offsets is not None:
                    res.stuck_members = self.stuck_members(offsets, dict(feeder.acked_ends))
                res.problems.append(
                    f"stalled: no commit for {p.stall_timeout:.0f}s with "
                    f"{feeder.produced - done_count:,} records waiting; partitions behind "
                    f"(committed/end): {behind}; see the members' logs"
                )
                return
            if time.monotonic() > deadline:
                res.problems.append(
                    f"timed out after {p.timeout:.0f}s with {done_count:,} of {res.events:,} "
                    f"records committed ({len(todo)} faults not fired)"
                )
                return
            time.sleep(0.5)

    def fire(self, f: Fault, done_count: int, restarts: list) -> bool:
        """Inject fault f; False when it has to wait (a kill while no member is running)."""
        res, p = self.result, self.p
        alive = [n for n in BASE_MEMBERS if self.members.get(n) is not None and self.members[n].alive()]
        if f.kind == "kill" and not alive:
            return False
        if f.kind in (*OUTAGES, "broker", "database") and self.outage is not None:
            return False  # one server fault at a time (a restart of a stopped server cannot work)
        f.fired_s, f.progress = round(self.elapsed(), 1), done_count
        f.produced = self.feeder.produced
        f.ends = dict(self.feeder.acked_ends)
        started = time.monotonic()
        if f.kind == "kill":
            victim = self.rng.choice(alive)
            proc = self.members[victim]
            pid = proc.proc.pid
            proc.kill()
            proc.close()
            self.members[victim] = None
            delay = self.rng.uniform(0.5, 3.0)
            restarts.append((time.monotonic() + delay, victim))
            res.kills += 1
            f.detail = f"SIGKILL {victim} (pid {pid}), restart in {delay:.1f}s"
        elif f.kind == "broker":
            f.took_s = round(faults.restart_broker(), 1)
            res.broker_restarts += 1
            f.detail = f"broker stopped and started again in {f.took_s}s"
        elif f.kind == "database":
            f.took_s = round(faults.restart_database(self.base_url), 1)
            res.db_restarts += 1
            f.detail = f"pg_ctlcluster restart, accepting connections again after {f.took_s}s"
        elif f.kind == "db_down":
            cluster = faults.stop_database(self.base_url)
            self.outage = (
                f,
                time.monotonic() + p.db_outage_seconds,
                lambda: faults.start_database(self.base_url, cluster),
            )
            res.db_outages += 1
            f.detail = f"PostgreSQL stopped (pg_ctlcluster stop -m fast) for {p.db_outage_seconds:g}s"
        elif f.kind == "broker_down":
            faults.stop_broker()
            self.outage = (f, time.monotonic() + p.broker_outage_seconds, faults.start_broker)
            res.broker_outages += 1
            f.detail = f"broker stopped (kafka.sh down) for {p.broker_outage_seconds:g}s"
        elif f.kind == "slow_db":
            self.proxy.delay = p.slow_db_latency
            self.outage = (f, time.monotonic() + p.slow_db_seconds, lambda: setattr(self.proxy, "delay", 0.0))
            res.slow_db_windows += 1
            f.detail = f"database {p.slow_db_latency:g}s slower per chunk each way for {p.slow_db_seconds:g}s"
        elif f.kind == "join":
            self.start_member(EXTRA_MEMBER)
            res.members_added += 1
            f.detail = f"third member {EXTRA_MEMBER} started"
        elif f.kind == "leave":
            proc = self.members.get(EXTRA_MEMBER)
            if proc is None or not proc.alive():
                f.detail = f"{EXTRA_MEMBER} was not running"
            else:
                try:
                    code = proc.terminate()
                except AssertionError as err:  # never became ready
                    code = f"not ready: {str(err).splitlines()[0]}"
                proc.close()
                self.members[EXTRA_MEMBER] = None
                res.members_removed += 1
                f.detail = f"SIGTERM {EXTRA_MEMBER}: exited {code}"
        if f.took_s is None and f.kind not in ("kill", *OUTAGES):
            f.took_s = round(time.monotonic() - started, 1)
        self.say(f"{f.kind}: {f.detail}", done_count)
        return True

    def end_outage(self) -> None:
        """Undo the outage under way (start the server again, take the latency away)."""
        f, _, end = self.outage
        self.outage = None
        end()
        f.took_s = round(self.elapsed() - f.fired_s, 1)  # from the fault to the service being back
        self.say(f"{f.kind} over after {f.took_s}s")

    def stuck_members(self, offsets: dict[int, int], ends: dict[int, int]) -> int:
        """Running members that do not consume: not in the group, or holding a partition whose commits are
        behind. Read from the group coordinator, which knows who holds what."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({**self.kafka, "log_level": 0})
        settle = time.monotonic() + 30  # a member restarted a moment ago may not have joined yet
        while True:
            running = sum(1 for m in self.members.values() if m is not None and m.alive())
            try:
                group = admin.describe_consumer_groups([self.topics["group"]])[self.topics["group"]].result(30)
            except Exception as err:  # a broker away: say so rather than guess
                self.result.problems.append(f"cannot describe the group to count stuck members: {err}")
                return 0
            behind = sum(
                1
                for m in group.members
                if any(offsets.get(tp.partition, 0) < ends.get(tp.partition, 0) for tp in m.assignment.topic_partitions)
            )
            stuck = max(0, running - len(group.members)) + behind
            if not stuck or time.monotonic() > settle:
                return stuck
            time.sleep(1.0)

    def stop_members(self) -> None:
        running = {n: p for n, p in self.members.items() if p is not None}
        for proc in running.values():  # SIGTERM to all first: they shut down in parallel
            if proc.alive():
                try:
                    proc.wait_ready()
                except AssertionError:
                    pass
                proc.proc.send_signal(signal.SIGTERM)
        for name, proc in running.items():
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                code = "still running 60s after SIGTERM"
            self.result.exits.append(
                {
                    "member": name,
                    "code": code,
                    "at_s": round(self.elapsed(), 1),
                    "log": str(proc.log_path.relative_to(ROOT)),
                    "final": True,
                }
            )
            proc.close()

    # --- read back ------------------------------------------------------------------------------------

    def verify(self, values: list[bytes], invalid: set[int], coords: list) -> None:
        res, t = self.result, self.topics
        index = {c: i for i, c in enumerate(coords) if c is not None}
        # Keys are records, (partition, offset, record_index): a message may hold several.
        refused = {
            (*coords[i], 0): kind
            for i, kind in self.poison.items()  # by the database
            if kind in faults.STORE_POISON and coords[i] is not None
        }
        sent = {c for i, c in enumerate(coords) if c is not None and i not in invalid and (*c, 0) not in refused}
        bad = {(*c, 0) for i, c in enumerate(coords) if c is not None and i in invalid}

        ends = end_offsets(self.bootstrap, t["raw"], PARTITIONS)
        if sum(ends.values()) != len(index):
            res.problems.append(f"the input topic holds {sum(ends.values())} records, the producer wrote {len(index)}")
        done = committed(self.bootstrap, t["group"], t["raw"], PARTITIONS)
        res.committed_at_end = all(done.get(q, -1) >= e for q, e in ends.items())

        expected = self.expected(values, coords, sent)
        valid = set(expected)
        entries = query(
            self.db_url,
            "SELECT kafka_partition, kafka_offset, record_index, message FROM log_entries WHERE kafka_topic = %s",
            [t["raw"]],
        )
        rows = Counter((q, o, r) for q, o, r, _ in entries)
        res.wrong_rows = sum(1 for q, o, r, m in entries if (q, o, r) in expected and m != expected[(q, o, r)][0])
        predictions = query(
            self.db_url,
            "SELECT kafka_partition, kafka_offset, record_index, model_version, "
            "predicted_level, severity, anomaly_score FROM ml_predictions "
            "WHERE kafka_topic = %s",
            [t["raw"]],
        )
        preds = Counter((q, o, r) for q, o, r, v, *_ in predictions if v == self.model_version)
        res.wrong_predictions = sum(
            1
            for q, o, r, v, *scores in predictions
            if (q, o, r) in expected and not _same_scores(scores, expected[(q, o, r)][1:])
        )
        del entries, predictions
        other_versions = query(
            self.db_url, "SELECT count(*) FROM ml_predictions WHERE model_version <> %s", [self.model_version]
        )[0][0]
        res.lost_log_entries = len(valid - rows.keys())
        res.lost_predictions = len(valid - preds.keys())
        res.duplicate_rows = sum(n - 1 for n in rows.values()) + sum(n - 1 for n in preds.values())
        res.extra_rows = len(rows.keys() - valid) + len(preds.keys() - valid) + other_versions

        scored: Counter = Counter()
        for r in consume_all(self.bootstrap, t["scored"], timeout=900):
            c = _source(r)
            scored[c] += 1
            if c in expected:
                body = orjson.loads(r.value)
                mine = body.pop("streamer", {})
                want = expected[c]
                if (
                    mine.get("source", {}).get("offset") != c[1]
                    or body != want[4]
                    or not _same_scores(
                        (mine.get("predicted_level"), mine.get("severity"), mine.get("anomaly_score")), want[1:4]
                    )
                ):
                    res.wrong_scored += 1
        res.lost_scored = len(valid - scored.keys())
        res.duplicates_scored = sum(n - 1 for n in scored.values())
        res.extra_scored = len(scored.keys() - valid)

        dead = consume_all(self.bootstrap, t["deadletter"], timeout=900)
        seen: Counter = Counter()
        intact: set = set()
        truncated: set = set()
        for r in dead:
            c = _source(r)
            seen[c] += 1
            if c in bad and r.header("deadletter.stage") == b"decode" and _same_value(r, values[index[c[:2]]]):
                intact.add(c)
                if r.header("deadletter.truncated") == b"true":
                    truncated.add(c)
            elif (
                c in refused
                and r.header("deadletter.stage") == b"store"
                and (r.header("deadletter.error_class") or b"").startswith(b"db_")
            ):
                intact.add(c)
        res.dead_letters = len(seen)
        res.truncated_dead_letters = len(truncated)
        res.duplicates_dead_letters = sum(n - 1 for n in seen.values())
        res.lost_dead_letters = len((bad | refused.keys()) - intact)
        res.rejected_by_database = len(seen.keys() & (valid | refused.keys()))
        kinds = {(*coords[i], 0): kind for i, kind in self.poison.items() if coords[i] is not None}
        res.poison_dead_lettered = dict(Counter(kinds[c] for c in intact if c in kinds))
        if res.lost_dead_letters:
            missing = sorted((bad | refused.keys()) - intact)[:5]
            res.problems.append(
                f"dead letters missing or altered for {res.lost_dead_letters} invalid inputs, "
                f"e.g. {missing} ({', '.join(_kind(values[index[c[:2]]]) for c in missing)})"
            )

    def expected(self, values: list[bytes], coords: list, sent: set) -> dict:
        """(partition, offset, record_index) -> (message, predicted_level, severity, anomaly_score, event
        without `streamer`) for every record of the valid inputs, decoded and scored here as the members do."""
        from streamer.config import Settings
        from streamer.decode import Decoder, Event
        from streamer.ml.scorer import MIN_ANOMALY_FAMILIARITY, Scorer

        defaults = Settings()
        decoder = Decoder(max_message_bytes=defaults.max_message_bytes, message_fields=defaults.message_field_names())
        scorer = Scorer.load(MODELS)
        events = []
        for i, c in enumerate(coords):
            if c in sent:
                decoded = decoder.decode(values[i], topic=self.topics["raw"], partition=c[0], offset=c[1])
                events += [d for d in (decoded if isinstance(decoded, list) else [decoded]) if isinstance(d, Event)]
        out = {}
        for start in range(0, len(events), 20_000):
            chunk = events[start : start + 20_000]
            cols = scorer.score([e.message for e in chunk], [e.level for e in chunk])
            scores = cols.anomaly_score.tolist()
            # Below the familiarity gate the anomaly score comes from counts each member learns from what it
            # scored itself (kills and rebalances change that history), so only the level is reproducible.
            learnt = (cols.familiarity < MIN_ANOMALY_FAMILIARITY).tolist()
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

    def clean_up(self) -> None:
        from streamer.kafka_admin import delete_topics

        delete_topics(self.kafka, [self.topics[k] for k in ("raw", "scored", "deadletter")])
        query(self.base_url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _source(record) -> tuple[int, int, int]:
    return (
        int(record.header("source.partition")),
        int(record.header("source.offset")),
        int(record.header("source.record_index") or 0),
    )


def with_multi_record_messages(values: list[bytes], invalid: set[int], every: int = 20) -> None:
    """Every `every`-th valid JSON event becomes a message of two records, NDJSON or a JSON array in turn,
    the second record being the next value (so its content is known and stays distinct)."""
    for n, i in enumerate(range(0, len(values) - 1, every)):
        first, second = values[i], values[i + 1]
        if i in invalid or i + 1 in invalid or not (first.startswith(b"{") and second.startswith(b"{")):
            continue
        values[i] = first + b"\n" + second if n % 2 else b"[" + first + b"," + second + b"]"


def _same_value(record, original: bytes) -> bool:
    """The dead letter carries the original bytes, or — refused whole by the topic — their first bytes with
    the original's size and sha256 in its headers."""
    import hashlib

    value = record.value or b""
    if record.header("deadletter.truncated") != b"true":
        return value == original
    return (
        original.startswith(value)
        and record.header("deadletter.original_size") == b"%d" % len(original)
        and record.header("deadletter.original_sha256") == hashlib.sha256(original).hexdigest().encode()
    )


def _same_scores(got, want) -> bool:
    """(predicted_level, severity, anomaly_score): labels equal, score equal to the 4 places logs.scored keeps."""
    level, sev, score = got
    if want[2] is None:  # learnt from the member's own stream (see expected()): the level only
        return level == want[0] and sev is not None and score is not None
    return level == want[0] and sev == want[1] and score is not None and abs(score - want[2]) <= 1e-4


def _kind(value: bytes) -> str:
    return f"{len(value)} bytes starting {value[:20]!r}"


def _code_state() -> dict:
    """The commit the drill ran, and whether the pipeline's files had uncommitted changes."""

    def git(*args) -> list[str]:
        try:
            out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [line.strip() for line in out.splitlines() if line.strip()]

    return {
        "commit": "".join(git("rev-parse", "--short", "HEAD")),
        "uncommitted": git("status", "--porcelain", "--", "streamer"),
    }


def run_drill(p: Params, log=print) -> Result:
    """The drill with parameters p; cleans up after a pass unless p.keep (a failure keeps everything)."""
    drill = Drill(p, log)
    result = drill.run()
    if result.ok and not p.keep:
        drill.clean_up()
    else:
        log(
            f"chaos: kept topics {drill.topics['raw']} (+ .scored, .deadletter), group {drill.topics['group']}, "
            f"schema {drill.schema}, logs {drill.run_dir.relative_to(ROOT)}"
        )
    return result


# --- report -----------------------------------------------------------------------------------------------


def table(r: Result) -> list[tuple[str, str]]:
    p = {**asdict(Params()), **r.params}  # results written before a parameter existed have its default
    finals = [e for e in r.exits if e.get("final")]
    restarts = f"broker {r.broker_restarts}, PostgreSQL {r.db_restarts}"
    return [
        ("events", f"{r.events:,} ({r.valid:,} valid, {r.invalid:,} invalid)"),
        ("SIGKILLs (member restarted)", f"{r.kills}"),
        ("restarts", restarts),
        ("rebalances", f"member added {r.members_added}, removed {r.members_removed}"),
        (
            "outages",
            f"PostgreSQL down {r.db_outages} × {p['db_outage_seconds']:g} s, broker down "
            f"{r.broker_outages} × {p['broker_outage_seconds']:g} s, slow database {r.slow_db_windows} × "
            f"{p['slow_db_seconds']:g} s (+{p['slow_db_latency']:g} s per chunk each way)",
        ),
        (
            "poison records (dead-lettered where they belong)",
            ", ".join(f"{k} {r.poison_dead_lettered.get(k, 0)}/{n}" for k, n in sorted(r.poison.items())) or "none",
        ),
        ("stuck members", f"{r.stuck_members}"),
        ("unexpected member exits", f"{r.unexpected_exits}"),
        ("clean stops at the end (SIGTERM, exit 0)", f"{sum(e['code'] == 0 for e in finals)} of {len(finals)}"),
        (
            "lost",
            f"{r.lost} (log_entries {r.lost_log_entries}, ml_predictions {r.lost_predictions}, "
            f"logs.scored {r.lost_scored}, dead letters {r.lost_dead_letters})",
        ),
        ("duplicated in DB", f"{r.duplicate_rows} (rows for non-inputs: {r.extra_rows})"),
        (
            "wrong content",
            f"{r.wrong_rows + r.wrong_predictions + r.wrong_scored} (log_entries {r.wrong_rows}, "
            f"ml_predictions {r.wrong_predictions}, logs.scored {r.wrong_scored})",
        ),
        ("duplicated on logs.scored", f"{r.duplicates_scored:,} ({r.duplicates_scored / max(r.valid, 1):.2%})"),
        ("duplicated on dead-letter topic", f"{r.duplicates_dead_letters}"),
        (
            "dead letters",
            f"{r.dead_letters:,} (rejected by the database: {r.rejected_by_database}; sent "
            f"truncated: {r.truncated_dead_letters})",
        ),
        ("committed offsets at the end", "every partition" if r.committed_at_end else "NOT at the end"),
        (
            "wall time",
            f"{r.wall_seconds:,.1f} s ({r.events / max(r.wall_seconds, 1e-9):,.0f} events/s "
            f"through the faults; producer paced at {_rate(r)}), read-back {r.verify_seconds:,.1f} s",
        ),
    ]


def _rate(r: Result) -> str:
    rate = r.params["rate"]
    return f"{rate:,.0f}/s" if rate else f"no limit, at most {r.params['max_lag']:,} ahead of the commits"


def render_text(r: Result) -> str:
    rows = table(r)
    width = max(len(k) for k, _ in rows)
    lines = [f"== streamer chaos drill {r.run_id} (seed {r.params['seed']}): {'PASS' if r.ok else 'FAIL'}"]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += [f"  problem: {p}" for p in r.problems]
    lines.append(f"  same workload and fault plan: {_command(r.params)}")
    return "\n".join(lines)


def _command(params: dict) -> str:
    """The command line that repeats this drill (same workload and fault plan; timings differ)."""
    defaults = asdict(Params())
    flags = {
        "events": "--events",
        "invalid_ratio": "--invalid-ratio",
        "kills": "--kills",
        "broker_restarts": "--broker-restarts",
        "db_restarts": "--db-restarts",
        "rate": "--rate",
        "max_lag": "--max-lag",
        "db_outages": "--db-outages",
        "db_outage_seconds": "--db-outage-seconds",
        "broker_outages": "--broker-outages",
        "broker_outage_seconds": "--broker-outage-seconds",
        "slow_db": "--slow-db",
        "slow_db_seconds": "--slow-db-seconds",
        "slow_db_latency": "--slow-db-latency",
        "poison_every": "--poison-every",
    }
    params = {**defaults, **params}
    words = ["python bench/chaos.py"] + [
        f"{flag} {params[k]:g}" if isinstance(params[k], float) else f"{flag} {params[k]}"
        for k, flag in flags.items()
        if params[k] != defaults[k]
    ]
    if not params["rebalance"]:
        words.append("--no-rebalance")
    return " ".join([*words, f"--seed {params['seed']}"])


def render_markdown(r: Result) -> str:
    p = r.params
    out = [
        f"# Chaos drill {r.run_id}: {'PASS' if r.ok else 'FAIL'}",
        "",
        f"`{_command(p)}` (commit {r.code.get('commit') or '?'}"
        f"{', pipeline files modified: ' + ' '.join(r.code['uncommitted']) if r.code.get('uncommitted') else ''})",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in table(r)]
    out += [
        "",
        "## Faults",
        "",
        "Caught up: seconds from the fault until the group had committed, in every "
        "partition, every record acknowledged before the fault.",
        "",
        "| t (s) | produced | committed | fault | took (s) | caught up (s) |",
        "|---|---|---|---|---|---|",
    ]
    for f in r.timeline:
        if f["fired_s"] is None:
            out.append(f"| not fired | | | {f['kind']} | | |")
            continue
        out.append(
            f"| {f['fired_s']} | {f['produced']:,} | {f['progress']:,} | {f['kind']}: {f['detail']} | "
            f"{'' if f['took_s'] is None else f['took_s']} | "
            f"{'' if f['caught_up_s'] is None else f['caught_up_s']} |"
        )
    unexpected = [e for e in r.exits if not e.get("final")]
    if unexpected:
        out += ["", "## Members that exited by themselves", ""]
        out += [f"- {e['member']} at {e['at_s']} s, code {e['code']}: `{e['last_lines']}`" for e in unexpected]
    if r.problems:
        out += ["", "## Problems", ""] + [f"- {x}" for x in r.problems]
    return "\n".join(out) + "\n"


def write_results(r: Result, directory: Path = RESULTS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chaos.json").write_text(json.dumps(r.to_json(), indent=2) + "\n")
    (directory / "chaos.md").write_text(render_markdown(r))


def main(argv: list[str] | None = None) -> int:
    d = Params()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=d.events)
    ap.add_argument("--invalid-ratio", type=float, default=d.invalid_ratio)
    ap.add_argument("--kills", type=int, default=d.kills, help="SIGKILLs of a member (each restarted)")
    ap.add_argument("--broker-restarts", type=int, default=d.broker_restarts)
    ap.add_argument("--db-restarts", type=int, default=d.db_restarts)
    ap.add_argument("--no-rebalance", action="store_true", help="no third member joining and leaving")
    ap.add_argument("--db-outages", type=int, default=d.db_outages, help="times PostgreSQL is stopped for a while")
    ap.add_argument("--db-outage-seconds", type=float, default=d.db_outage_seconds)
    ap.add_argument(
        "--broker-outages",
        type=int,
        default=d.broker_outages,
        help="times the broker is stopped for a while (longer than the session timeout)",
    )
    ap.add_argument("--broker-outage-seconds", type=float, default=d.broker_outage_seconds)
    ap.add_argument(
        "--slow-db",
        type=int,
        default=d.slow_db,
        help="windows in which the database answers slowly (a proxy adds latency)",
    )
    ap.add_argument("--slow-db-seconds", type=float, default=d.slow_db_seconds)
    ap.add_argument(
        "--slow-db-latency",
        type=float,
        default=d.slow_db_latency,
        help="seconds added to every chunk, each way, in a slow window",
    )
    ap.add_argument(
        "--poison-every",
        type=int,
        default=d.poison_every,
        help="one poison record of each class in turn per N events (0: none)",
    )
    ap.add_argument("--seed", type=int, help="workload and fault plan (default: random, printed)")
    ap.add_argument("--max-lag", type=int, default=d.max_lag, help="records produced ahead of the commits")
    ap.add_argument("--rate", type=float, default=d.rate, help="records/s produced at most (0: no limit)")
    ap.add_argument("--timeout", type=float, default=d.timeout, help="seconds for the whole drill")
    ap.add_argument(
        "--stall-timeout",
        type=float,
        default=d.stall_timeout,
        help="end the drill when records wait and nothing is committed for this long",
    )
    ap.add_argument("--keep", action="store_true", help="keep topics, schema and logs after a pass")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where chaos.json and chaos.md go")
    a = ap.parse_args(argv)
    params = Params(
        events=a.events,
        invalid_ratio=a.invalid_ratio,
        kills=a.kills,
        broker_restarts=a.broker_restarts,
        db_restarts=a.db_restarts,
        rebalance=not a.no_rebalance,
        seed=a.seed,
        max_lag=a.max_lag,
        rate=a.rate,
        timeout=a.timeout,
        stall_timeout=a.stall_timeout,
        keep=a.keep,
        db_outages=a.db_outages,
        db_outage_seconds=a.db_outage_seconds,
        broker_outages=a.broker_outages,
        broker_outage_seconds=a.broker_outage_seconds,
        slow_db=a.slow_db,
        slow_db_seconds=a.slow_db_seconds,
        slow_db_latency=a.slow_db_latency,
        poison_every=a.poison_every,
    )
    # `timeout`/kill -TERM: unwind, so the members are stopped rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run_drill(params)
    except faults.FaultUnavailable as err:
        print(f"chaos: cannot inject the faults here: {err}", file=sys.stderr)
        return 2
    write_results(result, a.results)
    print(render_text(result))
    print(f"chaos: results in {a.results}/chaos.json and chaos.md")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
