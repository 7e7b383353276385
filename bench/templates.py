"""Template mining on the Loghub samples. `python -m bench.templates` prints the per-event cost of
streamer.templates (cold: drain3 clustering, warm: masked-text cache hit); grouping() is the accuracy table
bench.quality prints.

Grouping accuracy (Zhu et al., ICSE-SEIP 2019): a line is parsed right when the set of lines sharing its
mined template equals the set sharing its EventTemplate (the ground truth column); the score is the share of
lines parsed right. Compared on the same lines: streamer.templates (drain3 behind our masks), plain drain3
(its default config, no masks), and the detector's own key (streamer.ml.models.template_keys over the
vectorizer fitted on that system's lines).
"""

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


def grouping_accuracy(truth: list[str], mined: list) -> float:
    """Share of lines whose mined group is exactly their ground-truth group."""
    from collections import defaultdict

    by_truth, by_mined = defaultdict(set), defaultdict(set)
    for i, (t, m) in enumerate(zip(truth, mined, strict=True)):
        by_truth[t].add(i)
        by_mined[m].add(i)
    right = sum(len(rows) for rows in by_mined.values() if by_truth[truth[next(iter(rows))]] == rows)
    return right / max(len(truth), 1)


def _plain_drain3(messages: list[str]) -> list[int]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
    # a cluster's template generalises as lines arrive; group by the final template, as the benchmark does
    final = {c.cluster_id: c.get_template() for c in miner.drain.clusters}
    return [final[i] for i in ids]


def grouping(system: str) -> dict | None:
    """Grouping accuracy of three miners on one system's structured sample (None when it is absent)."""
    import csv

    from streamer.ml.features import LogVectorizer
    from streamer.ml.models import template_keys

    path = _LOGHUB / system / f"{system}_2k.log_structured_corrected.csv"
    if not path.exists():
        return None
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    messages, truth = [r["Content"] for r in rows], [r["EventTemplate"] for r in rows]
    miners = TemplateMiners()
    ours = [miners.template_of("", m)[0] for m in messages]
    vec = LogVectorizer(min_df=1).fit(messages)
    feats = vec.transform(messages)
    keys = template_keys(feats.X, None, messages, feats.familiarity).tolist()
    return {
        "system": system,
        "lines": len(messages),
        "templates_truth": len(set(truth)),
        "streamer_templates": round(grouping_accuracy(truth, ours), 4),
        "drain3_default": round(grouping_accuracy(truth, _plain_drain3(messages)), 4),
        "detector_key": round(grouping_accuracy(truth, keys), 4),
    }


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
    print(
        f"events={len(lines)} first_pass_us_per_event={cold:.1f} cached_us_per_event={warm:.1f} "
        f"ratio={cold / warm:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
