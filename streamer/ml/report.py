"""Human-readable summaries of model metadata and metrics (shared by train, evaluate and status)."""

from __future__ import annotations


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def metrics_lines(metrics: dict) -> list[str]:
    lines = []
    lv = metrics.get("level")
    if lv:
        lines.append(f"level: accuracy {_f(lv['accuracy'])}  macro-F1 {_f(lv['macro_f1'])}  ({lv['samples']} rows)")
        for name, c in lv["per_class"].items():
            lines.append(
                f"  {name:<6} precision {_f(c['precision'])}  recall {_f(c['recall'])}  "
                f"F1 {_f(c['f1'])}  support {c['support']}"
            )
    else:
        lines.append("level: no level labels")
    an = metrics.get("anomaly")
    if an:
        lines.append(
            f"anomaly: precision {_f(an['precision'])}  recall {_f(an['recall'])}  F1 {_f(an['f1'])}"
            f"  ROC-AUC {_f(an['roc_auc'])}  ({an['positives']}/{an['samples']} positive, "
            f"threshold {an['threshold']})"
        )
    else:
        lines.append("anomaly: no anomaly labels (no metrics)")
    return lines


def summary_lines(meta: dict) -> list[str]:
    td = meta.get("training_data", {})
    am = meta.get("anomaly_model", {})
    lines = [
        f"model_version {meta.get('model_version')}  trained_at {meta.get('trained_at')}",
        f"training data: {td.get('source')}; {meta.get('num_training_samples')} rows",
        f"levels: {', '.join(meta.get('levels', []))}; features: {meta.get('feature_count')}",
        f"anomaly detector: {am.get('kind')}; threshold {meta.get('anomaly_threshold')}",
        f"evaluation: {meta.get('evaluation', {}).get('method')}",
        f"shipped model: {meta.get('evaluation', {}).get('shipped_model')}",
    ]
    return lines + metrics_lines(meta.get("metrics", {}))
