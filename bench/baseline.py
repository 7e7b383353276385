"""The original design, as the yardstick for `make bench`: a simple per-message loop.

Per model (log level, anomaly): its own TfidfVectorizer(max_features=1000, stop_words='english') and a
100-tree RandomForestClassifier. Per message: poll one record, parse it, one vectorizer call and one
predict_proba per model, one INSERT per table and a database commit, one produce and a producer flush.
Offsets are auto-committed by the consumer, as such a loop usually does.

    .venv/bin/python bench/baseline.py --events 1000     # on a fresh topic and schema of its own
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ would be first on sys.path, and bench/profile.py would shadow the standard `profile`.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import BENCH_INVALID_KINDS, BOOTSTRAP, RunEnv, preload
from streamer.levels import normalise
from testkit.workload import workload


@dataclass
class OriginalModels:
    level_vectorizer: object
    level_forest: object
    anomaly_vectorizer: object
    anomaly_forest: object
    train_rows: int
    train_seconds: float


def train_original(rows: int = 20_000, seed: int = 1) -> OriginalModels:
    """Fit both models on the built-in corpus (training uses both cores; prediction stays per message)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    from streamer.ml.corpus import generate

    started = time.perf_counter()
    events = generate(rows, seed=seed)
    messages = [e["message"] for e in events]
    levels = [e["labels"]["level"] for e in events]
    anomalies = [bool(e["labels"]["is_anomaly"]) for e in events]
    fitted = []
    for labels in (levels, anomalies):
        vectorizer = TfidfVectorizer(max_features=1000, stop_words="english")
        features = vectorizer.fit_transform(messages)
        forest = RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed).fit(features, labels)
        forest.n_jobs = None  # predict one message at a time, as the original did
        fitted += [vectorizer, forest]
    return OriginalModels(*fitted, rows, time.perf_counter() - started)


def _severity(level: str | None, anomaly: bool) -> str:
    if level in ("ERROR", "FATAL"):
        return "critical" if anomaly else "high"
    if level == "WARN":
        return "high" if anomaly else "medium"
    return "medium" if anomaly else "low"


def _parse(value: bytes | None) -> dict | None:
    """JSON object or a text line; None for what cannot be processed (skipped, as the original did)."""
    if not value:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith("{"):
        try:
            obj = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict) or not isinstance(obj.get("message"), str) or not obj["message"]:
            return None
        return obj
    return {"message": text}


def run_original(env: RunEnv, total: int, models: OriginalModels, timeout: float = 600.0) -> dict:
    """Process `total` pre-loaded records of env.raw one by one; returns counts and events/s."""
    import psycopg
    from confluent_kafka import Consumer, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": env.group + "-original",
            "auto.offset.reset": "earliest",
            "log_level": 3,
        }
    )
    producer = Producer({"bootstrap.servers": BOOTSTRAP, "log_level": 3})
    conn = psycopg.connect(env.db_url)
    consumer.subscribe([env.raw])
    m = models
    level_classes = list(m.level_forest.classes_)
    anomaly_column = list(m.anomaly_forest.classes_).index(True)
    seen = stored = skipped = 0
    spent = {"score": 0.0, "store": 0.0, "publish": 0.0}
    clock = time.perf_counter
    started = None
    deadline = time.monotonic() + timeout
    try:
        while seen < total:
            if time.monotonic() > deadline:
                raise RuntimeError(f"original design: {seen} of {total} records after {timeout:.0f}s")
            msg = consumer.poll(1.0)
            if msg is None or msg.error() is not None:
                continue
            if started is None:
                started = time.perf_counter()
            seen += 1
            event = _parse(msg.value())
            if event is None:
                skipped += 1
                continue
            text = event["message"]
            t_score = clock()
            proba = m.level_forest.predict_proba(m.level_vectorizer.transform([text]))[0]
            predicted = level_classes[int(proba.argmax())]
            anomaly_score = float(
                m.anomaly_forest.predict_proba(m.anomaly_vectorizer.transform([text]))[0][anomaly_column]
            )
            is_anomaly = anomaly_score >= 0.5
            declared = normalise(event.get("log.level") or event.get("level"))
            severity = _severity(declared or predicted, is_anomaly)
            t_store = clock()
            coords = (msg.topic(), msg.partition(), msg.offset())
            ts = event.get("@timestamp")
            try:
                event_time = datetime.fromisoformat(ts.replace("Z", "+00:00")) if isinstance(ts, str) else None
            except ValueError:
                event_time = None
            conn.execute(
                "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, event_time, level, "
                "message, host, service, raw) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    *coords,
                    event_time or datetime.now(UTC),
                    declared,
                    text,
                    event.get("host.name"),
                    event.get("service.name"),
                    orjson.dumps(event).decode(),
                ),
            )
            conn.execute(
                "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, model_version, "
                "predicted_level, level_confidence, is_anomaly, anomaly_score, severity) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (*coords, "original", predicted, float(proba.max()), is_anomaly, anomaly_score, severity),
            )
            conn.commit()
            t_publish = clock()
            out = dict(
                event,
                streamer={
                    "predicted_level": predicted,
                    "is_anomaly": is_anomaly,
                    "anomaly_score": anomaly_score,
                    "severity": severity,
                },
            )
            producer.produce(env.scored, orjson.dumps(out), msg.key())
            producer.flush()
            spent["score"] += t_store - t_score
            spent["store"] += t_publish - t_store
            spent["publish"] += clock() - t_publish
            stored += 1
        elapsed = time.perf_counter() - started
    finally:
        consumer.close()
        conn.close()
    return {
        "events": seen,
        "stored": stored,
        "skipped": skipped,
        "seconds": round(elapsed, 3),
        "events_per_s": round(seen / elapsed, 2),
        "ms_per_stored_event": {k: round(1000 * v / max(stored, 1), 3) for k, v in spent.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--train-rows", type=int, default=20_000)
    args = parser.parse_args()
    models = train_original(args.train_rows)
    print(f"trained on {models.train_rows:,} rows in {models.train_seconds:.1f}s")
    env = RunEnv.create("original")
    try:
        values, keys, _ = workload(args.events, 0.01, seed=11, kinds=BENCH_INVALID_KINDS)
        preload(env.raw, values, keys)
        result = run_original(env, len(values), models)
    finally:
        env.drop()
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
