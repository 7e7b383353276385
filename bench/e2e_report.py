"""What bench/e2e.py writes: the machine's description, e2e.json, e2e.md and the two plots."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LIBRARIES = (
    "confluent-kafka",
    "scikit-learn",
    "numpy",
    "scipy",
    "orjson",
    "psycopg",
    "prometheus-client",
    "joblib",
    "matplotlib",
)


def command_line() -> str:
    exe = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return shlex.join([exe, script, *sys.argv[1:]])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _first(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text, re.M)
    return m.group(1).strip() if m else None


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    meminfo = Path("/proc/meminfo").read_text()
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pom = (ROOT / "pom.xml").read_text() if (ROOT / "pom.xml").exists() else ""
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20).stderr
        java_version = _first(r'version "([^"]+)"', java)
    except (OSError, subprocess.SubprocessError):
        java_version = None
    return {
        "cpu_model": _first(r"^model name\s*:\s*(.*)$", cpuinfo) or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(_first(r"^MemTotal:\s*(\d+)", meminfo) or 0) / 1024**2, 1),
        "os": _first(r'^PRETTY_NAME="?([^"\n]*)', os_release) or platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": _first(r"<kafka.version>([^<]+)</kafka.version>", pom),
        "java": java_version,
        "postgresql": _postgres_version(),
        "libraries": versions,
        "note": "Kafka broker and PostgreSQL run on the same machine as the streamer and the benchmark driver",
    }


def _postgres_version() -> str | None:
    from bench.harness import DATABASE_URL
    from streamer.db import connect

    try:
        with connect(DATABASE_URL) as conn:
            return conn.execute("show server_version").fetchone()[0]
    except Exception:
        return None


def code_version() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--", "streamer", "models").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_changes": changed}


# --- e2e.json / e2e.md --------------------------------------------------------------------------------------


def write(results: dict, out: Path) -> None:
    plot_throughput(results, out / "throughput.png")
    if results.get("latency"):
        plot_latency(results["latency"], out / "latency.png")
    text = json.dumps(_for_json(results), indent=1) + "\n"
    (out / "e2e.json").write_text(text)
    # Every run is also kept (git-ignored), to compare runs of a changing pipeline.
    history = ROOT / "bench" / "results" / "tmp"
    history.mkdir(parents=True, exist_ok=True)
    (history / f"e2e-{results['started_at'].replace(':', '')[:17]}.json").write_text(text)
    (out / "e2e.md").write_text(markdown(results))


def _for_json(results: dict) -> dict:
    """Everything but the per-event latencies (the plot has them; the JSON keeps a histogram)."""
    import numpy as np

    slim = json.loads(json.dumps(results, default=str))
    lat = slim.get("latency")
    if lat:
        values = lat.pop("latencies_ms")
        edges = [0, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 2000, 5000, 10_000, float("inf")]
        counts, _ = np.histogram(values, bins=edges)
        lat["histogram_ms"] = [
            {"from": a, "to": b if b != float("inf") else None, "count": int(c)}
            for a, b, c in zip(edges, edges[1:], counts)
        ]
        step = max(1, len(lat["over_time"]) // 2000)
        lat["over_time"] = lat["over_time"][::step]
    return slim


def _n(x, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = ["# streamer end-to-end benchmark", ""]
    lines += [
        f"- **When**: {r['started_at']}; took **{r['total_seconds'] / 60:.1f} min**.",
        f"- **Command**: `{r['command']}` (`make bench` runs `.venv/bin/python bench/e2e.py`).",
        f"- **Code**: commit {r['code']['commit']}"
        + (
            f" plus uncommitted changes in {', '.join(r['code']['uncommitted_changes'])}"
            if r["code"]["uncommitted_changes"]
            else ""
        )
        + ".",
        f"- **Machine**: {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']} "
        f"(kernel {m['kernel']}); {m['note']}. Load average before / after: "
        f"{r['load_before']} / {r.get('load_after')}.",
        f"- **Versions**: Python {m['python']}, Kafka {m['kafka']} (Java {m['java']}), "
        f"PostgreSQL {m['postgresql']}, " + ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v) + ".",
        "",
    ]

    disturbed, restarted = _disturbed(r)
    if disturbed:
        lines += [
            "> **The machine was not quiet.** Other processes (not the streamer, broker, PostgreSQL or "
            "this benchmark) used "
            + "; ".join(f"{c:.2f} cores during {part}" for part, c in disturbed)
            + f" of {m['cores']}. Those figures are lower (latencies higher) than on a quiet machine.",
            "",
        ]
    if restarted:
        lines += [
            "> **The stack restarted under the benchmark** (someone else's drill?): "
            + "; ".join(f"{', '.join(names)} during {part}" for part, names in restarted)
            + ". Those runs include the outage; run again.",
            "",
        ]
    for name, error in r.get("retried", {}).items():
        if name not in r.get("errors", {}):
            lines += [f"> {name} was run twice: the first attempt failed with `{error.splitlines()[0][:200]}`.", ""]
    for name, error in r.get("errors", {}).items():
        lines += [f"> **{name} failed**: `{error.splitlines()[0][:300]}`", ""]
    lines += ["## Targets", "", "| target | measured | |", "|---|---|---|"]
    for v in r["verdicts"]:
        lines.append(f"| {v['target']} | {v['measured']} | {'PASS' if v['pass'] else '**FAIL**'} |")
    lines.append("")

    t = r.get("throughput")
    if t:
        lines += [
            f"## Throughput: one process, {t['events']:,} pre-loaded events",
            "",
            f"{t['invalid']:,} of them invalid (every kind the workload makes but the 2 MiB one, which the "
            f"broker refuses), {t['payload_mb']} MB of values, 6 partitions. The clock starts with the "
            "process; events/s is counted from its first commit to the moment the group's committed "
            "offsets reach the end (consume → decode → score → PostgreSQL → logs.scored → commit).",
            "",
            "| | |",
            "|---|---|",
            f"| events/s, steady (first commit → caught up) | **{_n(t['events_per_s'])}** |",
            f"| events/s including start-up | {_n(t['events_per_s_with_start_up'])} |",
            f"| caught up after | {t['caught_up_s']:.1f} s |",
            f"| first commit after start | {t['first_commit_s']:.2f} s |",
            f"| peak RSS (VmHWM) | {t['peak_rss_mb']} MB |",
            f"| batches | {t['batches']:,} (avg {t['events'] / max(t['batches'], 1):,.0f} records) |",
            f"| rows stored / expected | {t['check']['stored_rows']['log_entries']:,} / "
            f"{t['check']['expected_stored']:,}; dead letters {t['check']['dead_letters']:,} |",
            "",
        ]
        lines += [
            "Time per stage (sums of `streamer_stage_seconds` from the process's /metrics):",
            "",
            "| stage | seconds | share | µs per event |",
            "|---|---:|---:|---:|",
        ]
        for s, sec in t["stage_seconds"].items():
            lines.append(
                f"| {s} | {sec:.2f} | {100 * t['stage_share'].get(s, 0):.1f} % | {t['stage_us_per_event'][s]:.1f} |"
            )
        lines += ["", _cpu_table(t["cpu_cores_used"]), ""]
        lines += _templates_section(t, r.get("templates"))
        su = t["per_process"][0]["start_up"]
        ml = r.get("model_load", {})
        lines += [
            "## Footprint and start-up",
            "",
            "| | |",
            "|---|---|",
            f"| peak RSS of `streamer run` | {t['peak_rss_mb']} MB |",
            f"| import of the scorer (fresh interpreter) | {_n(ml.get('import_s'), 3)} s |",
            f"| Scorer.load (models/, {_n(ml.get('model_bytes', 0) / 1024, 0)} KiB) | {_n(ml.get('load_s'), 3)} s |",
        ]
        for name, sec in su.items():
            lines.append(f"| {name} (from its log) | {sec:.2f} s after start |")
        lines += [f"| first commit, data pre-loaded | {t['first_commit_s']:.2f} s after start |", ""]

    o = r.get("original")
    if o:
        lines += [
            "## The original design",
            "",
            "Per message: a TfidfVectorizer(max_features=1000, stop_words='english') call and a 100-tree "
            "RandomForest predict_proba per model (level, anomaly), one INSERT per table + commit, one "
            "produce + flush (bench/baseline.py), trained on "
            f"{o['train_rows']:,} corpus rows; same workload, fresh topic.",
            "",
            "| events | events/s | ms per event: score | store | publish | ratio |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {o['events']:,} | {o['events_per_s']:,.1f} | {o['ms_per_stored_event']['score']} | "
            f"{o['ms_per_stored_event']['store']} | {o['ms_per_stored_event']['publish']} | "
            f"streamer is **{_n(r.get('original_ratio'))}x** faster |",
            "",
        ]

    lat = r.get("latency")
    if lat:
        ww = lat["with_warmup"]
        lines += [
            f"## Latency at {lat['rate_target']:,} events/s for {lat['seconds']:.0f} s "
            f"(after {lat['warmup_seconds']:g} s of warm-up)",
            "",
            "From the input record's CreateTime (set by the paced producer) to the scored record's arrival "
            "on the output topic (wall clock of a reader in the benchmark process), matched by its "
            "source.partition/source.offset headers. The scored record is produced after the database "
            "commit and before the offset commit.",
            "",
            "| p50 | p95 | p99 | max | mean | matched | producer rate |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {lat['p50_ms']} ms | {lat['p95_ms']} ms | {lat['p99_ms']} ms | {lat['max_ms']} ms | "
            f"{lat['mean_ms']} ms | {lat['matched']:,} / {lat['expected_scored']:,} | "
            f"{lat['rate_achieved']:,.0f}/s |",
            "",
            f"With the warm-up included: p50 {ww['p50_ms']} ms, p99 {ww['p99_ms']} ms, max {ww['max_ms']} ms "
            f"({ww['matched']:,} / {ww['expected']:,}).",
            "",
            _cpu_table(lat["cpu_cores_used"]),
            "",
        ]

    s = r.get("scaling")
    if s:
        lines += [
            f"## Scaling: processes in one group, 6 partitions, {s['events']:,} pre-loaded events",
            "",
            "| processes | events/s steady | with start-up | caught up | machine busy (cores) | streamer | "
            "broker | PostgreSQL | else |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for k, run in (("1", s["one"]), ("2", s["two"])):
            c = run["cpu_cores_used"]
            lines.append(
                f"| {k} | {_n(run['events_per_s'])} | {_n(run['events_per_s_with_start_up'])} | "
                f"{run['caught_up_s']:.1f} s | {c['machine total']:.2f} of {c['cores']:.0f} | "
                f"{c['streamer']:.2f} | {c['kafka broker']:.2f} | {c['postgresql']:.2f} | "
                f"{c['everything else'] + c['benchmark driver']:.2f} |"
            )
        c2 = s["two"]["cpu_cores_used"]
        busy = c2["machine total"] / c2["cores"]
        where = (
            f"streamers {c2['streamer']:.2f}, PostgreSQL {c2['postgresql']:.2f}, broker {c2['kafka broker']:.2f} cores"
        )
        if busy >= 0.95:
            verdict = (
                f"With 2 processes the machine was {100 * busy:.0f} % busy ({where}): the {c2['cores']:.0f} "
                "cores, shared with the broker and PostgreSQL, are the limit, not the partitioning."
            )
        elif busy >= 0.8:
            verdict = (
                f"With 2 processes the machine was {100 * busy:.0f} % busy ({where}): nearly saturated; "
                f"on {c2['cores']:.0f} cores shared with the broker and PostgreSQL a second process has "
                "little left to use."
            )
        else:
            verdict = (
                f"The machine was only {100 * busy:.0f} % busy with 2 processes ({where}): cores were not "
                "the limit; waiting (database, acknowledgements) was."
            )
        if "ceiling_ratio" in s:
            c1 = s["one"]["cpu_cores_used"]
            verdict += (
                f" Ceiling: one process used {stack_cores(c1):.2f} "
                f"cores of the stack (streamer, broker, PostgreSQL) for {_n(s['one']['events_per_s'])} "
                f"events/s, so {c1['cores']:.0f} cores allow at most **{s['ceiling_ratio']:.2f}x** with any "
                "number of processes."
            )
        lines += ["", f"Ratio **{s['ratio']:.2f}x**. {verdict}", ""]

    if r.get("growth"):
        from bench.growth import markdown as growth_markdown

        lines += ["#" + growth_markdown(r["growth"]), ""]  # its title one level down

    lines += [
        "## Plots",
        "",
        "- `throughput.png`: committed events per second over time (throughput and scaling "
        "runs) and RSS of the throughput run.",
        "- `latency.png`: latency distribution and latency over time.",
        "",
    ]
    return "\n".join(lines)


def _templates_section(off: dict, on: dict | None) -> list[str]:
    """The same events with STREAMER_TEMPLATES=on beside the throughput run (templates off)."""
    if not on:
        return []
    rows = [
        ("events/s, steady", _n(off["events_per_s"]), _n(on["events_per_s"])),
        *(
            (f"{s} µs per event", f"{off['stage_us_per_event'][s]:.1f}", f"{on['stage_us_per_event'][s]:.1f}")
            for s in off["stage_us_per_event"]
        ),
        *(
            (f"{k} cores", f"{off['cpu_cores_used'][k]:.2f}", f"{on['cpu_cores_used'][k]:.2f}")
            for k in ("streamer", "postgresql", "kafka broker")
        ),
        ("peak RSS of `streamer run` (MB)", f"{off['peak_rss_mb']}", f"{on['peak_rss_mb']}"),
    ]
    return [
        "## Templates on (issue 13)",
        "",
        "The same events with `STREAMER_TEMPLATES=on`: a template per event, mined in the template process "
        "(streamer/template_worker.py, counted in the streamer cores), and template statistics in each batch's "
        "transaction. Stages are wall time on their thread.",
        "",
        "| | templates off | templates on |",
        "|---|---:|---:|",
        *(f"| {a} | {b} | {c} |" for a, b, c in rows),
        "",
    ]


def _disturbed(r: dict, limit: float = 0.3) -> list[tuple[str, float]]:
    parts = [
        ("the throughput run", r.get("throughput")),
        ("the templates run", r.get("templates")),
        ("the original design's run", r.get("original")),
        ("the latency run", r.get("latency")),
        ("the 1-process scaling run", (r.get("scaling") or {}).get("one")),
        ("the 2-process scaling run", (r.get("scaling") or {}).get("two")),
    ]
    busy = [
        (name, run["cpu_cores_used"]["everything else"])
        for name, run in parts
        if run and run["cpu_cores_used"]["everything else"] > limit
    ]
    restarted = [(name, run["stack_restarted"]) for name, run in parts if run and run.get("stack_restarted")]
    return busy, restarted


def stack_cores(c: dict) -> float:
    """Cores the stack itself used (streamers, broker, PostgreSQL), from a CpuMeter result."""
    return c["streamer"] + c["kafka broker"] + c["postgresql"]


def _cpu_table(c: dict) -> str:
    return (
        "CPU used during the run, in cores (2 = both cores busy): "
        f"streamer {c['streamer']:.2f}, Kafka broker {c['kafka broker']:.2f}, PostgreSQL {c['postgresql']:.2f}, "
        f"benchmark driver {c['benchmark driver']:.2f}, everything else {c['everything else']:.2f}; "
        f"machine total {c['machine total']:.2f} of {c['cores']:.0f}."
    )


# --- plots ----------------------------------------------------------------------------------------------


def plot_throughput(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    if r.get("throughput"):
        runs.append((f"1 process, {r['throughput']['events']:,} events", r["throughput"]))
    if r.get("scaling"):
        runs.append((f"scaling: 1 process, {r['scaling']['events']:,}", r["scaling"]["one"]))
        runs.append((f"scaling: 2 processes, {r['scaling']['events']:,}", r["scaling"]["two"]))
    if not runs:
        return
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    for label, run in runs:
        xs = [x for x, _ in run["rate_over_time"]]
        ys = [y for _, y in run["rate_over_time"]]
        top.plot(xs, ys, label=f"{label}: {run['events_per_s']:,.0f}/s steady", linewidth=1.6)
        fc = run["first_commit_s"]
        top.axvline(fc, color=top.lines[-1].get_color(), linestyle=":", linewidth=1)
    target = r["targets"]["throughput_events_per_s"]
    top.axhline(target, color="red", linestyle="--", linewidth=1, label=f"target {target:,}/s")
    top.set_ylabel("committed events per second")
    top.set_title("streamer run: events committed per second (4 s sliding window; dotted: first commit)")
    top.legend(loc="upper right", fontsize=8)
    top.grid(alpha=0.3)
    top.set_ylim(bottom=0)
    top.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    t = r.get("throughput")
    if t and t["rss_over_time_mb"]:
        bottom.plot(
            [x for x, _ in t["rss_over_time_mb"]],
            [y for _, y in t["rss_over_time_mb"]],
            color="tab:purple",
            label="RSS, throughput run",
        )
        bottom.axhline(
            r["targets"]["peak_rss_mb"],
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"target {r['targets']['peak_rss_mb']} MB",
        )
        bottom.set_ylim(0, max(r["targets"]["peak_rss_mb"], t["peak_rss_mb"]) * 1.15)
        bottom.legend(loc="lower right", fontsize=8)
    bottom.set_ylabel("RSS (MB)")
    bottom.set_xlabel("seconds since the process started")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(lat: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.asarray(lat["latencies_ms"], dtype=float)
    if not len(values):
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    low = max(1.0, values.min())
    bins = np.logspace(np.log10(low), np.log10(max(values.max(), low * 10)), 60)
    left.hist(values, bins=bins, color="tab:blue", alpha=0.8)
    left.set_xscale("log")
    for q, color in (("p50_ms", "green"), ("p95_ms", "orange"), ("p99_ms", "red")):
        left.axvline(lat[q], color=color, linewidth=1.5, label=f"{q[:3]} {lat[q]:,.0f} ms")
    left.axvline(500, color="black", linestyle="--", linewidth=1, label="target p99 500 ms")
    left.set_xlabel("latency (ms, log scale)")
    left.set_ylabel("events")
    left.set_title(
        f"Latency at {lat['rate_target']:,} events/s, {lat['seconds']:g} s after warm-up:\n"
        "input CreateTime → scored record on the output topic",
        fontsize=10,
    )
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    ts = np.asarray([x for x, _ in lat["over_time"]])
    ls = np.asarray([y for _, y in lat["over_time"]])
    right.axvspan(0, lat["warmup_seconds"], color="grey", alpha=0.15, label="warm-up (not in the percentiles)")
    right.scatter(ts, ls, s=2, alpha=0.3, color="tab:blue", rasterized=True)
    # p99 per second
    if len(ts):
        seconds = np.floor(ts).astype(int)
        xs, p99 = [], []
        for sec in np.unique(seconds):
            chunk = ls[seconds == sec]
            xs.append(sec + 0.5)
            p99.append(np.percentile(chunk, 99))
        right.plot(xs, p99, color="red", linewidth=1.2, label="p99 per second")
    right.axhline(500, color="black", linestyle="--", linewidth=1, label="500 ms")
    right.set_yscale("log")
    right.set_xlabel("seconds since the first event was produced")
    right.set_ylabel("latency (ms, log scale)")
    right.set_title("Latency over time")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
