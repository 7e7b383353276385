"""Speed benchmark: messages/s of the default model at batch sizes 1..10,000, one core, against the original
design's one-message-at-a-time path. A benchmark, not a test.

    .venv/bin/python -m bench.speed [--models DIR]     # prints a table, writes bench/results/speed.{json,md}

"ours" = Scorer.score(batch): one vectorizer transform (masking, tokenising, TF-IDF) + the level model +
the anomaly model + severity, for the whole batch. "original" = per message: TfidfVectorizer.transform,
then RandomForest(100 trees) predict + predict_proba for the level model and again for the anomaly model
(both fitted here on 20,000 built-in corpus events, TfidfVectorizer(max_features=1000,
stop_words='english')). "ours + template mining" adds streamer.templates.TemplateMiners.assign, which `streamer
run` runs on every batch. Inputs are unseen built-in corpus messages. The process is pinned to one CPU and
BLAS/OpenMP to one thread; each figure is the best of 3 runs.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BATCHES = (1, 100, 1000, 10000)
TARGET_BATCH_1000 = 40000
TARGET_RATIO = 1000


def _best_rate(fn, n_messages: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_messages / best


def at_1000_rate(rows) -> float:
    return next(r["messages_per_s"] for r in rows if r["batch"] == 1000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("STREAMER_MODELS_DIR", str(ROOT / "models")))
    ap.add_argument(
        "--original-messages",
        type=int,
        default=300,
        help="messages timed on the original per-message path (default 300)",
    )
    args = ap.parse_args(argv)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass

    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    from streamer.ml.corpus import generate
    from streamer.ml.scorer import Scorer
    from streamer.templates import TemplateMiners

    scorer = Scorer.load(args.models)
    corpus = generate(20000, seed=4242)
    messages = [e["message"] for e in corpus]
    services = [e.get("service.name") for e in corpus]
    scorer.score(messages[:1000])  # warm-up
    rows = []
    for b in BATCHES:
        total = 2000 if b == 1 else 20000
        batches = [messages[i % 20000 : i % 20000 + b] for i in range(0, total, b)]

        def run(batches=batches):
            for batch in batches:
                scorer.score(batch)

        rate = _best_rate(run, total)
        rows.append({"batch": b, "messages_per_s": round(rate), "us_per_message": round(1e6 / rate, 2)})
        print(f"ours batch {b:>6}: {rate:>10,.0f} msg/s", file=sys.stderr)

    # template mining as `streamer run` does it per batch (TemplateMiners.assign, batch 1,000): the first pass
    # over the 20,000 messages mines each new masked message with drain3; later passes are the steady state
    miners = TemplateMiners()
    chunks = [(services[i : i + 1000], messages[i : i + 1000]) for i in range(0, 20000, 1000)]
    t0 = time.perf_counter()
    for svc, batch in chunks:
        miners.assign(svc, batch)
    first_pass = (time.perf_counter() - t0) / 20000 * 1e6
    steady = 1e6 / _best_rate(lambda: [miners.assign(svc, batch) for svc, batch in chunks], 20000)
    templates = {
        "batch": 1000,
        "first_pass_us_per_message": round(first_pass, 2),
        "steady_us_per_message": round(steady, 2),
        "distinct_templates": len(miners),
    }
    print(f"templates batch 1000: first pass {first_pass:.2f} µs/msg, steady {steady:.2f} µs/msg", file=sys.stderr)

    # the original design, fitted on corpus events, scored one message at a time
    train = generate(20000, seed=99)
    vec = TfidfVectorizer(max_features=1000, stop_words="english")
    X = vec.fit_transform([e["message"] for e in train])
    rf_level = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(
        X, [e["labels"]["level"] for e in train]
    )
    rf_anom = RandomForestClassifier(n_estimators=100, random_state=0, n_jobs=1).fit(
        X, [e["labels"]["is_anomaly"] for e in train]
    )
    sample = messages[: args.original_messages]

    def original():
        for m in sample:
            x = vec.transform([m])
            rf_level.predict(x)
            rf_level.predict_proba(x)
            rf_anom.predict(x)
            rf_anom.predict_proba(x)

    orig_rate = _best_rate(original, len(sample), repeats=2)
    print(f"original per message: {orig_rate:,.1f} msg/s", file=sys.stderr)
    at_1000 = at_1000_rate(rows)
    result = {
        "model_version": scorer.model_version,
        "models": str(args.models),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "one_core": True,
        "ours": rows,
        "templates": templates,
        "original_per_message": {"messages_per_s": round(orig_rate, 1), "messages_timed": len(sample)},
        "ratio_batch_1000_vs_original": round(at_1000 / orig_rate, 1),
        "targets": {"batch_1000_messages_per_s": TARGET_BATCH_1000, "ratio": TARGET_RATIO},
    }
    lines = [
        "# Speed benchmark",
        "",
        f"Default model {scorer.model_version}, one core, unseen built-in corpus messages, best of 3.",
        "",
        "| path | batch | messages/s | µs/message |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| ours (Scorer.score) | {r['batch']:,} | {r['messages_per_s']:,} | {r['us_per_message']} |")
    with_templates = 1e6 / (1e6 / at_1000_rate(rows) + templates["steady_us_per_message"])
    lines.append(
        f"| ours + template mining (Scorer.score + TemplateMiners.assign, steady state) | 1,000 | "
        f"{with_templates:,.0f} | {1e6 / with_templates:.2f} |"
    )
    lines.append(
        f"| original (per message: TF-IDF + 2 × RandomForest(100) predict + predict_proba) | 1 | "
        f"{orig_rate:,.1f} | {1e6 / orig_rate:,.0f} |"
    )
    lines += [
        "",
        f"Ratio at batch 1,000 vs the original per-message path: **{result['ratio_batch_1000_vs_original']:,}×**"
        f" (target ≥ {TARGET_RATIO:,}×); batch 1,000: {at_1000:,} msg/s (target ≥ {TARGET_BATCH_1000:,}).",
    ]
    lines += [
        "",
        f"Template mining (`streamer run` with STREAMER_TEMPLATES=on mines every event): {templates['steady_us_per_message']} µs/message"
        f" in the steady state, {templates['first_pass_us_per_message']} µs/message on a first pass over "
        f"20,000 messages ({templates['distinct_templates']:,} templates, each new masked message mined by "
        "drain3 once).",
    ]
    md = "\n".join(lines) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "speed.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
