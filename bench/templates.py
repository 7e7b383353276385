"""Per-event cost of template mining (streamer.templates) on a loghub sample: cold (drain3 clustering)
versus warm (masked-text cache hit). `python -m bench.templates`; prints µs per event and the ratio."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from streamer.templates import TemplateMiners

_LOGHUB = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "loghub"


def _lines(limit: int = 2000) -> list[str]:
    files = sorted(_LOGHUB.glob("OpenSSH/*.log")) + sorted(_LOGHUB.glob("HDFS/*.log"))
    lines: list[str] = []
    for path in files:
        with path.open(errors="replace") as handle:
            lines += [line.rstrip("\n") for _, line in zip(range(limit), handle)]
    return lines


def main() -> int:
    lines = _lines()
    if not lines:
        print(f"no loghub data under {_LOGHUB}", file=sys.stderr)
        return 1
    miners = TemplateMiners()
    start = time.perf_counter()
    for line in lines:
        miners.template_of("svc", line)
    cold = (time.perf_counter() - start) / len(lines) * 1e6
    start = time.perf_counter()
    for line in lines:
        miners.template_of("svc", line)
    warm = (time.perf_counter() - start) / len(lines) * 1e6
    print(f"events={len(lines)} first_pass_us_per_event={cold:.1f} cached_us_per_event={warm:.1f} "
          f"ratio={cold / warm:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
