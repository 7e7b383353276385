"""Profile `streamer run` on a pre-loaded topic with py-spy and print where its main loop spends the time.

    .venv/bin/python bench/profile.py --events 200000

Pre-loads the events (the benchmark workload) into a fresh topic with a fresh group and schema, starts
`streamer run`, attaches py-spy once the process has loaded its model and subscribed, and stops when the
group's committed offsets reach the end. Prints own time by function and by line, and inclusive time by
function, per thread (the main loop; the checkpoint worker that stores and publishes). By default samples are wall-clock (waits on PostgreSQL and Kafka
count, as the loop does one thing at a time); --cpu-only keeps on-CPU samples only. Writes the collapsed
stacks (open them in speedscope.app or flamegraph.pl) and the summary to bench/results/.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ would be first on sys.path and this file would shadow the standard `profile`.
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import (
    BENCH_INVALID_KINDS,
    LOG_DIR,
    OffsetWatcher,
    RunEnv,
    kill_all,
    preload,
    run_until_caught_up,
    stage_seconds,
    start_streamer,
)
from testkit.workload import workload

RESULTS = ROOT / "bench" / "results"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    exe = Path(sys.executable).parent / "py-spy"
    found = str(exe) if exe.exists() else shutil.which("py-spy")
    if not found:
        sys.exit(
            "bench/profile.py: py-spy is not installed; run `.venv/bin/pip install py-spy` "
            "(it is in the `bench` extra: pip install -e '.[bench]')"
        )
    return found


def short_file(path: str) -> str:
    for marker in ("/site-packages/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse(raw: Path) -> dict[str, tuple[Counter, Counter, Counter, int]]:
    """Collapsed stacks -> per thread name: (own by function, own by line, inclusive by function, samples)."""
    threads: dict[str, tuple[Counter, Counter, Counter, list[int]]] = {}
    ids: dict[str, set[str]] = {}  # a pool's threads are summarised together
    for text in raw.read_text(errors="replace").splitlines():
        stack, _, count = text.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = frames[0]
        thread = head.split(": ", 1)[1] if ": " in head else head
        thread = re.sub(r"_\d+$", "", thread)  # pool workers: streamer-checkpoint_0 -> streamer-checkpoint
        own_fn, own_line, incl, total = threads.setdefault(thread, (Counter(), Counter(), Counter(), [0]))
        ids.setdefault(thread, set()).add(head)
        n = int(count)
        total[0] += n
        names = []
        for frame in frames[1:]:
            m = _FRAME.match(frame)
            if m:
                names.append((f"{m['func']} ({short_file(m['file'])})", m["line"]))
            else:
                names.append((frame, None))
        if not names:
            continue
        leaf, line = names[-1]
        own_fn[leaf] += n
        own_line[f"{leaf[:-1]}:{line})" if line else leaf] += n
        for name in {name for name, _ in names}:
            incl[name] += n
    return {
        (name if len(ids[name]) == 1 else f"{name} ({len(ids[name])} threads)"): (a, b, c, t[0])
        for name, (a, b, c, t) in threads.items()
    }


def table(title: str, counts: Counter, total: int, top: int) -> list[str]:
    lines = [f"### {title}", "", "| % | samples | where |", "|---:|---:|---|"]
    for name, n in counts.most_common(top):
        lines.append(f"| {100 * n / total:5.1f} | {n:,} | `{name}` |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second (default 100)")
    parser.add_argument("--cpu-only", action="store_true", help="on-CPU samples only (py-spy without --idle)")
    parser.add_argument("--native", action="store_true", help="include C/C++ frames (slower sampling)")
    parser.add_argument("--all-threads", action="store_true", help="also the HTTP server thread")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="STREAMER_X=VALUE",
        help="extra environment for `streamer run` (e.g. STREAMER_BATCH_MAX_EVENTS=10000)",
    )
    args = parser.parse_args()
    spy = py_spy()
    extra = dict(pair.split("=", 1) for pair in args.env)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    raw = LOG_DIR / f"profile-{stamp}.txt"
    env = RunEnv.create("profile")
    proc = spy_proc = None
    try:
        values, keys, invalid = workload(args.events, 0.01, seed=42, kinds=BENCH_INVALID_KINDS)
        total = sum(preload(env.raw, values, keys).values())
        del values, keys
        print(f"profile: pre-loaded {total:,} events ({len(invalid):,} invalid); starting `streamer run`", flush=True)
        watcher = OffsetWatcher(env.group, env.raw)
        proc = start_streamer(env, "profile", extra_env=extra)
        proc.wait_for_log("consuming ", timeout=120)
        cmd = [
            spy,
            "record",
            "--pid",
            str(proc.pid),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--rate",
            str(args.rate),
            "--threads",
            "--nonblocking",
        ]
        if not args.cpu_only:
            cmd.append("--idle")
        if args.native:
            cmd.append("--native")
        spy_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        attached = time.monotonic()
        times = run_until_caught_up([proc], watcher, total, timeout=max(600.0, args.events / 200))
        profiled = time.monotonic() - attached
        metrics = proc.metrics()
        spy_proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        spy_out, _ = spy_proc.communicate(timeout=60)
        proc.stop()
        watcher.close()
    finally:
        if spy_proc is not None and spy_proc.poll() is None:
            spy_proc.kill()
        if proc is not None:
            kill_all([proc])
        env.drop()
    if not raw.exists():
        print(f"profile: py-spy wrote nothing:\n{spy_out}", file=sys.stderr)
        return 1

    steady = times["caught_up_s"] - times["first_commit_s"]
    steady_events = total - next((n for _, n in watcher.samples if n > 0), 0)
    stages = stage_seconds(metrics)
    threads = parse(raw)
    mode = "on-CPU samples" if args.cpu_only else "wall-clock samples (waiting included)"
    lines = [
        f"# Profile of `streamer run`, {total:,} pre-loaded events",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/profile.py', *sys.argv[1:]])}` on {stamp}: "
        f"{steady_events / steady:,.0f} events/s steady (first commit {times['first_commit_s']:.2f}s, caught "
        f"up {times['caught_up_s']:.1f}s; slowed by py-spy sampling at {args.rate}/s). py-spy {mode} over "
        f"{profiled:.1f}s, per thread: "
        + ", ".join(f"{name} {t[3]:,}" for name, t in sorted(threads.items(), key=lambda kv: -kv[1][3]))
        + f". Collapsed stacks: `{os.path.relpath(raw, ROOT)}` (speedscope.app or flamegraph.pl).",
        "",
        "Stage seconds (/metrics): " + ", ".join(f"{s} {v.get('sum', 0):.2f}" for s, v in stages.items()),
        "",
    ]
    # The pipeline's threads; the HTTP server only waits for scrapes.
    shown = [name for name in sorted(threads, key=lambda k: -threads[k][3]) if args.all_threads or "http" not in name]
    for name in shown:
        own_fn, own_line, incl, samples = threads[name]
        if samples < 0.02 * max(t[3] for t in threads.values()):
            continue  # a thread seen in passing
        lines += [f"## Thread {name} ({samples:,} samples)", ""]
        lines += table("Own time by function", own_fn, samples, args.top)
        lines += table("Own time by line", own_line, samples, args.top)
        # Frames on (nearly) every sample are the call path to the loop: not worth a row.
        incl = Counter({k: n for k, n in incl.items() if n < 0.98 * samples})
        lines += table("Inclusive time by function (frames on every sample left out)", incl, samples, args.top)
    summary = "\n".join(lines)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "profile.md").write_text(summary + "\n")
    print(summary)
    wrote = [line for line in spy_out.splitlines() if "Samples:" in line]
    print(f"profile: summary in bench/results/profile.md; {' '.join(wrote).strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
