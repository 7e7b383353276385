"""Supervision of the group under the drill: the `streamer run` members, started, SIGKILLed and restarted,
a third one joining and leaving, members that exit by themselves noticed and restarted (a crash loop ends
the drill), everyone stopped at the end, and the count of members that run but do not consume."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from testkit.pipeline import ROOT, StreamerProcess

BASE_MEMBERS = ("a", "b")
EXTRA_MEMBER = "c"
CRASH_LOOP = 4  # a member exiting this often with no progress in between ends the drill


class Members:
    def __init__(
        self,
        env: Callable[[], dict[str, str]],
        run_dir: Path,
        say: Callable[..., None],
        elapsed: Callable[[], float],
    ):
        """env: each new member's environment; say: the drill's log; elapsed: the drill's clock."""
        self.env, self.run_dir, self.say, self.elapsed = env, run_dir, say, elapsed
        self.running: dict[str, StreamerProcess | None] = {}  # killed/removed members are None
        self.generation: Counter = Counter()
        self.restarts: list[tuple[float, str]] = []  # (monotonic time, member) to start again
        self.crashes: Counter = Counter()  # exits by themselves since the group last committed more
        self.exits: list[dict] = []  # every exit: by itself during the drill, or final
        self.unexpected_exits = 0

    def start(self, name: str) -> StreamerProcess:
        self.generation[name] += 1
        proc = StreamerProcess(self.env(), self.run_dir / f"{name}-{self.generation[name]}.log")
        self.running[name] = proc
        return proc

    def start_base(self) -> None:
        for name in BASE_MEMBERS:
            self.start(name)

    def alive_base(self) -> list[str]:
        return [n for n in BASE_MEMBERS if (m := self.running.get(n)) is not None and m.alive()]

    def progressed(self) -> None:
        """The group committed more: earlier exits were not a crash loop."""
        self.crashes.clear()

    def supervise(self, done_count: int, database_down: bool) -> str | None:
        """Notice members that exited by themselves (restart the base ones a second later) and start those
        due again. Returns the problem that ends the drill (a crash loop), or None."""
        for name, proc in list(self.running.items()):
            if proc is not None and not proc.alive():
                code = proc.proc.returncode
                tail = " | ".join(proc.output().strip().splitlines()[-3:])[-600:]
                self.unexpected_exits += 1
                self.record_exit(name, proc, code, last_lines=tail)
                self.say(f"member {name} exited by itself with code {code}: {tail}", done_count)
                proc.close()
                self.running[name] = None
                if not database_down:  # start-up gives up after 60 s
                    self.crashes[name] += 1
                if self.crashes[name] >= CRASH_LOOP:
                    return (
                        f"member {name} exited by itself {CRASH_LOOP} times without the "
                        f"group making progress; last lines: {tail}"
                    )
                if name in BASE_MEMBERS:
                    self.restarts.append((time.monotonic() + 1.0, name))
        for when, name in list(self.restarts):
            if time.monotonic() >= when:
                self.restarts.remove((when, name))
                self.start(name)
                self.say(f"started {name} again (generation {self.generation[name]})", done_count)
        return None

    def record_exit(self, name: str, proc: StreamerProcess, code: int | str, **more: object) -> None:
        log = str(proc.log_path.relative_to(ROOT))
        self.exits.append({"member": name, "code": code, "at_s": round(self.elapsed(), 1), "log": log, **more})

    def fire(self, kind: str, rng: random.Random) -> tuple[str, bool]:
        """kill | join | leave: (what happened, whether it counts as done)."""
        if kind == "kill":
            victim = rng.choice(self.alive_base())
            proc = self.running[victim]
            assert proc is not None
            pid = proc.pid
            proc.kill()
            proc.close()
            self.running[victim] = None
            delay = rng.uniform(0.5, 3.0)
            self.restarts.append((time.monotonic() + delay, victim))
            return f"SIGKILL {victim} (pid {pid}), restart in {delay:.1f}s", True
        if kind == "join":
            self.start(EXTRA_MEMBER)
            return f"third member {EXTRA_MEMBER} started", True
        proc = self.running.get(EXTRA_MEMBER)
        if proc is None or not proc.alive():
            return f"{EXTRA_MEMBER} was not running", False
        code: int | str
        try:
            code = proc.terminate()
        except AssertionError as err:  # never became ready
            code = f"not ready: {str(err).splitlines()[0]}"
        proc.close()
        self.running[EXTRA_MEMBER] = None
        return f"SIGTERM {EXTRA_MEMBER}: exited {code}", True

    def stuck(self, kafka: dict, group_id: str, offsets: dict[int, int], ends: dict[int, int]) -> tuple[int, str]:
        """Running members that do not consume: not in the group, or holding a partition whose commits are
        behind. Read from the group coordinator, which knows who holds what. (count, problem or "")."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({**kafka, "log_level": 0})
        settle = time.monotonic() + 30  # a member restarted a moment ago may not have joined yet
        while True:
            running = sum(1 for m in self.running.values() if m is not None and m.alive())
            try:
                group = admin.describe_consumer_groups([group_id])[group_id].result(30)
            except Exception as err:  # a broker away: say so rather than guess
                return 0, f"cannot describe the group to count stuck members: {err}"
            behind = sum(
                1
                for m in group.members
                if any(offsets.get(tp.partition, 0) < ends.get(tp.partition, 0) for tp in m.assignment.topic_partitions)
            )
            stuck = max(0, running - len(group.members)) + behind
            if not stuck or time.monotonic() > settle:
                return stuck, ""
            time.sleep(1.0)

    def stop_all(self) -> None:
        running = {n: p for n, p in self.running.items() if p is not None}
        for proc in running.values():  # SIGTERM to all first: they shut down in parallel
            if proc.alive():
                try:
                    proc.wait_ready()
                except AssertionError:
                    pass
                proc.proc.send_signal(signal.SIGTERM)
        for name, proc in running.items():
            code: int | str
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                code = "still running 60s after SIGTERM"
            self.record_exit(name, proc, code, final=True)
            proc.close()
