"""Latency of POST /api/analyze on a real `streamer serve` process: p50/p99 at 1, 100 and 1,000 events per
request, over one keep-alive connection, with built-in corpus events as shippers write them. A benchmark, not
a test.

    .venv/bin/python -m bench.api [--requests N]     # prints a table, writes bench/results/api.{json,md}
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SIZES = (1, 100, 1000)


def start_serve() -> tuple[subprocess.Popen, str, int]:
    env = {**os.environ, "STREAMER_API_PORT": "0", "STREAMER_API_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "serve", "--max-events", "1000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        m = re.search(r"serving http://([\d.]+):(\d+)/", line)
        if m:
            return proc, m.group(1), int(m.group(2))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"streamer serve did not start (exit {proc.poll()})")


def bodies(size: int, count: int, seed: int) -> list[bytes]:
    from testkit.workload import workload

    values, _, _ = workload(size * count, invalid_ratio=0.0, seed=seed)
    texts = [v.decode() for v in values]
    return [orjson.dumps({"events": texts[i * size : (i + 1) * size]}) for i in range(count)]


def measure(host: str, port: int, size: int, requests: int) -> dict:
    conn = http.client.HTTPConnection(host, port, timeout=60)
    payloads = bodies(size, requests + 5, seed=size)
    latencies = []
    for i, body in enumerate(payloads):
        t0 = time.perf_counter()
        conn.request("POST", "/api/analyze", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {data[:300]!r}")
        if i >= 5:  # the first few warm the code paths
            latencies.append(elapsed)
        if i == 0:
            assert orjson.loads(data)["count"] >= size
    conn.close()
    ms = np.array(latencies) * 1000
    return {
        "events_per_request": size,
        "requests": len(latencies),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "events_per_s": round(size * len(ms) / (ms.sum() / 1000)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per size (default: 1000, 300 and 100 for 1, 100 and 1,000 events)",
    )
    args = parser.parse_args()
    proc, host, port = start_serve()
    try:
        rows = [measure(host, port, size, args.requests or {1: 1000, 100: 300, 1000: 100}[size]) for size in SIZES]
    finally:
        proc.terminate()
        proc.wait(15)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    lines = [
        "| events per request | requests | p50 ms | p99 ms | mean ms | events/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['events_per_request']:,} | {r['requests']} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | "
        f"{r['events_per_s']:,} |"
        for r in rows
    ]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "api.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    (RESULTS / "api.md").write_text(
        "# POST /api/analyze latency\n\n`.venv/bin/python -m bench.api`: one `streamer serve` process (uvicorn, one "
        "worker), one keep-alive client connection, built-in corpus events as shippers write them (JSON and text "
        'lines) posted as `{"events": [...]}`; time from sending the request to the whole answer read; the first '
        f"5 requests of each size are warm-up.\nMachine: {machine}; the broker and PostgreSQL run on it too.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
