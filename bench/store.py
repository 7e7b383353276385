"""PostgreSQL's CPU per stored event: the sink alone, schema variants side by side in one run.

Writes the same N events (batches of 5,000, one prediction each) through streamer.sink.PostgresSink into
fresh schemas and reads the CPU its server backend used from /proc (the server runs on this machine), so
the figure is the database's own work per event: COPY into staging, the two inserts, index upkeep, commit.

    .venv/bin/python -m bench.store [--events 200000]

Variants: "schema 4" (the foreign key from ml_predictions to log_entries checked per row) and "latest"
(every migration). The ratio between them is what a schema change bought.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import DATABASE_URL
from testkit.clients import with_search_path

BATCH = 5_000
_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def rows(n: int, start: int = 0) -> list[tuple]:
    from streamer.sink import STAGE_COLUMNS

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(start, start + n):
        message = f"request {i} handled in {i % 997} ms by worker {i % 31}"
        row = {
            "kafka_topic": "bench.store",
            "kafka_partition": i % 6,
            "kafka_offset": i,
            "record_index": 0,
            "event_time": t0 + timedelta(milliseconds=i),
            "level": "INFO",
            "message": message,
            "host": f"host-{i % 50}",
            "service": f"service-{i % 20}",
            "raw": f'{{"message": "{message}"}}',
            "model_version": "m-bench",
            "predicted_level": "INFO",
            "level_confidence": 0.9,
            "is_anomaly": i % 100 == 0,
            "anomaly_score": 0.1,
            "severity": "low",
        }
        out.append(tuple(row.get(c) for c in STAGE_COLUMNS))
    return out


def measure(events: int, up_to: int | None) -> dict:
    from streamer.db import connect
    from streamer.db.migrations import migrate
    from streamer.sink import PostgresSink

    schema = f"bench_store_{uuid.uuid4().hex[:8]}"
    with connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = with_search_path(DATABASE_URL, schema)
    try:
        with connect(url) as conn:
            migrate(conn, up_to=up_to)
        sink = PostgresSink(url)
        sink.write(rows(10, start=10**9))  # connect, create the staging table
        pid = sink.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        sink.conn.commit()
        batches = [rows(BATCH, start) for start in range(0, events, BATCH)]
        cpu0, wall0 = _cpu_seconds(pid), time.perf_counter()
        for batch in batches:
            assert sink.write(batch) == []
        cpu, wall = _cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
        sink.close()
        return {
            "events": events,
            "postgres_us_per_event": round(1e6 * cpu / events, 2),
            "wall_us_per_event": round(1e6 * wall / events, 2),
        }
    finally:
        with connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs per variant")
    args = parser.parse_args()
    variants = {"schema 4 (per-row foreign key)": 4, "latest": None}
    found = {}
    for name, up_to in variants.items():
        runs = [measure(args.events, up_to) for _ in range(args.repeats)]
        found[name] = min(runs, key=lambda r: r["postgres_us_per_event"])
        print(
            f"{name}: PostgreSQL {found[name]['postgres_us_per_event']} µs CPU / event, "
            f"sink wall {found[name]['wall_us_per_event']} µs / event",
            flush=True,
        )
    base, latest = (found[n]["postgres_us_per_event"] for n in variants)
    print(f"latest / schema 4: {latest / base:.2f}x PostgreSQL CPU per stored event")
    return 0


if __name__ == "__main__":
    sys.exit(main())
