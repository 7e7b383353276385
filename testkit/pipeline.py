"""`streamer run` as a real process against a test's topics and schema; group offsets; test events."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

# Quick rebalances after a kill: the group notices a dead member within a few seconds.
FAST_GROUP = {
    "STREAMER_KAFKA_SESSION_TIMEOUT_MS": "6000",
    "STREAMER_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
}


class StreamerProcess:
    """`python -m streamer run` with the given environment; its log goes to a file for the failure message.

    Tests get quick rebalances, the repository's models and 100 ms batches on top of `env`; a benchmark passes
    tuned_for_tests=False and measures the environment it gives."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str, tuned_for_tests: bool = True):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        full_env = {**env, "PYTHONUNBUFFERED": "1"}
        if tuned_for_tests:
            full_env.update({**FAST_GROUP, "STREAMER_MODELS_DIR": str(MODELS)})
            full_env.setdefault("STREAMER_BATCH_MAX_MS", "100")
        self.metrics_port = int(full_env.get("STREAMER_METRICS_PORT") or 0)  # 0: no /metrics
        self.started = time.monotonic()
        self.rss_samples: list[tuple[float, float]] = []  # (monotonic time, MiB), from sample_rss()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", *args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the process has subscribed (its signal handlers are installed long before)."""
        deadline = time.monotonic() + timeout
        while "consuming " not in self.output():
            assert self.alive(), f"streamer exited during start-up:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"streamer not ready after {timeout}s:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def wait_for_log(self, text: str, timeout: float = 60.0) -> float:
        """Seconds since start when `text` appeared in the log; RuntimeError when it exits or times out first."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"streamer ({self.log_path.name}): no {text!r} after {timeout}s:\n{self.output()[-3000:]}"
                )
            time.sleep(0.02)
        return time.monotonic() - self.started

    def check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(
                f"streamer ({self.log_path.name}) exited with {self.proc.returncode}:\n" + self.output()[-3000:]
            )

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM once it is ready; its exit code (TimeoutExpired when it does not exit in time)."""
        self.wait_ready()
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM now, SIGKILL after `timeout`; closes the log and returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.flush()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.alive():
            self.kill()
        self.log.close()

    def metrics(self) -> dict[str, float]:
        """/metrics as {'name{labels}': value} (the environment must have set STREAMER_METRICS_PORT)."""
        assert self.metrics_port, "started without STREAMER_METRICS_PORT"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def proc_status(self, pid: int | None = None) -> dict[str, int]:
        """VmRSS / VmHWM in kB ({} once the process is gone)."""
        out: dict[str, int] = {}
        try:
            with open(f"/proc/{pid or self.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value = line.split(":", 1)
                        out[key] = int(value.split()[0])
        except FileNotFoundError:
            pass
        return out

    def sample_rss(self) -> None:
        rss = self.proc_status().get("VmRSS")
        if rss is not None:
            self.rss_samples.append((time.monotonic(), rss / 1024))


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "end-offsets"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        c.close()


def caught_up(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    ends = end_offsets(bootstrap, topic, partitions)
    done = committed(bootstrap, group, topic, partitions)
    return all(done.get(p, -1) >= end for p, end in ends.items() if end > 0)


def valid_event(i: int, rng: random.Random) -> bytes:
    """A log event as shippers write it: ECS JSON (nested or dotted) or a plain text line."""
    kind = i % 4
    level = rng.choice(["INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"])
    text = rng.choice(
        [
            "user {u} logged in from 10.0.{a}.{b}",
            "GET /api/orders/{u} 200 {ms}ms",
            "connection to db-{a} timed out after {ms} ms",
            "disk usage at {a}% on /var/lib/data",
            "OutOfMemoryError: Java heap space in worker-{a}",
            "payment {u} declined: card expired",
            "tty{a}: control characters \x01\x1b[0m in the line",  # \x01 once crashed the scorer for the batch
        ]
    ).format(u=rng.randrange(10**6), a=rng.randrange(255), b=rng.randrange(255), ms=rng.randrange(5000))
    if kind == 0:
        return orjson.dumps(
            {
                "@timestamp": "2024-06-01T12:00:00Z",
                "message": text,
                "log": {"level": level},
                "host": {"name": f"web-{i % 7}"},
                "service": {"name": "shop"},
                "seq": i,
            }
        )
    if kind == 1:
        return orjson.dumps(
            {
                "timestamp": 1717243200 + i,
                "msg": text,
                "level": level.lower(),
                "host.name": "api-1",
                "service.name": "api",
                "seq": i,
            }
        )
    if kind == 2:
        return orjson.dumps({"log": text, "stream": "stdout", "seq": i})
    return f"2024-06-01 12:00:00,{i % 1000:03d} {level} [main] {text} seq={i}".encode()


INVALID: list[bytes] = [
    b"",
    b"\xff\xfe not utf-8 \xc3\x28",
    b'{"message": "truncated json',
    b"[]",  # an array of no events
    b'{"level": "ERROR", "host": "no message here"}',
    b'{"message": 12345}',
    b'"a json string"',
]


def mixed_values(n: int, invalid_every: int = 50, seed: int = 7) -> tuple[list[bytes], set[int]]:
    """n values, every `invalid_every`-th one invalid; returns (values, indexes of the invalid ones)."""
    rng = random.Random(seed)
    values, invalid = [], set()
    for i in range(n):
        if invalid_every and i % invalid_every == invalid_every - 1:
            values.append(INVALID[(i // invalid_every) % len(INVALID)])
            invalid.add(i)
        else:
            values.append(valid_event(i, rng))
    return values, invalid
