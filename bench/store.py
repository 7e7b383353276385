"""PostgreSQL's CPU per stored event: the sink alone, on the latest schema.

Writes N events (batches of 5,000, one prediction each, event times of the last minutes so they land in the
day partitions) through streamer.sink.PostgresSink into a fresh schema and reads the CPU its server backend
used from /proc (the server runs on this machine), so the figure is the database's own work per event: the
COPY, index upkeep, commit. The best of --repeats runs is printed. Compare commits by running it on each
(the sink writes only the latest schema, so older schemas cannot be measured side by side).

    .venv/bin/python -m bench.store [--events 200000] [--repeats 2]
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

    t0 = datetime.now(UTC) - timedelta(minutes=5)  # today's partition, as the pipeline writes
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


def measure(events: int) -> dict:
    from streamer.db import connect
    from streamer.db.migrations import migrate
    from streamer.sink import PostgresSink

    schema = f"bench_store_{uuid.uuid4().hex[:8]}"
    with connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = with_search_path(DATABASE_URL, schema)
    try:
        with connect(url) as conn:
            migrate(conn)
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
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    runs = [measure(args.events) for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["postgres_us_per_event"])
    print(
        f"PostgreSQL {best['postgres_us_per_event']} µs CPU / stored event, "
        f"sink wall {best['wall_us_per_event']} µs / event ({args.events:,} events, best of {args.repeats})",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
