"""Capacity on bigger hardware, from the CPU each part spent per event in `make bench` (docs/scaling.md).

Inputs (measured, bench/results/): e2e.json's throughput run gives the cores the streamer, the broker and
PostgreSQL used for its events/s, hence µs of CPU per event for each; growth.json gives WAL bytes per event.
Two answers per deployment:
  - the bound: the smallest of N processes x 1 core / streamer µs, PostgreSQL cores x usable share /
    PostgreSQL µs, WAL bandwidth / WAL bytes, broker cores / broker µs (partitions cap N);
  - a discrete-event simulation of the pipeline itself: each process scores batch k+1 on its own core while
    batch k waits for (FIFO) and then uses one of PostgreSQL's cores and then the one WAL stream, at most 2 batches in flight (as
    streamer's pipelined mode does). It shows where queueing at the database makes the bound optimistic.

    .venv/bin/python -m bench.capacity            # tables to stdout and bench/results/capacity.md
"""

from __future__ import annotations

import heapq
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PG_USABLE = 0.7  # share of PostgreSQL's cores left for inserts: vacuum, checkpoints, queries need the rest
BATCH = 5_000


@dataclass(frozen=True)
class Costs:
    streamer_us: float
    postgres_us: float
    broker_us: float
    wal_bytes: float
    measured_events_per_s: float
    source: str


@dataclass(frozen=True)
class Deployment:
    name: str
    processes: int
    partitions: int
    postgres_cores: int
    wal_mb_per_s: float  # sustained WAL write bandwidth of the database's disk
    broker_cores: int
    postgres_cost: float = 1.0  # x the measured PostgreSQL µs (0.5: issue 14's cheaper writes)


def measured_costs(results: Path = RESULTS) -> Costs:
    e2e = json.loads((results / "e2e.json").read_text())
    run = e2e["throughput"]
    rate, cores = run["events_per_s"], run["cpu_cores_used"]
    wal = 1_450.0  # bench/growth.py on this machine, when growth.json is absent
    growth = results / "growth.json"
    if growth.exists():
        runs = json.loads(growth.read_text()).get("runs") or []
        if runs and runs[0].get("wal_bytes_per_event"):
            wal = float(runs[0]["wal_bytes_per_event"])
    return Costs(
        1e6 * cores["streamer"] / rate,
        1e6 * cores["postgresql"] / rate,
        1e6 * cores["kafka broker"] / rate,
        wal,
        rate,
        f"e2e.json (commit {e2e['code']['commit']})",
    )


def bound(c: Costs, d: Deployment) -> tuple[float, str]:
    limits = {
        "streamer processes": min(d.processes, d.partitions) * 1e6 / c.streamer_us,
        "PostgreSQL CPU": d.postgres_cores * PG_USABLE * 1e6 / (c.postgres_us * d.postgres_cost),
        "WAL bandwidth": d.wal_mb_per_s * 1e6 / (c.wal_bytes * d.postgres_cost),
        "broker CPU": d.broker_cores * 1e6 / max(c.broker_us, 1e-9),
    }
    name = min(limits, key=lambda k: limits[k])
    return limits[name], name


def simulate(c: Costs, d: Deployment, seconds: float = 30.0, in_flight: int = 2) -> float:
    """Events/s of the pipeline model over `seconds` of simulated time (see the module docstring)."""
    n = min(d.processes, d.partitions)
    score_s = BATCH * c.streamer_us / 1e6
    store_s = BATCH * c.postgres_us * d.postgres_cost / 1e6 / PG_USABLE
    wal_s = BATCH * c.wal_bytes * d.postgres_cost / (d.wal_mb_per_s * 1e6)
    wal_free = 0.0  # one WAL stream: batches' WAL is written one after another
    pg_free = [0.0] * d.postgres_cores  # when each PostgreSQL core is next free
    heapq.heapify(pg_free)
    stored = 0
    # Per process: the time its core is free to score, and the completion times of its batches in flight.
    events: list[tuple[float, int]] = [(0.0, p) for p in range(n)]  # (time the process can start scoring, p)
    heapq.heapify(events)
    pending: list[list[float]] = [[] for _ in range(n)]
    while events:
        t, p = heapq.heappop(events)
        if t >= seconds:
            continue
        pending[p] = [x for x in pending[p] if x > t]
        if len(pending[p]) >= in_flight:  # wait for the oldest batch to be stored
            heapq.heappush(events, (min(pending[p]), p))
            continue
        scored_at = t + score_s
        core = heapq.heappop(pg_free)
        inserted = max(core, scored_at) + store_s
        heapq.heappush(pg_free, inserted)
        wal_free = done = max(wal_free, inserted) + wal_s
        pending[p].append(done)
        if done <= seconds:
            stored += BATCH
        heapq.heappush(events, (scored_at, p))
    return stored / seconds


DEPLOYMENTS = (
    Deployment("1x: 1 process, 8-core PostgreSQL", 1, 6, 8, 500, 4),
    Deployment("4 processes, 8-core PostgreSQL", 4, 12, 8, 500, 4),
    Deployment("10x: 10 processes, 16-core PostgreSQL", 10, 24, 16, 1_000, 8),
    Deployment("10x, cheaper writes (PostgreSQL µs / 2)", 10, 24, 16, 1_000, 8, 0.5),
    Deployment("100x: 100 processes, one 64-core PostgreSQL", 100, 128, 64, 2_000, 24),
    Deployment("100x: 100 processes, Citus 8 workers x 32 cores", 100, 128, 256, 16_000, 24, 0.5),
)


def table(c: Costs) -> str:
    out = [
        f"Measured ({c.source}, {c.measured_events_per_s:,.0f} events/s on 2 cores): streamer "
        f"{c.streamer_us:.1f} µs, PostgreSQL {c.postgres_us:.1f} µs, broker {c.broker_us:.1f} µs of CPU and "
        f"{c.wal_bytes:,.0f} B of WAL per event.",
        "",
        "| deployment | bound events/s | limited by | simulated events/s |",
        "|---|---:|---|---:|",
    ]
    for d in DEPLOYMENTS:
        b, why = bound(c, d)
        out.append(f"| {d.name} | {b:,.0f} | {why} | {simulate(c, d):,.0f} |")
    return "\n".join(out) + "\n"


def main() -> int:
    text = (
        "# Capacity from measured costs\n\n"
        + table(measured_costs())
        + "\nCommand: `.venv/bin/python -m bench.capacity`; the reasoning is in docs/scaling.md.\n"
    )
    (RESULTS / "capacity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
