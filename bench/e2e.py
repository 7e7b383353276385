"""`make bench`: the end-to-end benchmark of `streamer run` against the real stack (Kafka + PostgreSQL).

Every part runs on fresh topics (input 6 partitions), a fresh consumer group and a fresh database schema,
dropped afterwards (--keep keeps them).

1. throughput   N events (default 500,000; the workload's realistic mix, ~1 % invalid) are pre-loaded, then
                one `streamer run` process starts from the beginning; the clock runs until the group's
                committed offsets reach the end. Also: time per stage (the process's /metrics), events
                over time, peak RSS (VmHWM), start-up to first commit, where the CPU went.
2. original     the original design (bench/baseline.py): per-message vectorizer + RandomForest calls,
                row-by-row INSERT + commit, produce + flush per message, on a smaller N; ratio of events/s.
3. latency      a paced producer at 5,000 events/s for 60 s; latency = arrival of the scored record on the
                output topic (wall clock) minus the input's CreateTime, matched by its source.* headers.
4. scaling      1 and then 2 processes in one group on 6 partitions, the same pre-loaded N each.
5. model load   Scorer.load in a fresh interpreter.
6. growth       bench/growth.py: events/s and the README's user queries with 0, 5 M and 20 M rows stored.

Results: bench/results/e2e.json, e2e.md, throughput.png, latency.png. Targets are printed as PASS/FAIL.

    .venv/bin/python bench/e2e.py [--events N] [--quick] [--skip-latency] [--skip-scaling] [--skip-original]
                              [--skip-growth] [--growth-rows 0,5000000,20000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ would be first on sys.path, and bench/profile.py would shadow the standard `profile`.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.e2e_report import stack_cores
from bench.harness import (
    BENCH_INVALID_KINDS,
    BOOTSTRAP,
    PARTITIONS,
    CpuMeter,
    OffsetWatcher,
    RunEnv,
    kill_all,
    preload,
    run_until_caught_up,
    stage_seconds,
    start_streamer,
)
from testkit.pipeline import StreamerProcess
from testkit.workload import workload

RESULTS = ROOT / "bench" / "results"
STAGES = ("poll", "decode", "score", "store", "publish", "commit")

TARGETS = {
    "throughput_events_per_s": 20_000,
    "original_ratio": 1_000,
    "latency_p99_ms": 500,
    "peak_rss_mb": 300,
    "first_commit_s": 2.0,
    "scaling_ratio": 1.5,
    "templates_ratio": 0.9,  # issue 13: template mining and statistics on, within 10 % of the figure without
}


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- 1. throughput, footprint ---------------------------------------------------------------------------------


def log_times(output: str, started_wall: float) -> dict[str, float]:
    """Seconds after the process started at which its start-up log lines appeared."""
    from datetime import datetime

    marks = {
        "database migrated": " is migrated",
        "model loaded, subscribed": "consuming ",
        "partitions assigned": "assigned ",
    }
    out: dict[str, float] = {}
    for line in output.splitlines():
        for name, text in marks.items():
            if name not in out and text in line:
                try:
                    stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                except ValueError:
                    continue
                out[name] = round(stamp - started_wall, 3)
    return out


def rate_series(
    samples: list[tuple[float, int]], t0: float, step: float = 0.5, window: float = 4.0
) -> list[tuple[float, float]]:
    """Committed events per second over a sliding `window`, every `step` seconds, from (monotonic time,
    committed total) samples. Commits come a batch at a time, so a short window would only show steps."""
    import bisect

    if not samples:
        return []
    times = [t for t, _ in samples]

    def committed_at(t: float) -> int:
        i = bisect.bisect_right(times, t)
        return samples[i - 1][1] if i else 0

    series = []
    t = t0 + step
    while t <= times[-1] + step:
        start = max(t0, t - window)
        series.append((round(t - t0, 2), round((committed_at(t) - committed_at(start)) / (t - start), 1)))
        t += step
    return series


def throughput_run(
    n: int,
    seed: int,
    keep: bool,
    label: str = "throughput",
    processes: int = 1,
    prefill=None,
    schema_version: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict:
    """prefill(env) -> rows: stores history in the fresh schema before the run (bench/growth.py);
    schema_version: migrate the fresh schema only that far (None: every migration); extra_env: settings of
    the `streamer run` processes (e.g. STREAMER_TEMPLATES)."""
    env = RunEnv.create(label, schema_version)
    procs: list[StreamerProcess] = []
    try:
        stored_before = prefill(env) if prefill is not None else 0
        values, keys, invalid = workload(n, 0.01, seed=seed, kinds=BENCH_INVALID_KINDS)
        payload = sum(len(v) for v in values)
        started = time.monotonic()
        ends = preload(env.raw, values, keys)
        total = sum(ends.values())
        log(
            f"{label}: pre-loaded {total:,} events ({len(invalid):,} invalid, {payload / 1e6:.0f} MB) in "
            f"{time.monotonic() - started:.1f}s; starting {processes} `streamer run` process(es)"
        )
        del values, keys
        watcher = OffsetWatcher(env.group, env.raw)
        walls = []
        for i in range(processes):
            walls.append(time.time())
            procs.append(start_streamer(env, f"{label}-{i}", extra_env))
        cpu = CpuMeter([p.pid for p in procs]).start()
        scrapes: list[tuple[float, float]] = []
        last_scrape = [0.0]

        def scrape(now: float) -> None:
            if now - last_scrape[0] >= 1.0:
                last_scrape[0] = now
                try:
                    scrapes.append((now, sum(p.metrics().get("streamer_events_in_total", 0) for p in procs)))
                except OSError:
                    pass  # not serving yet

        times = run_until_caught_up(procs, watcher, total, timeout=max(300.0, n / 500), on_tick=scrape)
        cpu_used = cpu.stop()
        t0 = min(p.started for p in procs)
        per_process = []
        stages: dict[str, float] = {s: 0.0 for s in STAGES}
        batches = 0.0
        for p in procs:
            m = p.metrics()
            st = stage_seconds(m)
            for s in STAGES:
                stages[s] += st.get(s, {}).get("sum", 0.0)
            batches += st.get("score", {}).get("count", 0.0)
            status = p.proc_status()
            per_process.append(
                {
                    "events_in": int(m.get("streamer_events_in_total", 0)),
                    "events_scored": int(m.get("streamer_events_scored_total", 0)),
                    "dead_letters": int(sum(v for k, v in m.items() if k.startswith("streamer_dead_letters_total"))),
                    "peak_rss_mb": round(status.get("VmHWM", 0) / 1024, 1),
                    "start_up": log_times(p.output(), walls[procs.index(p)]),
                }
            )
        codes = [p.stop() for p in procs]
        first_sample = next((s for s in watcher.samples if s[1] > 0), None)
        steady_s = times["caught_up_s"] - times["first_commit_s"]
        steady_events = total - (first_sample[1] if first_sample else 0)
        rows = {table: count - stored_before for table, count in env.row_counts().items()}
        dead = sum(end_offsets_dlq(env).values())
        stage_total = sum(stages.values())
        result = {
            "events": total,
            "invalid": len(invalid),
            "payload_mb": round(payload / 1e6, 1),
            "processes": processes,
            "first_commit_s": round(times["first_commit_s"], 3),
            "caught_up_s": round(times["caught_up_s"], 3),
            "events_per_s": round(steady_events / steady_s, 1) if steady_s > 0 else None,
            "events_per_s_with_start_up": round(total / times["caught_up_s"], 1),
            "stage_seconds": {s: round(v, 3) for s, v in stages.items()},
            "stage_share": {s: round(v / stage_total, 3) for s, v in stages.items()} if stage_total else {},
            "stage_us_per_event": {s: round(1e6 * v / total, 1) for s, v in stages.items()},
            "batches": int(batches),
            "cpu_cores_used": cpu_used,
            "stack_restarted": cpu.restarted,
            "per_process": per_process,
            "peak_rss_mb": max(pp["peak_rss_mb"] for pp in per_process),
            "rss_over_time_mb": [(round(t - t0, 2), round(v, 1)) for p in procs[:1] for t, v in p.rss_samples],
            "committed_over_time": [(round(t - t0, 3), c) for t, c in watcher.samples],
            "rate_over_time": rate_series(watcher.samples, t0),
            "events_in_over_time": [(round(t - t0, 2), c) for t, c in scrapes],
            "check": {
                "stored_rows": rows,
                "expected_stored": total - len(invalid),
                "dead_letters": dead,
                "exit_codes": codes,
            },
        }
        watcher.close()
        ok = rows["log_entries"] == total - len(invalid) and rows["ml_predictions"] == total - len(invalid)
        log(
            f"{label}: {total:,} events committed {times['caught_up_s']:.1f}s after start "
            f"(first commit at {times['first_commit_s']:.2f}s): {result['events_per_s']:,} events/s steady, "
            f"{result['events_per_s_with_start_up']:,} with start-up; rows {'OK' if ok else 'MISMATCH ' + str(rows)}"
        )
        return result
    finally:
        kill_all(procs)
        if not keep:
            env.drop()


def end_offsets_dlq(env: RunEnv) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": "bench-probe", "log_level": 3})
    try:
        return {0: c.get_watermark_offsets(TopicPartition(env.deadletter, 0), timeout=10)[1]}
    finally:
        c.close()


def model_load(repeats: int = 3) -> dict:
    """Import and Scorer.load times in a fresh interpreter (the first run also warms the page cache)."""
    code = (
        "import time; t0 = time.perf_counter(); from streamer.ml.scorer import Scorer; "
        "t1 = time.perf_counter(); Scorer.load('models'); t2 = time.perf_counter(); "
        "print(t1 - t0, t2 - t1)"
    )
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        runs.append([float(x) for x in out.stdout.split()])
    return {
        "import_s": round(statistics.median(r[0] for r in runs), 3),
        "load_s": round(statistics.median(r[1] for r in runs), 3),
        "runs": [[round(a, 3), round(b, 3)] for a, b in runs],
        "model_bytes": sum(f.stat().st_size for f in (ROOT / "models").iterdir() if f.is_file()),
    }


# --- 2. the original design --------------------------------------------------------------------------------


def original_run(n: int, seed: int, keep: bool) -> dict:
    from bench.baseline import run_original, train_original

    log("original: training the original design's models (2 x TF-IDF + 100-tree RandomForest)")
    models = train_original()
    env = RunEnv.create("original")
    try:
        values, keys, _invalid = workload(n, 0.01, seed=seed, kinds=BENCH_INVALID_KINDS)
        preload(env.raw, values, keys)
        log(f"original: processing {n:,} pre-loaded events one by one (trained in {models.train_seconds:.1f}s)")
        cpu = CpuMeter([]).start()  # the loop runs in this process: "benchmark driver"
        result = run_original(env, n, models)
        result["cpu_cores_used"] = cpu.stop()
        result["stack_restarted"] = cpu.restarted
        result["train_rows"] = models.train_rows
        result["train_seconds"] = round(models.train_seconds, 1)
        log(f"original: {result['events_per_s']:,} events/s ({result['ms_per_stored_event']} ms per event)")
        return result
    finally:
        if not keep:
            env.drop()


# --- 3. latency ---------------------------------------------------------------------------------------------


def latency_run(rate: int, seconds: float, warmup: float, seed: int, keep: bool) -> dict:
    from confluent_kafka import Consumer, Producer, TopicPartition

    env = RunEnv.create("latency")
    proc = None
    try:
        n = int(rate * (warmup + seconds))
        warm_n = int(rate * warmup)  # the first events warm the process up; reported apart
        values, keys, invalid = workload(n, 0.01, seed=seed, kinds=BENCH_INVALID_KINDS)
        proc = start_streamer(env, "latency")
        proc.wait_for_log("assigned ", timeout=120)
        created: dict[tuple[int, int], tuple[int, int]] = {}  # (partition, offset) -> (CreateTime ms, index)
        arrivals: list[tuple[int, int, float]] = []  # (source partition, source offset, arrival ms)
        stop_reading = threading.Event()

        reader = Consumer(
            {
                "bootstrap.servers": BOOTSTRAP,
                "group.id": env.group + "-reader",
                # The broker answers a waiting fetch as soon as a record arrives, so a long wait
                # adds no latency; a short one only loads the broker with empty fetches.
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 1,
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        reader.assign([TopicPartition(env.scored, p, 0) for p in range(PARTITIONS)])

        def read() -> None:
            while not stop_reading.is_set():
                msgs = reader.consume(num_messages=5000, timeout=0.05)
                now_ms = time.time() * 1000
                for m in msgs:
                    if m.error() is None:
                        h = dict(m.headers() or [])
                        arrivals.append((int(h["source.partition"]), int(h["source.offset"]), now_ms))
            reader.close()

        reading = threading.Thread(target=read, daemon=True)
        reading.start()
        time.sleep(1.0)  # the reader has fetched its (empty) partitions

        def delivered(index, err, msg) -> None:
            if err is None:
                created[(msg.partition(), msg.offset())] = (msg.timestamp()[1], index)

        producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 5, "compression.type": "lz4", "log_level": 3})
        cpu = CpuMeter([proc.pid]).start()
        log(f"latency: producing {rate:,} events/s for {warmup:g}s of warm-up + {seconds:g}s measured")
        sent = 0
        t0 = time.monotonic()
        behind_max = 0
        while sent < n:
            due = min(n, int(rate * (time.monotonic() - t0)))
            behind_max = max(behind_max, due - sent)
            while sent < due:
                try:
                    producer.produce(env.raw, values[sent], keys[sent], on_delivery=partial(delivered, sent))
                    sent += 1
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
            time.sleep(0.002)
        produce_seconds = time.monotonic() - t0
        producer.flush(30)
        cpu_used = cpu.stop()
        expected = n - len(invalid)
        deadline = time.monotonic() + 60
        while len(arrivals) < expected and time.monotonic() < deadline:
            proc.check_alive()
            time.sleep(0.1)
        stop_reading.set()
        reading.join(10)
        proc.stop()

        latencies, with_warmup, over_time = [], [], []
        t_first = min(c for c, _ in created.values()) if created else 0
        for p, o, arrived in arrivals:
            c, index = created.get((p, o), (None, None))
            if c is not None:
                with_warmup.append(arrived - c)
                if index >= warm_n:
                    latencies.append(arrived - c)
                over_time.append(((c - t_first) / 1000, arrived - c))
        latencies.sort()
        with_warmup.sort()
        expected_measured = (n - warm_n) - sum(1 for i in invalid if i >= warm_n)

        def pct(q: float, xs: list[float] = latencies) -> float | None:
            return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1) if xs else None

        result = {
            "rate_target": rate,
            "seconds": seconds,
            "warmup_seconds": warmup,
            "produced": sent,
            "rate_achieved": round(sent / produce_seconds, 1),
            "producer_max_behind": behind_max,
            "scored_received": len(arrivals),
            "matched": len(latencies),
            "expected_scored": expected_measured,
            "p50_ms": pct(0.50),
            "p95_ms": pct(0.95),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
            "with_warmup": {
                "p50_ms": pct(0.5, with_warmup),
                "p99_ms": pct(0.99, with_warmup),
                "max_ms": pct(1.0, with_warmup),
                "matched": len(with_warmup),
                "expected": expected,
            },
            "cpu_cores_used": cpu_used,
            "stack_restarted": cpu.restarted,
            "latencies_ms": [round(x, 1) for x in latencies],
            "over_time": [(round(t, 3), round(v, 1)) for t, v in over_time[:: max(1, len(over_time) // 20_000)]],
        }
        log(
            f"latency: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms "
            f"({len(latencies):,} of {expected_measured:,} matched after {warmup:g}s of warm-up; with it p99 "
            f"{result['with_warmup']['p99_ms']} ms; producer rate {result['rate_achieved']:,}/s)"
        )
        return result
    finally:
        if proc is not None:
            kill_all([proc])
        if not keep:
            env.drop()


# --- run it all -----------------------------------------------------------------------------------------

QUIET_CORES = 0.3  # CPU used by other processes above which the figures are marked as disturbed


def ceiling_ratio(cpu: dict) -> float:
    """The most any number of processes could gain over this run on this machine: the cores divided by the
    cores the stack (streamers, broker, PostgreSQL) used for this run's throughput."""
    stack = stack_cores(cpu)
    return round(cpu["cores"] / stack, 2) if stack else float("inf")


def background_cores(seconds: float = 2.0) -> float:
    """Cores used by processes other than the broker, PostgreSQL and this one."""
    meter = CpuMeter([]).start()
    time.sleep(seconds)
    return meter.stop()["everything else"]


def wait_quiet(limit: float) -> float:
    """Wait up to `limit` seconds for other processes to leave the cores alone; returns what they use."""
    deadline = time.monotonic() + limit
    busy = background_cores()
    while busy > QUIET_CORES and time.monotonic() < deadline:
        log(f"other processes use {busy:.2f} cores; waiting for a quieter machine")
        busy = background_cores(5.0)
    if busy > QUIET_CORES:
        log(
            f"WARNING: other processes use {busy:.2f} of {os.cpu_count()} cores: the figures will be "
            "lower than on a quiet machine"
        )
    return round(busy, 2)


def verdicts(r: dict) -> list[tuple[str, bool | None, str]]:
    out = []
    t = r.get("throughput")
    if t:
        out.append(
            (
                f"throughput >= {TARGETS['throughput_events_per_s']:,} events/s end to end (1 process)",
                t["events_per_s"] >= TARGETS["throughput_events_per_s"],
                f"{t['events_per_s']:,.0f} events/s",
            )
        )
    tm = r.get("templates")
    if t and tm:
        ratio = tm["events_per_s"] / t["events_per_s"]
        r["templates_ratio"] = round(ratio, 3)
        out.append(
            (
                f"templates on (STREAMER_TEMPLATES=on) within {1 - TARGETS['templates_ratio']:.0%} of off",
                ratio >= TARGETS["templates_ratio"],
                f"{tm['events_per_s']:,.0f} vs {t['events_per_s']:,.0f} events/s ({ratio:.2f}x)",
            )
        )
    o = r.get("original")
    if t and o:
        ratio = t["events_per_s"] / o["events_per_s"]
        r["original_ratio"] = round(ratio, 1)
        detail = f"{ratio:,.0f}x ({t['events_per_s']:,.0f} vs {o['events_per_s']:,.1f} events/s)"
        need = TARGETS["original_ratio"] * o["events_per_s"]
        c = t["cpu_cores_used"]
        scale = need / t["events_per_s"]
        needed = stack_cores(c) * scale
        if ratio < TARGETS["original_ratio"] and needed > c["cores"]:
            # The CPU per event the stack used in the throughput run rules the target out on this machine.
            detail += (
                f"; {TARGETS['original_ratio']:,}x is {need:,.0f} events/s, for which the stack would need "
                f"{needed:.1f} of the {c['cores']:.0f} cores at this run's CPU per event (PostgreSQL "
                f"alone {c['postgresql'] * scale:.1f})"
            )
        out.append(
            (
                f">= {TARGETS['original_ratio']:,}x the original design's events/s",
                ratio >= TARGETS["original_ratio"],
                detail,
            )
        )
    lat = r.get("latency")
    if lat:
        out.append(
            (
                f"p99 <= {TARGETS['latency_p99_ms']} ms at {lat['rate_target']:,} events/s",
                lat["p99_ms"] is not None
                and lat["p99_ms"] <= TARGETS["latency_p99_ms"]
                and lat["matched"] >= 0.99 * lat["expected_scored"],
                f"p99 {lat['p99_ms']} ms (p50 {lat['p50_ms']}, p95 {lat['p95_ms']}; "
                f"{lat['matched']:,}/{lat['expected_scored']:,} scored)",
            )
        )
    if t:
        out.append(
            (
                f"peak RSS <= {TARGETS['peak_rss_mb']} MB",
                t["peak_rss_mb"] <= TARGETS["peak_rss_mb"],
                f"{t['peak_rss_mb']} MB (VmHWM)",
            )
        )
        out.append(
            (
                f"first commit <= {TARGETS['first_commit_s']:g} s after start",
                t["first_commit_s"] <= TARGETS["first_commit_s"],
                f"{t['first_commit_s']:.2f} s",
            )
        )
    s = r.get("scaling")
    if s:
        out.append(
            (
                f"2 processes >= {TARGETS['scaling_ratio']}x one process",
                s["ratio"] >= TARGETS["scaling_ratio"],
                f"{s['ratio']:.2f}x ({s['one']['events_per_s']:,.0f} -> {s['two']['events_per_s']:,.0f} "
                f"events/s; machine busy {s['two']['cpu_cores_used']['machine total']:.2f} of "
                f"{s['two']['cpu_cores_used']['cores']:.0f} cores"
                + (
                    f"; the machine allows at most {s['ceiling_ratio']:.2f}x: the limit is the cores)"
                    if s.get("ceiling_ratio", 99) < TARGETS["scaling_ratio"]
                    else ")"
                ),
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000, help="pre-loaded events for the throughput run")
    parser.add_argument("--original-events", type=int, default=1_000, help="events for the original design")
    parser.add_argument("--latency-rate", type=int, default=5_000, help="events/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="measured part of the latency run")
    parser.add_argument(
        "--latency-warmup", type=float, default=5.0, help="seconds of load before the measured part (reported apart)"
    )
    parser.add_argument(
        "--scaling-events",
        type=int,
        default=500_000,
        help="pre-loaded events per scaling run (long enough that the second member's join "
        "and the ramp-up do not dominate)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20,000 events, 200 original, 3 + 10 s latency, 20,000 per scaling run",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-templates", action="store_true", help="leave out the run with STREAMER_TEMPLATES=on")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-original", action="store_true")
    parser.add_argument("--skip-growth", action="store_true", help="leave out bench/growth.py's run")
    parser.add_argument(
        "--growth-rows", default="0,5000000,20000000", help="stored-row counts of the growth run (bench/growth.py)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the topics and schemas of the runs")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each part, wait up to this long for other processes to use < 0.3 cores",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory (default bench/results)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.original_events, args.scaling_events = 20_000, 200, 20_000
        args.latency_seconds, args.latency_warmup = 10.0, 3.0

    from bench import e2e_report

    began = time.monotonic()
    results: dict = {
        "command": e2e_report.command_line(),
        "machine": e2e_report.machine(),
        "code": e2e_report.code_version(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "targets": TARGETS,
        "load_before": e2e_report.load_average(),
    }
    log(
        f"machine: {results['machine']['cpu_model']}, {results['machine']['cores']} cores, "
        f"{results['machine']['memory_gib']} GiB; load average {results['load_before']}"
    )
    results["background_cores"] = {}

    def part(name: str, fn) -> None:
        """One part, tried twice: a failure (the stack restarted under it, a timeout) is recorded, and the rest
        still runs."""
        for attempt in (1, 2):
            results["background_cores"][name] = wait_quiet(args.wait_quiet)
            try:
                results[name] = fn()
                results.get("errors", {}).pop(name, None)
                return
            except Exception as err:  # noqa: BLE001 (reported, and the exit code says so)
                log(f"{name}: FAILED (attempt {attempt} of 2): {type(err).__name__}: {err}")
                results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"[:3000]
                results.setdefault("retried", {})[name] = results["errors"][name]
                time.sleep(10)  # a restarting server comes back

    def scaling() -> dict:
        one = throughput_run(args.scaling_events, seed=45, keep=args.keep, label="scale1", processes=1)
        two = throughput_run(args.scaling_events, seed=45, keep=args.keep, label="scale2", processes=2)
        return {
            "events": args.scaling_events,
            "one": one,
            "two": two,
            "ratio": round(two["events_per_s"] / one["events_per_s"], 2),
            "ceiling_ratio": ceiling_ratio(one["cpu_cores_used"]),
        }

    part("throughput", lambda: throughput_run(args.events, seed=42, keep=args.keep))
    if not args.skip_templates:  # the same events with template mining and statistics on
        part(
            "templates",
            lambda: throughput_run(
                args.events, seed=42, keep=args.keep, label="templates", extra_env={"STREAMER_TEMPLATES": "on"}
            ),
        )
    part("model_load", model_load)
    if "model_load" in results:
        log(f"model load: import {results['model_load']['import_s']}s + Scorer.load {results['model_load']['load_s']}s")
    if not args.skip_original:
        part("original", lambda: original_run(args.original_events, seed=43, keep=args.keep))
    if not args.skip_latency:
        part(
            "latency",
            lambda: latency_run(args.latency_rate, args.latency_seconds, args.latency_warmup, seed=44, keep=args.keep),
        )
    if not args.skip_scaling:
        part("scaling", scaling)
    if not args.skip_growth:
        from bench import growth

        sizes = [0, 20_000] if args.quick else [int(x) for x in args.growth_rows.split(",")]
        part("growth", lambda: growth.run(sizes, 20_000 if args.quick else 200_000, query_runs=50, keep=args.keep))
        if "growth" in results:
            (args.out).mkdir(parents=True, exist_ok=True)
            (args.out / "growth.md").write_text(growth.markdown(results["growth"]))
    results["load_after"] = e2e_report.load_average()
    results["total_seconds"] = round(time.monotonic() - began, 1)
    results["verdicts"] = [
        {"target": name, "pass": ok, "measured": measured} for name, ok, measured in verdicts(results)
    ]

    args.out.mkdir(parents=True, exist_ok=True)
    e2e_report.write(results, args.out)
    print()
    print((args.out / "e2e.md").read_text())
    for v in results["verdicts"]:
        print(f"{'PASS' if v['pass'] else 'FAIL'}  {v['target']}: {v['measured']}")
    busy, restarted = e2e_report._disturbed(results)
    for part, cores in busy:
        print(f"NOTE  other processes used {cores:.2f} cores during {part}: figures are lower than on a quiet machine")
    for part, names in restarted:
        print(f"NOTE  {', '.join(names)} restarted during {part}: that run includes the outage")
    for name, error in results.get("errors", {}).items():
        print(f"ERROR {name}: {error.splitlines()[0]}")
    print(
        f"\nbench: done in {results['total_seconds'] / 60:.1f} min; results in "
        f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}/"
    )
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
