"""Per Loghub system: how often the decoder's level and message agree with Loghub's structured CSV.

Usage: .venv/bin/python -m bench.formats   (reads ../shared/data/loghub relative to the repo; research data)
"""

from __future__ import annotations

import csv
import sys
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


def main() -> int:
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
