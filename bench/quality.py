"""Quality benchmark on real logs (Loghub samples in ../shared/data/loghub). A benchmark, not a test.

    .venv/bin/python -m bench.quality        # prints tables, writes bench/results/quality.{json,md}

Part 1, per system: train on the first 80 % of the system's lines (structured CSV: Content + Level mapped
with streamer.levels.normalise; BGL's Label column gives anomalies, `-` is normal), score the last 20 %.
Level macro-F1 is computed over the levels present in the test truth, for systems whose data holds >= 2
levels; BGL also gets anomaly precision/recall/F1. The same numbers are computed in the same run for the
ORIGINAL design: TfidfVectorizer(max_features=1000, stop_words='english') + a 100-tree RandomForest per model.

Part 2, confidence on unfamiliar data: the model trained on the built-in corpus only (the default model's
recipe) scores every line of each system that has levels: accuracy of the predictions with confidence
>= 0.9, and the share of predictions that confident.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from streamer.levels import LEVELS, normalise
from streamer.ml.train import evaluate_predictions, train, train_corpus

ROOT = Path(__file__).resolve().parent.parent
LOGHUB = ROOT.parent / "shared" / "data" / "loghub"
RESULTS = ROOT / "bench" / "results"
CONFIDENT = 0.9


def load_system(name: str):
    """(messages, levels or None, anomalies or None) in file (= time) order."""
    path = LOGHUB / name / f"{name}_2k.log_structured_corrected.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    messages = [r["Content"] for r in rows]
    levels = None
    if "Level" in rows[0]:
        mapped = [normalise(r["Level"]) for r in rows]
        if sum(v is not None for v in mapped) >= 0.9 * len(rows):  # Linux: the column holds host names
            levels = mapped
    anomalies = None
    if "Label" in rows[0]:
        anomalies = [r["Label"].strip() != "-" for r in rows]
        if not any(anomalies):  # Thunderbird's sample: all normal, nothing to detect
            anomalies = None
    return messages, levels, anomalies


def original_design(train_msgs, train_levels, train_anom, test_msgs, seed=0):
    """The original pipeline: TF-IDF(1000, English stop words) + RandomForest(100) per model."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(max_features=1000, stop_words="english")
    Xtr = vec.fit_transform(train_msgs)
    Xte = vec.transform(test_msgs)
    pred_levels, anom_score = None, None
    if train_levels is not None:
        lab = np.array([v is not None for v in train_levels])
        y = np.array(train_levels, dtype=object)[lab].astype(str)
        if len(set(y)) >= 2:
            rf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1).fit(Xtr[lab], y)
            pred_levels = rf.predict(Xte).tolist()
        else:
            pred_levels = [y[0]] * len(test_msgs)
    if train_anom is not None and any(train_anom):
        rf = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1).fit(Xtr, train_anom)
        anom_score = rf.predict_proba(Xte)[:, list(rf.classes_).index(True)]
    return pred_levels, anom_score


def run_system(name: str) -> dict | None:
    messages, levels, anomalies = load_system(name)
    if levels is None and anomalies is None:
        return None
    n = len(messages)
    split = int(round(n * 0.8))
    test_levels = levels[split:] if levels else None
    row: dict = {"system": name, "lines": n, "train": split, "test": n - split,
                 "levels_in_data": sorted({v for v in (levels or []) if v}, key=LEVELS.index),
                 "levels_in_test": sorted({v for v in (test_levels or []) if v}, key=LEVELS.index)}
    ours = train(messages[:split], levels[:split] if levels else None,
                 anomalies[:split] if anomalies else None, source=f"loghub {name} first 80%")
    from streamer.ml.scorer import Scorer

    scorer = Scorer(ours.vectorizer, ours.level_model, ours.anomaly_model,
                    {"model_version": "bench", "anomaly_threshold": ours.anomaly_threshold})
    cols = scorer.score(messages[split:])
    m_ours = evaluate_predictions(test_levels or [None] * (n - split), cols.predicted_level,
                                  anomalies[split:] if anomalies else None, cols.anomaly_score,
                                  scorer.anomaly_threshold)
    t0 = time.perf_counter()
    pred_orig, score_orig = original_design(messages[:split], levels[:split] if levels else None,
                                            anomalies[:split] if anomalies else None, messages[split:])
    row["original_seconds"] = round(time.perf_counter() - t0, 2)
    m_orig = evaluate_predictions(test_levels or [None] * (n - split),
                                  pred_orig if pred_orig is not None else [None] * (n - split),
                                  anomalies[split:] if anomalies else None,
                                  score_orig if score_orig is not None else np.zeros(n - split), 0.5)
    if anomalies:
        # the same detector without labels: unsupervised template rarity, judged against the labels
        unsup = train(messages[:split], levels[:split] if levels else None, None, source=f"{name} unlabelled")
        u_scores = unsup.anomaly_model.score(unsup.vectorizer.transform(messages[split:]))
        row["unsupervised_anomaly"] = evaluate_predictions(
            [None] * (n - split), [None] * (n - split), anomalies[split:], u_scores,
            unsup.anomaly_threshold)["anomaly"]
    multi = len(row["levels_in_data"]) >= 2
    row["ours"] = {"level": m_ours["level"] if multi else None, "anomaly": m_ours["anomaly"]}
    row["original"] = {"level": m_orig["level"] if multi else None, "anomaly": m_orig["anomaly"]}
    return row


THRESHOLDS = (0.5, 0.7, CONFIDENT)


def confidence_stats(name: str, messages, levels, scorer) -> dict:
    cols = scorer.score(messages)
    truth = np.array(levels, dtype=object)
    pred = np.array(cols.predicted_level, dtype=object)
    conf = cols.level_confidence
    out = {"system": name, "lines": len(messages),
           "accuracy_all": round(float(np.mean(pred == truth)), 4),
           "mean_confidence": round(float(conf.mean()), 4), "at": {}}
    for t in THRESHOLDS:
        sure = conf >= t
        out["at"][str(t)] = {
            "share": round(float(sure.mean()), 4), "count": int(sure.sum()),
            "accuracy": round(float(np.mean(pred[sure] == truth[sure])), 4) if sure.any() else None}
    return out


def confidence_on(name: str, scorer) -> dict | None:
    messages, levels, _ = load_system(name)
    if levels is None:
        return None
    return confidence_stats(name, messages, levels, scorer)


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def markdown(results: dict) -> str:
    out = ["# Quality benchmark", "",
           "Chronological split per system: train on the first 80 % of its 2,000 lines, score the last 20 %.",
           "Macro-F1 over the levels present in the test truth. `original` = TfidfVectorizer(max_features=1000, "
           "stop_words='english') + RandomForest(100 trees) per model.", "",
           "| system | levels in data | levels in test | macro-F1 ours | macro-F1 original | accuracy ours "
           "| accuracy original | anomaly P/R/F1 ours | anomaly P/R/F1 original |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in results["systems"]:
        lo, lg = r["ours"]["level"], r["original"]["level"]
        ao, ag = r["ours"]["anomaly"], r["original"]["anomaly"]
        out.append(
            f"| {r['system']} | {' '.join(r['levels_in_data']) or '—'} | {' '.join(r['levels_in_test']) or '—'} "
            f"| {_fmt(lo and lo['macro_f1'])} | {_fmt(lg and lg['macro_f1'])} "
            f"| {_fmt(lo and lo['accuracy'])} | {_fmt(lg and lg['accuracy'])} "
            f"| {'/'.join(_fmt(ao[k]) for k in ('precision', 'recall', 'f1')) if ao else '—'} "
            f"| {'/'.join(_fmt(ag[k]) for k in ('precision', 'recall', 'f1')) if ag else '—'} |")
    for r in results["systems"]:
        u = r.get("unsupervised_anomaly")
        if u:
            out += ["", f"{r['system']} anomalies WITHOUT labels (our unsupervised template-rarity detector, "
                    f"threshold {u['threshold']}): precision {_fmt(u['precision'])}, recall {_fmt(u['recall'])}, "
                    f"F1 {_fmt(u['f1'])}, ROC-AUC {_fmt(u['roc_auc'])}."]
    out += ["", "Per-class F1 (ours / original):", ""]
    for r in results["systems"]:
        lo, lg = r["ours"]["level"], r["original"]["level"]
        if lo:
            parts = [f"{c} {lo['per_class'][c]['f1']:.3f}/{lg['per_class'][c]['f1']:.3f} "
                     f"(n={lo['per_class'][c]['support']})" for c in lo["per_class"]]
            out.append(f"- {r['system']}: " + ", ".join(parts))
    out += ["", f"## Confidence when trained on the built-in corpus only ({results['corpus_model']})", "",
            "Every line of each system scored. `share >= t`: share of predictions with level_confidence >= t "
            "(count); `accuracy >= t`: accuracy of those predictions. The first row is unseen data from the "
            "corpus's own distribution, for contrast.", "",
            "| system | accuracy (all) | mean confidence | "
            + " | ".join(f"share >= {t} | accuracy >= {t}" for t in THRESHOLDS) + " |",
            "|---|---|---|" + "---|---|" * len(THRESHOLDS)]
    for c in results["confidence"]:
        cells = " | ".join(f"{_fmt(c['at'][str(t)]['share'])} ({c['at'][str(t)]['count']}) | "
                           f"{_fmt(c['at'][str(t)]['accuracy'])}" for t in THRESHOLDS)
        out.append(f"| {c['system']} | {_fmt(c['accuracy_all'])} | {_fmt(c['mean_confidence'])} | {cells} |")
    s = results.get("synthetic")
    if s:
        out += ["", "## Built-in corpus hold-out (the default model's own metadata)", "",
                f"level accuracy {s['level']['accuracy']:.4f}, macro-F1 {s['level']['macro_f1']:.4f}; "
                f"anomaly P/R/F1 {s['anomaly']['precision']:.4f}/{s['anomaly']['recall']:.4f}/"
                f"{s['anomaly']['f1']:.4f}, ROC-AUC {s['anomaly']['roc_auc']}"]
    return "\n".join(out) + "\n"


def main() -> int:
    if not LOGHUB.is_dir():
        print(f"skipped: {LOGHUB} not found (the Loghub samples live in ../shared/data/loghub beside the repo)")
        return 0
    systems = sorted(p.name for p in LOGHUB.iterdir() if p.is_dir())
    results: dict = {"systems": [], "confidence": [], "skipped": []}
    for name in systems:
        row = run_system(name)
        if row is None:
            results["skipped"].append(f"{name}: no level column and no anomaly labels")
            continue
        results["systems"].append(row)
        print(f"{name}: done", file=sys.stderr)
    corpus_model = train_corpus()
    from streamer.ml.scorer import Scorer

    scorer = Scorer(corpus_model.vectorizer, corpus_model.level_model, corpus_model.anomaly_model,
                    {"model_version": "corpus", "anomaly_threshold": corpus_model.anomaly_threshold})
    results["corpus_model"] = corpus_model.metadata["training_data"]["source"]
    results["synthetic"] = corpus_model.metadata["metrics"]
    # familiar data first: a fresh stretch of the built-in corpus (another seed, never trained on)
    from streamer.ml.corpus import generate

    fresh = generate(20000, seed=12345)
    results["confidence"].append(confidence_stats(
        "built-in corpus, seed 12345 (familiar)", [e["message"] for e in fresh],
        [e["labels"]["level"] for e in fresh], scorer))
    for name in systems:
        c = confidence_on(name, scorer)
        if c:
            results["confidence"].append(c)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(results, indent=2) + "\n")
    md = markdown(results)
    (RESULTS / "quality.md").write_text(md)
    print(md)
    for s in results["skipped"]:
        print(f"skipped {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
