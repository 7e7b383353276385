"""The drill, top to bottom: draw the plan, create fresh topics and a schema, start two members and the
producer, fire each fault when production passes its point while supervising the members and watching the
group's commits, then read everything back (testkit.readback) and clean up."""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime

from bench import faults
from bench.drill.feed import Feeder, Probe
from bench.drill.inject import Injector
from bench.drill.members import Members
from bench.drill.plan import (
    MAX_BYTES,
    MEMBER_FAULTS,
    OUTAGES,
    PARTITIONS,
    SERVER_FAULTS,
    Fault,
    Params,
    Workload,
    drill_workload,
    schedule,
)
from bench.drill.result import Result, code_state
from streamer.config import Settings
from testkit.clients import query, with_search_path
from testkit.pipeline import MODELS, ROOT
from testkit.readback import Expected, Topics, read_back, scored_afresh

RESULTS = ROOT / "bench" / "results"
# The Result counter each kind of fault adds to when it fires.
COUNTED = {
    "kill": "kills",
    "broker": "broker_restarts",
    "database": "db_restarts",
    "db_down": "db_outages",
    "broker_down": "broker_outages",
    "slow_db": "slow_db_windows",
    "join": "members_added",
    "leave": "members_removed",
}


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
        self.injector = Injector(p, self.base_url)
        self.members = Members(self.env, self.run_dir, self.say, self.elapsed)
        self.feeder: Feeder | None = None
        self.started = time.monotonic()
        self.result = Result(
            params={**asdict(p), "seed": self.seed},
            run_id=self.run_id,
            topics=self.topics,
            model_version=self.model_version,
            code=code_state(),
        )

    # --- set-up ---------------------------------------------------------------------------------------

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
        self.injector.open_proxy(self.db_url)
        query(self.base_url, f'CREATE SCHEMA "{self.schema}"')
        with connect(self.db_url) as conn:
            migrate(conn)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "STREAMER_METRICS_PORT"}  # members can't share a port
        env.update(
            {
                "STREAMER_BOOTSTRAP_SERVERS": self.bootstrap,
                "STREAMER_DATABASE_URL": self.injector.members_url(self.db_url),
                "STREAMER_INPUT_TOPIC": self.topics["raw"],
                "STREAMER_OUTPUT_TOPIC": self.topics["scored"],
                "STREAMER_DLQ_TOPIC": self.topics["deadletter"],
                "STREAMER_GROUP_ID": self.topics["group"],
            }
        )
        return env

    # --- the drill ------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str, done: int | None = None) -> None:
        where = ""
        if done is not None and self.result.events and self.feeder is not None:
            n = self.result.events
            where = f" produced {self.feeder.produced / n:4.0%} committed {done / n:4.0%}"
        self.log(f"chaos [{self.elapsed():7.1f}s{where}] {text}")

    def run(self) -> Result:
        p, res = self.p, self.result
        self.injector.check()
        self.say(f"seed {self.seed}: generating {p.events:,} events ({p.invalid_ratio:.1%} invalid)")
        work = drill_workload(p, self.seed)
        res.poison = dict(Counter(work.poison.values()))
        res.events, res.invalid = len(work.values), len(work.invalid)
        res.valid = len(work.values) - len(work.invalid) - work.stored_poison
        self.set_up()
        self.say(
            f"topics {self.topics['raw']} (+ .scored, .deadletter), schema {self.schema}, "
            f"logs in {self.run_dir.relative_to(ROOT)}"
        )
        plan = schedule(p, self.rng)
        self.say("plan: " + ", ".join(f"{f.kind}@{f.at:.0%}" for f in plan))
        self.started = time.monotonic()
        self.members.start_base()
        feeder = self.feeder = Feeder(self.kafka, self.topics["raw"], work.values, work.keys, p.max_lag, p.rate)
        feeder.start()
        probe = Probe(self.kafka, self.topics["group"], self.topics["raw"])
        try:
            self.control(feeder, probe, plan)
        finally:
            if self.injector.outage is not None:  # the drill ended early: put the stack back before anything else
                self.end_outage()
            feeder.abort.set()
            feeder.join(30)
            probe.close()
            res.commits_backwards = len(probe.backwards)
            if probe.backwards:
                res.problems.append(f"committed offsets moved back {len(probe.backwards)} times: {probe.backwards[:3]}")
            self.members.stop_all()
            self.injector.close()
        res.unexpected_exits, res.exits = self.members.unexpected_exits, self.members.exits
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
            self.verify(work, feeder.coords)
        except Exception as err:  # a broker or database that did not come back: say so, keep the figures
            res.problems.append(f"read-back failed: {type(err).__name__}: {str(err).splitlines()[0][:300]}")
        res.verify_seconds = round(time.monotonic() - started, 1)
        return res

    def control(self, feeder: Feeder, probe: Probe, plan: list[Fault]) -> None:
        """Until the group has committed everything (or the drill cannot go on): watch the commits, supervise
        the members, end outages when their time is up, fire the next fault when production passes its point."""
        res, p, members = self.result, self.p, self.members
        todo = list(plan)
        watching: list[Fault] = []  # faults whose earlier records are not all committed yet
        done_count = 0
        progressed_at = time.monotonic()
        deadline = self.started + p.timeout
        while True:
            offsets = probe.committed()
            if offsets is not None:
                if sum(offsets.values()) > done_count:
                    members.progressed()
                    progressed_at = time.monotonic()
                done_count = sum(offsets.values())
                feeder.committed = done_count
                for f in list(watching):
                    if f.ends is not None and all(offsets.get(q, 0) >= e for q, e in f.ends.items()):
                        f.caught_up_s = round(self.elapsed() - (f.fired_s or 0.0), 1)
                        watching.remove(f)

            outage = self.injector.outage
            crash_loop = members.supervise(done_count, database_down=outage is not None and outage[0].kind == "db_down")
            if crash_loop:
                res.problems.append(crash_loop)
                return

            if self.injector.outage_due():
                try:
                    self.end_outage()
                except faults.FaultFailed as err:
                    res.problems.append(f"{err}")
                    return
                progressed_at = time.monotonic()  # the stall clock starts when the fault is over
            if todo and feeder.produced >= todo[0].at * res.events:  # one per round: points can bunch up
                try:
                    fired = self.fire(todo[0], done_count)
                except faults.FaultFailed as err:
                    res.problems.append(f"{todo[0].kind} fault: {err}")
                    return
                if fired:
                    watching.append(todo.pop(0))

            if feeder.done.is_set() and not todo and not members.restarts and self.injector.outage is None:
                ends = dict(feeder.acked_ends)
                if offsets is not None and all(offsets.get(q, 0) >= e for q, e in ends.items()):
                    self.say("the group committed the end of every partition", done_count)
                    self.count_stuck(offsets, ends)
                    return
            if feeder.failure:
                res.problems.append(f"producer failed: {feeder.failure}")
                return
            if (
                self.injector.outage is None
                and feeder.produced > done_count
                and time.monotonic() - progressed_at > p.stall_timeout
            ):
                behind = {
                    q: f"{offsets.get(q, 0)}/{e}"
                    for q, e in dict(feeder.acked_ends).items()
                    if offsets is not None and offsets.get(q, 0) < e
                }
                if offsets is not None:
                    self.count_stuck(offsets, dict(feeder.acked_ends))
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

    def fire(self, f: Fault, done_count: int) -> bool:
        """Inject fault f; False when it has to wait (a kill while no member runs, a second server fault)."""
        assert self.feeder is not None
        if f.kind == "kill" and not self.members.alive_base():
            return False
        if f.kind in SERVER_FAULTS and self.injector.outage is not None:
            return False  # one server fault at a time (a restart of a stopped server cannot work)
        f.fired_s, f.progress = round(self.elapsed(), 1), done_count
        f.produced = self.feeder.produced
        f.ends = dict(self.feeder.acked_ends)
        started = time.monotonic()
        if f.kind in MEMBER_FAULTS:
            f.detail, counted = self.members.fire(f.kind, self.rng)
        else:
            f.detail, counted = self.injector.fire(f), True
        if counted:
            setattr(self.result, COUNTED[f.kind], getattr(self.result, COUNTED[f.kind]) + 1)
        if f.took_s is None and f.kind not in ("kill", *OUTAGES):
            f.took_s = round(time.monotonic() - started, 1)
        self.say(f"{f.kind}: {f.detail}", done_count)
        return True

    def end_outage(self) -> None:
        f = self.injector.end_outage()
        f.took_s = round(self.elapsed() - (f.fired_s or 0.0), 1)  # from the fault to the service being back
        self.say(f"{f.kind} over after {f.took_s}s")

    def count_stuck(self, offsets: dict[int, int], ends: dict[int, int]) -> None:
        stuck, problem = self.members.stuck(self.kafka, self.topics["group"], offsets, ends)
        self.result.stuck_members = stuck
        if problem:
            self.result.problems.append(problem)

    # --- read back ------------------------------------------------------------------------------------

    def verify(self, work: Workload, coords: list) -> None:
        """What was produced, as testkit.readback expects it, against what it reads back; into the result."""
        res, t = self.result, self.topics
        index = {c: i for i, c in enumerate(coords) if c is not None}
        # Keys are records, (partition, offset, record_index): a message may hold several.
        refused = {(*coords[i], 0) for i, kind in work.poison.items() if kind in faults.STORE_POISON and coords[i]}
        sent = {c for i, c in enumerate(coords) if c is not None and i not in work.invalid and (*c, 0) not in refused}
        expected = Expected(
            records=scored_afresh(work.values, coords, sent, t["raw"]),
            decode_dead={(*c, 0): work.values[i] for i, c in enumerate(coords) if c is not None and i in work.invalid},
            store_dead=refused,
            model_version=self.model_version,
            produced=len(index),
        )
        back = read_back(
            self.bootstrap,
            self.db_url,
            Topics(t["raw"], t["scored"], t["deadletter"], t["group"]),
            expected,
            PARTITIONS,
        )
        res.problems += back.problems
        res.committed_at_end = bool(back.committed_at_end)
        for name, value in back.figures().items():
            if hasattr(res, name) and name != "committed_at_end":
                setattr(res, name, value)
        kinds = {(*coords[i], 0): kind for i, kind in work.poison.items() if coords[i] is not None}
        res.poison_dead_lettered = dict(Counter(kinds[c] for c in back.dead_lettered if c in kinds))
        if res.lost_dead_letters:
            missing = back.missing_dead_letters
            res.problems.append(
                f"dead letters missing or altered for {res.lost_dead_letters} invalid inputs, "
                f"e.g. {missing} ({', '.join(_kind(work.values[index[c[:2]]]) for c in missing)})"
            )

    def clean_up(self) -> None:
        from streamer.kafka_admin import delete_topics

        delete_topics(self.kafka, [self.topics[k] for k in ("raw", "scored", "deadletter")])
        query(self.base_url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        shutil.rmtree(self.run_dir, ignore_errors=True)


def _kind(value: bytes) -> str:
    return f"{len(value)} bytes starting {value[:20]!r}"
