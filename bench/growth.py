"""Cost as data grows: end-to-end events/s and the README's user queries with 0, 5 M and 20 M rows stored,
with daily partitions (the schema today) and without (schema 6, before migration 7).

For each size, a fresh migrated schema is filled with that many stored events (and one prediction each)
spread over the last 30 days, then:
  - the user queries of README "Querying what was stored" run `--query-runs` times each: p50 / p99 ms;
  - the throughput run of bench/e2e.py (pre-loaded events, one `streamer run`) measures events/s on top.
The history is written with INSERT … SELECT generate_series: secondary indexes and foreign keys are dropped
for the load and rebuilt after it (the same indexes the migrations create, so the run sees real index sizes).

    .venv/bin/python -m bench.growth [--rows 0,5000000,20000000] [--events 200000] [--variants partitioned[,plain]]
`make bench` runs it as its last part (bench/e2e.py --skip-growth leaves it out).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import RunEnv

RESULTS = ROOT / "bench" / "results"
HISTORY_TOPIC = "growth.history"  # not the run's topic: the history never collides with new keys
SERVICES = 20
CHUNK = 1_000_000

# The user queries (README "Querying what was stored"), with their times bound as parameters as an API or a
# dashboard binds them (then the planner prunes partitions and estimates from the days in range; `now() - …`
# is pruned only when the query runs, after a plan made for every partition). Written for the partitioned
# schema: the join includes event_time and both tables are filtered by it. plain() turns them into what schema 5 (no ml_predictions.event_time) needs.
USER_QUERIES = {
    "recent anomalies": """
        SELECT e.event_time, e.service, e.host, e.message, p.severity, p.anomaly_score
        FROM (SELECT * FROM ml_predictions WHERE is_anomaly AND event_time >= %(since_day)s
              ORDER BY event_time DESC LIMIT 50) p
        JOIN log_entries e USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
        WHERE e.event_time >= %(since_day)s
        ORDER BY p.event_time DESC""",
    "severity per service, last 24 h by hour": """
        SELECT hour, service, severity, sum(events) AS events
        FROM severity_hours
        WHERE hour >= %(since_day_hour)s
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3""",
    "one service, last hour": """
        SELECT e.event_time, e.level, e.host, e.message, p.severity, p.is_anomaly
        FROM log_entries e
        JOIN ml_predictions p USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
        WHERE e.service = %(service)s AND e.event_time >= %(since_hour)s
          AND p.event_time >= %(since_hour)s
        ORDER BY e.event_time DESC
        LIMIT 500""",
}

# Before migration 8 (no severity_hours, no anomalies index on event time), as the README had them.
JOINED_RECENT = """
        SELECT e.event_time, e.service, e.host, e.message, p.severity, p.anomaly_score
        FROM ml_predictions p
        JOIN log_entries e USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
        WHERE p.is_anomaly AND p.event_time >= %(since_day)s
        ORDER BY p.predicted_at DESC
        LIMIT 50"""
JOINED_SEVERITY = """
        SELECT date_trunc('hour', e.event_time) AS hour, e.service, p.severity, count(*)
        FROM log_entries e
        JOIN ml_predictions p USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
        WHERE e.event_time >= %(since_day)s AND p.event_time >= %(since_day)s
        GROUP BY 1, 2, 3
        ORDER BY 1, 2, 3"""


def plain(sql: str) -> str:
    """The query for schema 5: no event_time in ml_predictions, so none in the join or its filter."""
    if "severity_hours" in sql:
        sql = JOINED_SEVERITY
    if "LIMIT 50) p" in sql:
        sql = JOINED_RECENT
    sql = sql.replace("record_index, event_time)", "record_index)")
    return re.sub(r"\s+AND p\.event_time >= %\(since_\w+\)s", "", sql)


_FILL_ENTRIES = """
INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, record_index, event_time, level, message,
                         host, service)
SELECT %(topic)s, i %% 6, i, 0, %(base)s::timestamptz - (i * %(span_s)s / %(total)s) * interval '1 second',
       (ARRAY['INFO','INFO','INFO','INFO','INFO','INFO','WARN','ERROR','DEBUG','INFO'])[1 + i %% 10],
       'request ' || i || ' handled in ' || (i %% 997) || ' ms by worker ' || (i %% 31),
       'host-' || (i %% 50), 'service-' || (i %% %(services)s)
FROM generate_series(%(start)s, %(stop)s) AS i"""

_FILL_PREDICTIONS = """
INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, record_index, model_version,
                            predicted_level, level_confidence, is_anomaly, anomaly_score, severity, predicted_at
                            {event_time_column})
SELECT %(topic)s, i %% 6, i, 0, 'm-growth',
       (ARRAY['INFO','INFO','INFO','INFO','INFO','INFO','WARN','ERROR','DEBUG','INFO'])[1 + i %% 10], 0.9,
       i %% 100 = 0, (i %% 100) / 100.0,
       (ARRAY['low','low','low','low','low','low','medium','high','low','critical'])[1 + i %% 10],
       %(base)s::timestamptz - (i * %(span_s)s / %(total)s) * interval '1 second'
       {event_time_value}
FROM generate_series(%(start)s, %(stop)s) AS i"""


_FILL_SEVERITY_HOURS = """
INSERT INTO severity_hours AS h (hour, service, severity, model_version, events)
SELECT date_trunc('hour', p.event_time, 'UTC'), e.service, p.severity, p.model_version, count(*)
FROM ml_predictions p
JOIN log_entries e USING (kafka_topic, kafka_partition, kafka_offset, record_index, event_time)
WHERE p.kafka_topic = %(topic)s
GROUP BY 1, 2, 3, 4
ON CONFLICT ON CONSTRAINT severity_hours_key DO UPDATE SET events = h.events + excluded.events"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def fill(env: RunEnv, rows: int, days: float = 30.0) -> dict:
    """`rows` stored events + predictions in env's schema; indexes rebuilt; returns load timings."""
    from streamer.db import connect

    if rows <= 0:
        return {"rows": 0, "load_s": 0.0, "index_s": 0.0}
    started = time.monotonic()
    with connect(env.db_url) as conn:
        conn.autocommit = True
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        from streamer.partitions import is_partitioned

        partitioned = is_partitioned(conn)
        # Partitioned, a prediction carries its entry's event time (the same expression as the entry's).
        predictions_sql = _FILL_PREDICTIONS.format(
            event_time_column=", event_time" if partitioned else "",
            event_time_value=", %(base)s::timestamptz - (i * %(span_s)s / %(total)s) * interval '1 second'"
            if partitioned
            else "",
        )
        if partitioned:  # every day of the history gets its partition, as the keeper would have made
            today = datetime.now(UTC).date()
            for ago in range(int(days) + 2):
                conn.execute("SELECT streamer_day_partition(%s)", (today - timedelta(days=ago),))
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename IN ('log_entries', 'ml_predictions') AND indexname NOT LIKE '%%pkey'",  # parents only
            (schema,),
        ).fetchall()
        foreign = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND connamespace = %s::regnamespace "
            "AND conrelid::regclass::text IN ('ml_predictions', 'anomaly_labels')",
            (schema,),
        ).fetchall()
        for table, name, _ in foreign:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        params = {
            "topic": HISTORY_TOPIC,
            "span_s": days * 86400,
            "total": rows,
            "services": SERVICES,
            "base": datetime.now(UTC),
        }  # one clock for both tables' rows
        for start in range(0, rows, CHUNK):
            bounds = {**params, "start": start, "stop": min(rows, start + CHUNK) - 1}
            conn.execute(_FILL_ENTRIES, bounds)
            conn.execute(predictions_sql, bounds)
            log(f"growth: {min(rows, start + CHUNK):,} / {rows:,} rows written")
        loaded = time.monotonic()
        for _, definition in indexes:
            conn.execute(definition)
        for table, name, definition in foreign:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        if partitioned:  # the counts the sink would have added as it stored the history (migration 8)
            conn.execute(_FILL_SEVERITY_HOURS, {"topic": HISTORY_TOPIC})
        conn.execute("ANALYZE log_entries")
        conn.execute("ANALYZE ml_predictions")
    done = time.monotonic()
    return {"rows": rows, "load_s": round(loaded - started, 1), "index_s": round(done - loaded, 1)}


def query_latency(env: RunEnv, runs: int) -> dict[str, dict[str, float]]:
    """p50 / p99 / max ms of each user query over `runs` executions (after one warm-up each)."""
    from streamer.db import connect

    out: dict[str, dict[str, float]] = {}
    with connect(env.db_url) as conn:
        conn.autocommit = True
        from streamer.partitions import is_partitioned

        partitioned = is_partitioned(conn)
        for name, sql in USER_QUERIES.items():
            sql = sql if partitioned else plain(sql)
            times = []
            for i in range(runs + 1):
                now = datetime.now(UTC)
                args = {
                    "service": f"service-{i % SERVICES}",
                    "since_day": now - timedelta(days=1),
                    "since_day_hour": (now - timedelta(days=1)).replace(minute=0, second=0, microsecond=0),
                    "since_hour": now - timedelta(hours=1),
                }
                t = time.perf_counter()
                conn.execute(sql, args).fetchall()
                if i:  # the first run warms the cache
                    times.append((time.perf_counter() - t) * 1000)
            times.sort()
            out[name] = {
                "p50_ms": round(statistics.median(times), 2),
                "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 2),
                "max_ms": round(times[-1], 2),
            }
    return out


def _wal_lsn() -> int:
    """The server's WAL position in bytes: the difference over a run is the WAL it wrote (whole server)."""
    from bench.harness import DATABASE_URL
    from streamer.db import connect

    with connect(DATABASE_URL) as conn:
        return int(conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0])


VARIANTS = {"partitioned": None, "plain": 6}  # schema version to migrate to (None: latest)


def run(
    sizes: list[int], events: int, query_runs: int, keep: bool = False, variants: tuple[str, ...] = ("partitioned",)
) -> dict:
    from bench.e2e import throughput_run

    results: dict = {"sizes": sizes, "events": events, "query_runs": query_runs, "runs": []}
    for variant, size in ((v, s) for v in variants for s in sizes):
        found: dict = {}

        def prefill(env: RunEnv, size: int = size, found: dict = found) -> int:
            before = _wal_lsn()
            found["fill"] = fill(env, size)
            found["wal_fill_bytes"] = _wal_lsn() - before
            found["queries"] = query_latency(env, query_runs)
            log(
                f"growth: {size:,} rows stored; queries "
                + ", ".join(f"{k}: p50 {v['p50_ms']} / p99 {v['p99_ms']} ms" for k, v in found["queries"].items())
            )
            return size

        wal_before = _wal_lsn()
        run_result = throughput_run(
            events,
            seed=46,
            keep=keep,
            label=f"growth-{variant}-{size // 1_000_000}m",
            prefill=prefill,
            schema_version=VARIANTS[variant],
        )
        wal_bytes = _wal_lsn() - wal_before - found.get("wal_fill_bytes", 0)
        results["runs"].append(
            {
                "variant": variant,
                "stored_rows": size,
                **found,
                "events_per_s": run_result["events_per_s"],
                "wal_bytes_per_event": round(wal_bytes / events),
                "cpu_cores_used": run_result["cpu_cores_used"],
                "stage_us_per_event": run_result["stage_us_per_event"],
            }
        )
    for r in results["runs"]:
        empty = next((x for x in results["runs"] if x["variant"] == r["variant"] and x["stored_rows"] == 0), None)
        base = empty["events_per_s"] if empty else None
        r["vs_empty"] = round(r["events_per_s"] / base, 3) if base and r["events_per_s"] else None
    return results


def markdown(results: dict) -> str:
    names = list(USER_QUERIES)
    out = [
        "# Cost as data grows",
        "",
        f"End-to-end events/s of one `streamer run` on {results['events']:,} pre-loaded events, and the user "
        f"queries' latency ({results['query_runs']} runs each), with rows already stored: daily partitions "
        "(`partitioned`, the schema today) and one table each (`plain`, schema 6).",
        "",
        "| schema | stored rows | load + index s | events/s | vs empty | WAL B/event | "
        + " | ".join(f"{n} p50 / p99 ms" for n in names)
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    for r in results["runs"]:
        q = r.get("queries", {})
        out.append(
            f"| {r.get('variant', 'plain')} | {r['stored_rows']:,} | {r['fill']['load_s']} + {r['fill']['index_s']} | "
            f"{r['events_per_s']:,.0f} | {r['vs_empty']} | {r['wal_bytes_per_event']:,} | "
            + " | ".join(f"{q[n]['p50_ms']} / {q[n]['p99_ms']}" for n in names)
            + " |"
        )
    out += ["", "Command: `.venv/bin/python -m bench.growth` (and `make bench`)."]
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="0,5000000,20000000", help="comma-separated stored-row counts")
    parser.add_argument("--events", type=int, default=200_000, help="pre-loaded events per throughput run")
    parser.add_argument("--query-runs", type=int, default=50)
    # plain: streamer run migrates it to partitions as it starts, so only its query figures are valid
    parser.add_argument("--variants", default="partitioned", help="partitioned, plain or both")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    results = run(
        sizes, args.events, args.query_runs, args.keep, tuple(v.strip() for v in args.variants.split(",") if v.strip())
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "growth.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "growth.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
