"""Shared by the end-to-end benchmark and the profiler: a fresh run environment on the real stack (unique
topics, group and database schema), pre-loading a topic, `streamer run` as a real process, and what can be
read from outside it (committed offsets, /metrics, /proc)."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamer.config import Settings
from testkit.clients import free_port, with_search_path
from testkit.pipeline import StreamerProcess
from testkit.workload import INVALID_KINDS

LOG_DIR = ROOT / "bench" / "results" / "tmp"  # git-ignored
# The servers streamer itself defaults to (its Settings' declarations), unless the environment names others.
BOOTSTRAP = os.environ.get("STREAMER_BOOTSTRAP_SERVERS") or Settings().bootstrap_servers
DATABASE_URL = os.environ.get("STREAMER_DATABASE_URL") or Settings().database_url
PARTITIONS = 6
# A 2 MiB value is refused by the broker (1 MiB limit) before it ever reaches the streamer, and at 1 % of
# 500,000 events it would be 1.25 GB, 8x the rest of the data: not part of a realistic mix.
BENCH_INVALID_KINDS = tuple(k for k in INVALID_KINDS if k != "huge_value")


@dataclass
class RunEnv:
    """Unique topics (input 6 partitions, output 6, dead letters 1), group and migrated schema."""

    name: str
    raw: str
    scored: str
    deadletter: str
    group: str
    schema: str
    db_url: str

    @classmethod
    def create(cls, label: str, schema_version: int | None = None) -> RunEnv:
        """schema_version: migrate only that far (None: every migration)."""
        from streamer.db import connect
        from streamer.db.migrations import migrate
        from streamer.kafka_admin import ensure_topics

        tag = f"{label}-{uuid.uuid4().hex[:8]}"
        schema = "bench_" + re.sub(r"[^a-z0-9]", "_", tag.lower())
        env = cls(
            tag,
            f"bench-{tag}.raw",
            f"bench-{tag}.scored",
            f"bench-{tag}.deadletter",
            f"bench-{tag}",
            schema,
            with_search_path(DATABASE_URL, schema),
        )
        try:
            ensure_topics(
                {"bootstrap.servers": BOOTSTRAP}, {env.raw: PARTITIONS, env.scored: PARTITIONS, env.deadletter: 1}
            )
            with connect(DATABASE_URL, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
            with connect(env.db_url) as conn:
                migrate(conn, up_to=schema_version)
        except BaseException:
            env.drop()
            raise
        return env

    def streamer_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
        env.update(
            {
                "STREAMER_BOOTSTRAP_SERVERS": BOOTSTRAP,
                "STREAMER_DATABASE_URL": self.db_url,
                "STREAMER_INPUT_TOPIC": self.raw,
                "STREAMER_OUTPUT_TOPIC": self.scored,
                "STREAMER_DLQ_TOPIC": self.deadletter,
                "STREAMER_GROUP_ID": self.group,
                "STREAMER_MODELS_DIR": str(ROOT / "models"),
                "PYTHONUNBUFFERED": "1",
                **extra,
            }
        )
        return env

    def row_counts(self) -> dict[str, int]:
        from streamer.db import connect

        with connect(self.db_url) as conn:
            return {
                t: conn.execute(f"select count(*) from {t}").fetchone()[0] for t in ("log_entries", "ml_predictions")
            }

    def drop(self) -> None:
        from streamer.db import connect
        from streamer.kafka_admin import delete_topics

        # Retried for a while: the stack may be restarting (another user's drill) when a run ends.
        for attempt in range(30):
            try:
                delete_topics({"bootstrap.servers": BOOTSTRAP}, [self.raw, self.scored, self.deadletter])
                with connect(DATABASE_URL, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
                return
            except Exception:
                if attempt == 29:
                    raise
                time.sleep(2)


def preload(topic: str, values: list[bytes], keys: list[bytes | None]) -> dict[int, int]:
    """Produce everything and wait for every ack; returns the end offset of each partition."""
    from confluent_kafka import Producer

    failures: list[str] = []

    def on_error(err, msg):
        if err is not None:
            failures.append(err.str())

    producer = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "compression.type": "lz4",
            "queue.buffering.max.kbytes": 512 * 1024,
            "queue.buffering.max.messages": 1_000_000,
            "delivery.report.only.error": True,
            "on_delivery": on_error,
            "log_level": 3,
        }
    )
    produce = producer.produce
    for v, k in zip(values, keys):
        while True:
            try:
                produce(topic, v, k)
                break
            except BufferError:  # the local queue is full: let librdkafka send some
                producer.poll(0.05)
    left = producer.flush(120)
    if left or failures:
        raise RuntimeError(f"pre-load of {topic}: {left} unacknowledged, {len(failures)} refused ({failures[:1]})")
    return end_offsets(topic)


def end_offsets(topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "bench-probe", "log_level": 3})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)}
    finally:
        c.close()


class OffsetWatcher:
    """Samples the group's committed offsets from outside (a consumer that never joins the group)."""

    def __init__(self, group: str, topic: str):
        from confluent_kafka import Consumer, TopicPartition

        self._tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self._c = Consumer(
            {"bootstrap.servers": BOOTSTRAP, "group.id": group, "enable.auto.commit": False, "log_level": 0}
        )
        self.samples: list[tuple[float, int]] = []  # (monotonic time, committed events, all partitions)

    def committed(self) -> dict[int, int]:
        got = self._c.committed(self._tps, timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in got}

    def sample(self) -> int:
        """Committed events now; the last known figure while the broker does not answer (a restart)."""
        from confluent_kafka import KafkaException

        try:
            total = sum(self.committed().values())
        except KafkaException:
            return self.samples[-1][1] if self.samples else 0
        self.samples.append((time.monotonic(), total))
        return total

    def close(self) -> None:
        self._c.close()


def start_streamer(env: RunEnv, label: str, extra_env: dict[str, str] | None = None) -> StreamerProcess:
    """`streamer run` on env with its own metrics port and the settings as given (nothing tuned for tests);
    log in bench/results/tmp/."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    return StreamerProcess(
        env.streamer_env(STREAMER_METRICS_PORT=str(free_port()), **(extra_env or {})),
        LOG_DIR / f"{env.name}-{label}.log",
        tuned_for_tests=False,
    )


def stage_seconds(metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """streamer_stage_seconds sums and counts per stage."""
    out: dict[str, dict[str, float]] = {}
    for name, value in metrics.items():
        m = re.fullmatch(r'streamer_stage_seconds_(sum|count)\{stage="(\w+)"\}', name)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = value
    return out


def run_until_caught_up(
    procs: list[StreamerProcess],
    watcher: OffsetWatcher,
    total: int,
    timeout: float,
    interval: float = 0.1,
    on_tick=None,
) -> dict[str, float | None]:
    """Sample committed offsets until they reach `total`. Returns times (seconds since the first process
    started) of the first commit and of catching up."""
    t0 = min(p.started for p in procs)
    first_commit = None
    last_rss = 0.0
    while True:
        for p in procs:
            p.check_alive()
        done = watcher.sample()
        now = time.monotonic()
        if done > 0 and first_commit is None:
            first_commit = now - t0
        if now - last_rss >= 0.5:
            for p in procs:
                p.sample_rss()
            last_rss = now
        if on_tick is not None:
            on_tick(now)
        if done >= total:
            return {"first_commit_s": first_commit, "caught_up_s": now - t0}
        if now - t0 > timeout:
            raise RuntimeError(f"not caught up after {timeout:.0f}s: {done:,} of {total:,} committed")
        # Fine-grained at first (the first commit time is a target), coarser afterwards.
        time.sleep(0.01 if first_commit is None else interval)


def kill_all(procs: list[StreamerProcess]) -> None:
    for p in procs:
        if p.alive():
            p.proc.kill()
            p.proc.wait(10)


def background(fn, *args) -> threading.Thread:
    t = threading.Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


# --- where the CPU goes --------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / _TICK, total / _TICK


def _process_seconds(pid: int) -> float:
    """CPU seconds (user + system) of one process, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def _processes(file: str):
    """(pid, the text of /proc/<pid>/<file>) of every process readable now."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/{file}") as f:
                    yield int(entry), f.read()
            except OSError:
                pass


def _children(parents: list[int]) -> list[int]:
    """Processes whose parent is one of `parents` (the field after the command name in /proc/<pid>/stat)."""
    return [pid for pid, stat in _processes("stat") if int(stat.rsplit(")", 1)[1].split()[1]) in parents]


def _pids_named(prefix: str) -> list[int]:
    return [pid for pid, comm in _processes("comm") if comm.startswith(prefix)]


def _listening_pid(port: int) -> int | None:
    """The process listening on a local TCP port (read from /proc: no tools needed)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        inodes.add(f"socket:[{parts[9]}]")
        except OSError:
            pass
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not inodes:
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    return int(entry)
        except OSError:
            pass
    return None


def _local_listener(address: str) -> int | None:
    host, _, port = address.rpartition(":")
    local = host.strip("[]") in ("127.0.0.1", "localhost", "::1", "")
    return _listening_pid(int(port)) if local and port.isdigit() else None


def broker_pid() -> int | None:
    """The local broker: the process listening on the bootstrap port (None when it is elsewhere)."""
    return _local_listener(BOOTSTRAP.split(",")[0])


def stack_pids() -> dict[str, int | None]:
    """Broker and PostgreSQL server processes; a change between two calls means one was restarted."""
    from urllib.parse import urlsplit

    db = urlsplit(DATABASE_URL)
    return {"kafka broker": broker_pid(), "postgresql": _local_listener(f"{db.hostname}:{db.port or 5432}")}


class CpuMeter:
    """CPU used between start() and stop(), in cores (CPU seconds per wall second): the streamer
    process(es) with their children (the template miner process), the broker, PostgreSQL (all its processes), this benchmark process, and everything else on
    the machine (other users of the machine show up there)."""

    def __init__(self, streamer_pids: list[int]):
        self.restarted: list[str] = []
        self.groups = {
            "streamer": lambda: streamer_pids + _children(streamer_pids),
            "kafka broker": lambda: [p for p in [broker_pid()] if p],
            "postgresql": lambda: _pids_named("postgres"),
            "benchmark driver": lambda: [os.getpid()],
        }

    def _snapshot(self) -> dict[str, float]:
        # Processes that come and go (PostgreSQL backends) count from their start: sample both ends per pid.
        snap = {}
        for name, pids in self.groups.items():
            for pid in pids():
                snap[f"{name}:{pid}"] = _process_seconds(pid)
        busy, _ = _machine_busy_seconds()
        snap["machine"] = busy
        snap["wall"] = time.monotonic()
        return snap

    def start(self) -> CpuMeter:
        self._stack = stack_pids()
        self._start = self._snapshot()
        return self

    def stop(self) -> dict[str, float]:
        """Cores used per group. Also sets .restarted: the stack's servers that restarted meanwhile."""
        end = self._snapshot()
        now = stack_pids()
        self.restarted = [name for name, pid in self._stack.items() if pid != now[name]]
        wall = end["wall"] - self._start["wall"]
        out = {name: 0.0 for name in self.groups}
        for key, value in end.items():
            if ":" in key:
                name = key.split(":", 1)[0]
                out[name] += value - self._start.get(key, 0.0)
        used = {k: v / wall for k, v in out.items()}
        machine = (end["machine"] - self._start["machine"]) / wall
        used["everything else"] = max(0.0, machine - sum(used.values()))
        used["machine total"] = machine
        used["cores"] = float(os.cpu_count() or 1)
        return {k: round(v, 2) for k, v in used.items()}
