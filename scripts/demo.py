"""`make demo`: the main job end to end on the local stack.

Starts `streamer run`, produces events from the built-in corpus (some malformed) into logs.raw, waits until
the group has no lag, prints a summary read back from PostgreSQL and the topics, then stops the streamer and
starts `streamer serve` (the dashboard), which keeps running until `make down`; the last line is its URL.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamer.config import settings_from_args  # noqa: E402
from testkit.workload import workload  # noqa: E402


def offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    md = consumer.list_topics(topic, timeout=10).topics[topic]
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions}


def committed(consumer: Consumer, topic: str, partitions) -> dict[int, int]:
    got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    return {tp.partition: tp.offset for tp in got}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--invalid-ratio", type=float, default=0.005)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    s = settings_from_args(None)
    kafka = s.kafka_client_config()
    group_probe = Consumer({**kafka, "group.id": s.group_id, "enable.auto.commit": False})
    start_offsets = offsets(group_probe, s.input_topic)
    dlq_start = offsets(group_probe, s.dlq_topic)
    scored_start = offsets(group_probe, s.output_topic)

    log_path = ROOT / ".stack" / "demo-streamer.log"
    log_path.parent.mkdir(exist_ok=True)
    print(f"demo: starting `streamer run` (log: {log_path.relative_to(ROOT)})")
    streamer = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        values, keys, invalid = workload(args.events, args.invalid_ratio, seed=int(time.time()) % 1000)
        print(f"demo: producing {len(values):,} events ({len(invalid)} malformed) to {s.input_topic}")
        producer = Producer(
            {**kafka, "linger.ms": 20, "compression.type": "lz4", "message.max.bytes": 16 * 1024 * 1024}
        )
        started = time.monotonic()
        for v, k in zip(values, keys):
            while True:
                try:
                    producer.produce(s.input_topic, v, k)
                    break
                except BufferError:
                    producer.poll(0.1)
        left = producer.flush(60)
        if left:
            print(f"demo: {left} events were not acknowledged by Kafka", file=sys.stderr)
            return 1
        end_offsets = offsets(group_probe, s.input_topic)
        while True:
            if streamer.poll() is not None:
                print(f"demo: streamer exited with {streamer.returncode}; see {log_path}", file=sys.stderr)
                return 1
            done = committed(group_probe, s.input_topic, end_offsets)
            if all(done.get(p, -1) >= end for p, end in end_offsets.items() if end > 0):
                break
            if time.monotonic() - started > args.timeout:
                print(f"demo: the group did not catch up within {args.timeout:.0f}s", file=sys.stderr)
                return 1
            time.sleep(0.25)
        elapsed = time.monotonic() - started
    finally:
        streamer.send_signal(signal.SIGTERM)
        code = streamer.wait(60)
    group_probe.close()

    print(
        f"\n== streamer demo: {len(values):,} events in {elapsed:.1f}s = {len(values) / elapsed:,.0f} events/s "
        f"end to end (produce → score → logs.scored + PostgreSQL → commit); streamer exited {code}"
    )
    where = " or ".join(f"(e.kafka_partition = {p} and e.kafka_offset >= {o})" for p, o in start_offsets.items())
    with psycopg.connect(s.database_url) as conn:
        rows = conn.execute(
            f"select p.severity, count(*) from ml_predictions p join log_entries e using "
            f"(kafka_topic, kafka_partition, kafka_offset) where e.kafka_topic = %s and ({where}) "
            f"group by 1 order by 2 desc",
            [s.input_topic],
        ).fetchall()
        print("\nby severity:")
        for severity, n in rows:
            print(f"  {severity:9} {n:8,}")
        print(f"  {'stored':9} {sum(n for _, n in rows):8,}")
        top = conn.execute(
            f"select p.anomaly_score, p.severity, coalesce(e.service, '-'), left(e.message, 110) "
            f"from ml_predictions p join log_entries e using (kafka_topic, kafka_partition, kafka_offset) "
            f"where e.kafka_topic = %s and p.is_anomaly and ({where}) order by p.anomaly_score desc limit 8",
            [s.input_topic],
        ).fetchall()
        print("\ntop anomalies (from PostgreSQL):")
        for score, severity, service, message in top:
            print(f"  {score:.3f} {severity:8} {service:14} {message}")

    print(
        f"\ndead letters on {s.dlq_topic}: {sum(read_counts(kafka, s.dlq_topic, dlq_start).values()):,} "
        f"(produced {len(invalid)} malformed)"
    )
    sample = read_sample(kafka, s.output_topic, scored_start, 3)
    print(f"\nsample of {s.output_topic}:")
    for value in sample:
        print("  " + value.decode()[:400])
    url = start_dashboard()
    print(
        f"\ndashboard: {url}  (`streamer serve` keeps running until `make down`)"
        if url
        else f"\ndashboard: streamer serve did not start; see {SERVE_LOG}",
        file=sys.stdout if url else sys.stderr,
    )
    return 0 if code == 0 and url else 1


SERVE_PID = ROOT / ".stack" / "serve.pid"
SERVE_LOG = ROOT / ".stack" / "serve.log"


def start_dashboard(timeout: float = 30.0) -> str | None:
    """`streamer serve` in its own session, so it outlives `make demo`; scripts/stack.sh down stops it by
    SERVE_PID. One started by an earlier demo is replaced (it may run older code)."""
    import re

    try:
        old = int(SERVE_PID.read_text())
        if "streamer\0serve" in Path(f"/proc/{old}/cmdline").read_text():
            os.kill(old, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{old}").exists():
                    break
                time.sleep(0.2)
    except (OSError, ValueError):
        pass
    log = open(SERVE_LOG, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "serve"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    SERVE_PID.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"serving (http://\S+/)", SERVE_LOG.read_text(errors="replace"))
        if m:
            return m.group(1)
        time.sleep(0.2)
    return None


def read_counts(kafka: dict, topic: str, since: dict[int, int]) -> dict[int, int]:
    c = Consumer({**kafka, "group.id": "demo-reader", "enable.auto.commit": False})
    try:
        ends = offsets(c, topic)
        return {p: ends[p] - since.get(p, 0) for p in ends}
    finally:
        c.close()


def read_sample(kafka: dict, topic: str, since: dict[int, int], n: int) -> list[bytes]:
    c = Consumer({**kafka, "group.id": "demo-reader", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, o) for p, o in since.items()])
        out: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                body = orjson.loads(msg.value())
                if body.get("streamer", {}).get("severity") in ("critical", "high") or len(out) < n - 1:
                    out.append(msg.value())
        return out
    finally:
        c.close()


if __name__ == "__main__":
    sys.exit(main())
