"""Reading labelled training/evaluation files: JSON lines or CSV.

Columns/keys: `message` (required; `Content` and ECS `message` accepted), optional `level` (also
`log.level`, `Level`; any vocabulary streamer.levels.normalise knows), optional `is_anomaly` (also `Label`,
where `-` means normal as in Loghub), optional `timestamp` (also `@timestamp`). Events produced by
streamer.ml.corpus carry their truth under `labels` and are read as such.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from streamer.errors import StreamerError

_MESSAGE_KEYS = ("message", "Content", "msg")
_LEVEL_KEYS = ("level", "log.level", "Level", "severity")
_ANOMALY_KEYS = ("is_anomaly", "anomaly", "Label", "label")
_TIME_KEYS = ("timestamp", "@timestamp", "Timestamp", "time")


@dataclass
class Dataset:
    messages: list[str]
    levels: list[object] | None
    is_anomaly: list[object] | None
    timestamps: list[object] | None
    source: str


def _first(row: dict, keys) -> object:
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
        if "." in k:  # nested ECS: {"log": {"level": ...}}
            head, _, tail = k.partition(".")
            sub = row.get(head)
            if isinstance(sub, dict) and tail in sub:
                return sub[tail]
    return None


def _anomaly_value(v):
    if isinstance(v, str):
        # Loghub's Label holds an alert category ("KERNDTLB") for anomalies and "-" for normal lines
        return v.strip().lower() not in ("", "-", "0", "false", "normal", "no", "n")
    return v


def _rows_jsonl(path: Path):
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise StreamerError(f"{path}:{lineno}: not valid JSON") from None
            if not isinstance(row, dict):
                raise StreamerError(f"{path}:{lineno}: expected a JSON object")
            labels = row.get("labels")
            if isinstance(labels, dict) and "level" in labels:  # built-in corpus events: truth lives here
                row = {**row, "level": labels.get("level"), "is_anomaly": labels.get("is_anomaly")}
            yield row


def _rows_csv(path: Path):
    with open(path, encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def read_dataset(path) -> Dataset:
    """Read a labelled file; raises StreamerError with one line on anything unusable."""
    p = Path(path)
    if not p.is_file():
        raise StreamerError(f"{p}: no such file")
    is_csv = p.suffix.lower() in (".csv", ".tsv")
    rows = list(_rows_csv(p) if is_csv else _rows_jsonl(p))
    if not rows:
        raise StreamerError(f"{p}: no rows")
    messages, levels, anomalies, times = [], [], [], []
    for i, row in enumerate(rows, 1):
        m = _first(row, _MESSAGE_KEYS)
        if m is None:
            raise StreamerError(f"{p}: row {i} has no message column ({', '.join(_MESSAGE_KEYS)})")
        messages.append(str(m))
        levels.append(_first(row, _LEVEL_KEYS))
        anomalies.append(_anomaly_value(_first(row, _ANOMALY_KEYS)))
        times.append(_first(row, _TIME_KEYS))
    return Dataset(
        messages=messages,
        levels=levels if any(v is not None for v in levels) else None,
        is_anomaly=anomalies if all(v is not None for v in anomalies) else None,
        timestamps=times if all(v is not None for v in times) else None,
        source=f"file {p.name} ({len(messages)} rows)",
    )
