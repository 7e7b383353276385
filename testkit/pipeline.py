"""`streamer run` as a real process against a test's topics and schema; group offsets; test events; a TCP proxy
that cuts and restores a real server."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import sys
import threading
import time
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
    """`python -m streamer run` with the given environment; its log goes to a file for the failure message."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        full_env = {**env, **FAST_GROUP, "STREAMER_MODELS_DIR": str(MODELS), "PYTHONUNBUFFERED": "1"}
        full_env.setdefault("STREAMER_BATCH_MAX_MS", "100")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", *args],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the process has subscribed (its signal handlers are installed long before)."""
        deadline = time.monotonic() + timeout
        while "consuming " not in self.output():
            assert self.alive(), f"streamer exited during start-up:\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"streamer not ready after {timeout}s:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def terminate(self, timeout: float = 60.0) -> int:
        self.wait_ready()
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

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
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.alive():
            self.kill()
        self.log.close()


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


class TcpProxy:
    """A TCP forwarder to a real server that the test can cut and restore: the server stays real, the
    process under test sees it go away (connections reset, new ones refused) and come back."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)  # only the connect is bounded: a server busy for a while is not gone
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes the other direction's recv(), which close() would not
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.up.clear()
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._conns.clear()

    def restore(self) -> None:
        self.up.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()
