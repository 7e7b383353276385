"""Per Loghub system: how often the decoder's level and message agree with Loghub's structured CSV; and how
fast the decoder reads records.

Usage: .venv/bin/python -m bench.formats           (reads ../shared/data/loghub relative to the repo; research data)
       .venv/bin/python -m bench.formats --speed   (decode records per CPU second, one core, best of 5)
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

from streamer.decode import Decoder, Event
from streamer.levels import normalise

ROOT = Path(__file__).resolve().parents[1]
LOGHUB = ROOT.parent / "shared" / "data" / "loghub"


def agreement(system_dir: Path) -> tuple[int, float | None, float]:
    """(lines, level agree % or None when Loghub gives no level, message agree %) for one system."""
    log = next(system_dir.glob("*_2k.log"))
    structured = next(system_dir.glob("*_structured*.csv"))
    with open(structured, newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    lines = log.read_bytes().split(b"\n")
    decoder = Decoder()
    level_hits = message_hits = 0
    has_level = "Level" in rows[0] and any(normalise(r["Level"]) for r in rows)
    for row, line in zip(rows, lines):
        (item,) = decoder.decode(line, topic="t", partition=0, offset=0)[:1]
        got_message = item.message.strip() if isinstance(item, Event) else None
        got_level = item.level if isinstance(item, Event) else None
        message_hits += got_message == row["Content"].strip()
        if has_level:
            level_hits += got_level == normalise(row["Level"])
    n = len(rows)
    return n, (100.0 * level_hits / n if has_level else None), 100.0 * message_hits / n


def systems() -> list[Path]:
    return sorted(p for p in LOGHUB.iterdir() if p.is_dir() and any(p.glob("*_2k.log")))


def _rate(decoder: Decoder, values: list[bytes], repeats: int = 5) -> float:
    """Records per CPU second of this process (the 2-core box is shared: wall time would count waiting)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for i, value in enumerate(values):
            decoder.decode(value, topic="logs.raw", partition=0, offset=i, timestamp_ms=1_700_000_000_000)
        best = min(best, time.process_time() - t0)
    return len(values) / best


def speed() -> list[tuple[str, int, float]]:
    """(input, records, records/s) for the e2e workload's mix, and for the raw Loghub lines when present."""
    from testkit.workload import workload

    try:  # one core, as bench.speed
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    decoder = Decoder()
    mixes = [("testkit.workload (85 % ECS JSON, 15 % text, 1 % invalid)", workload(20000, seed=0)[0])]
    if LOGHUB.is_dir():
        per_system = [
            (d.name, [line for line in next(d.glob("*_2k.log")).read_bytes().split(b"\n") if line]) for d in systems()
        ]
        mixes.append((f"Loghub raw lines ({len(per_system)} systems)", [v for _, lines in per_system for v in lines]))
        mixes += [(f"  {name}", lines) for name, lines in per_system]
    return [(name, len(values), _rate(decoder, values)) for name, values in mixes]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true", help="print decode records/s instead of the agreement table")
    args = ap.parse_args(argv)
    if args.speed:
        print(f"{'input':<58} {'records':>8} {'records/s':>10}")
        for name, n, rate in speed():
            print(f"{name:<58} {n:>8} {rate:>10,.0f}")
        return 0
    if not LOGHUB.is_dir():
        print(f"no Loghub data at {LOGHUB}", file=sys.stderr)
        return 1
    print(f"{'system':<12} {'lines':>6} {'level agree %':>14} {'message agree %':>16}")
    for system_dir in systems():
        n, level, message = agreement(system_dir)
        level_text = "no level" if level is None else f"{level:.1f}"
        print(f"{system_dir.name:<12} {n:>6} {level_text:>14} {message:>16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
