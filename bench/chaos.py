"""`make chaos`: fault injection against the real stack, with figures.

Produces N events (about 1 % invalid, every kind in testkit.workload, plus poison records of every class in
bench.faults.POISON_KINDS) into fresh topics, as a steady stream, while two `streamer run` processes consume
them as one group, and meanwhile SIGKILLs a member at random moments (and restarts it), restarts the Kafka
broker, restarts PostgreSQL, adds a third member and removes it again, stops PostgreSQL for minutes, stops the
broker for longer than the session timeout, and slows the database down (a proxy adding latency). Each fault
fires when production passes a randomly drawn point (between 3 % and 85 % of the events), so faults land while
the stream flows; outages (one at a time) last their configured time. Then everything is read back:

- every valid input (topic, partition, offset) is in log_entries exactly once, and in ml_predictions exactly
  once for the model version;
- every invalid input is on the dead-letter topic with its original bytes (or, refused whole by the topic,
  truncated with its size and sha256); every poison record the database refuses, as a store-stage one;
- logs.scored holds every valid input at least once (duplicates are counted: at least once allows them), and
  records first seen out of their source partition's order are counted;
- the group's committed offsets reach the end of every partition, never moving back on the way (watched
  while the drill runs), and no running member is stuck (out of the group, or holding a partition that does
  not progress).

Prints a table, writes bench/results/chaos.json and chaos.md, and exits 1 on any loss or duplicate row.
The drill is bench/drill/ (plan, feed, members, inject; its __init__ has the map), the read-back is
testkit.readback; this file is the command line and the report.

    .venv/bin/python bench/chaos.py [--events N] [--kills K] [--seed S] ...     (`make chaos`: the defaults)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import faults
from bench.drill.drill import RESULTS, Drill
from bench.drill.plan import Params
from bench.drill.result import Result


def run_drill(p: Params, log=print) -> Result:
    """The drill with parameters p; cleans up after a pass unless p.keep (a failure keeps everything)."""
    drill = Drill(p, log)
    result = drill.run()
    if result.ok and not p.keep:
        drill.clean_up()
    else:
        log(
            f"chaos: kept topics {drill.topics['raw']} (+ .scored, .deadletter), group {drill.topics['group']}, "
            f"schema {drill.schema}, logs {drill.run_dir.relative_to(ROOT)}"
        )
    return result


# --- report -----------------------------------------------------------------------------------------------


def table(r: Result) -> list[tuple[str, str]]:
    p = {**asdict(Params()), **r.params}  # results written before a parameter existed have its default
    finals = [e for e in r.exits if e.get("final")]
    restarts = f"broker {r.broker_restarts}, PostgreSQL {r.db_restarts}"
    return [
        ("events", f"{r.events:,} ({r.valid:,} valid, {r.invalid:,} invalid)"),
        ("SIGKILLs (member restarted)", f"{r.kills}"),
        ("restarts", restarts),
        ("rebalances", f"member added {r.members_added}, removed {r.members_removed}"),
        (
            "outages",
            f"PostgreSQL down {r.db_outages} × {p['db_outage_seconds']:g} s, broker down "
            f"{r.broker_outages} × {p['broker_outage_seconds']:g} s, slow database {r.slow_db_windows} × "
            f"{p['slow_db_seconds']:g} s (+{p['slow_db_latency']:g} s per chunk each way)",
        ),
        (
            "poison records (dead-lettered where they belong)",
            ", ".join(f"{k} {r.poison_dead_lettered.get(k, 0)}/{n}" for k, n in sorted(r.poison.items())) or "none",
        ),
        ("stuck members", f"{r.stuck_members}"),
        ("unexpected member exits", f"{r.unexpected_exits}"),
        ("clean stops at the end (SIGTERM, exit 0)", f"{sum(e['code'] == 0 for e in finals)} of {len(finals)}"),
        (
            "lost",
            f"{r.lost} (log_entries {r.lost_log_entries}, ml_predictions {r.lost_predictions}, "
            f"logs.scored {r.lost_scored}, dead letters {r.lost_dead_letters})",
        ),
        ("duplicated in DB", f"{r.duplicate_rows} (rows for non-inputs: {r.extra_rows})"),
        (
            "wrong content",
            f"{r.wrong_rows + r.wrong_predictions + r.wrong_scored} (log_entries {r.wrong_rows}, "
            f"ml_predictions {r.wrong_predictions}, logs.scored {r.wrong_scored})",
        ),
        ("duplicated on logs.scored", f"{r.duplicates_scored:,} ({r.duplicates_scored / max(r.valid, 1):.2%})"),
        ("out of source order on logs.scored", f"{r.out_of_order_scored:,}"),
        ("duplicated on dead-letter topic", f"{r.duplicates_dead_letters}"),
        (
            "dead letters",
            f"{r.dead_letters:,} (rejected by the database: {r.rejected_by_database}; sent "
            f"truncated: {r.truncated_dead_letters})",
        ),
        (
            "committed offsets at the end",
            ("every partition" if r.committed_at_end else "NOT at the end")
            + (f"; moved back {r.commits_backwards} times" if r.commits_backwards else ""),
        ),
        (
            "wall time",
            f"{r.wall_seconds:,.1f} s ({r.events / max(r.wall_seconds, 1e-9):,.0f} events/s "
            f"through the faults; producer paced at {_rate(r)}), read-back {r.verify_seconds:,.1f} s",
        ),
    ]


def _rate(r: Result) -> str:
    rate = r.params["rate"]
    return f"{rate:,.0f}/s" if rate else f"no limit, at most {r.params['max_lag']:,} ahead of the commits"


def render_text(r: Result) -> str:
    rows = table(r)
    width = max(len(k) for k, _ in rows)
    lines = [f"== streamer chaos drill {r.run_id} (seed {r.params['seed']}): {'PASS' if r.ok else 'FAIL'}"]
    lines += [f"  {k:<{width}}  {v}" for k, v in rows]
    lines += [f"  problem: {p}" for p in r.problems]
    lines.append(f"  same workload and fault plan: {_command(r.params)}")
    return "\n".join(lines)


def _command(params: dict) -> str:
    """The command line that repeats this drill (same workload and fault plan; timings differ)."""
    defaults = asdict(Params())
    flags = {
        "events": "--events",
        "invalid_ratio": "--invalid-ratio",
        "kills": "--kills",
        "broker_restarts": "--broker-restarts",
        "db_restarts": "--db-restarts",
        "rate": "--rate",
        "max_lag": "--max-lag",
        "db_outages": "--db-outages",
        "db_outage_seconds": "--db-outage-seconds",
        "broker_outages": "--broker-outages",
        "broker_outage_seconds": "--broker-outage-seconds",
        "slow_db": "--slow-db",
        "slow_db_seconds": "--slow-db-seconds",
        "slow_db_latency": "--slow-db-latency",
        "poison_every": "--poison-every",
    }
    params = {**defaults, **params}
    words = ["python bench/chaos.py"] + [
        f"{flag} {params[k]:g}" if isinstance(params[k], float) else f"{flag} {params[k]}"
        for k, flag in flags.items()
        if params[k] != defaults[k]
    ]
    if not params["rebalance"]:
        words.append("--no-rebalance")
    return " ".join([*words, f"--seed {params['seed']}"])


def render_markdown(r: Result) -> str:
    p = r.params
    out = [
        f"# Chaos drill {r.run_id}: {'PASS' if r.ok else 'FAIL'}",
        "",
        f"`{_command(p)}` (commit {r.code.get('commit') or '?'}"
        f"{', pipeline files modified: ' + ' '.join(r.code['uncommitted']) if r.code.get('uncommitted') else ''})",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in table(r)]
    out += [
        "",
        "## Faults",
        "",
        "Caught up: seconds from the fault until the group had committed, in every "
        "partition, every record acknowledged before the fault.",
        "",
        "| t (s) | produced | committed | fault | took (s) | caught up (s) |",
        "|---|---|---|---|---|---|",
    ]
    for f in r.timeline:
        if f["fired_s"] is None:
            out.append(f"| not fired | | | {f['kind']} | | |")
            continue
        out.append(
            f"| {f['fired_s']} | {f['produced']:,} | {f['progress']:,} | {f['kind']}: {f['detail']} | "
            f"{'' if f['took_s'] is None else f['took_s']} | "
            f"{'' if f['caught_up_s'] is None else f['caught_up_s']} |"
        )
    unexpected = [e for e in r.exits if not e.get("final")]
    if unexpected:
        out += ["", "## Members that exited by themselves", ""]
        out += [f"- {e['member']} at {e['at_s']} s, code {e['code']}: `{e['last_lines']}`" for e in unexpected]
    if r.problems:
        out += ["", "## Problems", ""] + [f"- {x}" for x in r.problems]
    return "\n".join(out) + "\n"


def write_results(r: Result, directory: Path = RESULTS) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chaos.json").write_text(json.dumps(r.to_json(), indent=2) + "\n")
    (directory / "chaos.md").write_text(render_markdown(r))


def main(argv: list[str] | None = None) -> int:
    d = Params()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=d.events)
    ap.add_argument("--invalid-ratio", type=float, default=d.invalid_ratio)
    ap.add_argument("--kills", type=int, default=d.kills, help="SIGKILLs of a member (each restarted)")
    ap.add_argument("--broker-restarts", type=int, default=d.broker_restarts)
    ap.add_argument("--db-restarts", type=int, default=d.db_restarts)
    ap.add_argument("--no-rebalance", action="store_true", help="no third member joining and leaving")
    ap.add_argument("--db-outages", type=int, default=d.db_outages, help="times PostgreSQL is stopped for a while")
    ap.add_argument("--db-outage-seconds", type=float, default=d.db_outage_seconds)
    ap.add_argument(
        "--broker-outages",
        type=int,
        default=d.broker_outages,
        help="times the broker is stopped for a while (longer than the session timeout)",
    )
    ap.add_argument("--broker-outage-seconds", type=float, default=d.broker_outage_seconds)
    ap.add_argument(
        "--slow-db",
        type=int,
        default=d.slow_db,
        help="windows in which the database answers slowly (a proxy adds latency)",
    )
    ap.add_argument("--slow-db-seconds", type=float, default=d.slow_db_seconds)
    ap.add_argument(
        "--slow-db-latency",
        type=float,
        default=d.slow_db_latency,
        help="seconds added to every chunk, each way, in a slow window",
    )
    ap.add_argument(
        "--poison-every",
        type=int,
        default=d.poison_every,
        help="one poison record of each class in turn per N events (0: none)",
    )
    ap.add_argument("--seed", type=int, help="workload and fault plan (default: random, printed)")
    ap.add_argument("--max-lag", type=int, default=d.max_lag, help="records produced ahead of the commits")
    ap.add_argument("--rate", type=float, default=d.rate, help="records/s produced at most (0: no limit)")
    ap.add_argument("--timeout", type=float, default=d.timeout, help="seconds for the whole drill")
    ap.add_argument(
        "--stall-timeout",
        type=float,
        default=d.stall_timeout,
        help="end the drill when records wait and nothing is committed for this long",
    )
    ap.add_argument("--keep", action="store_true", help="keep topics, schema and logs after a pass")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where chaos.json and chaos.md go")
    a = ap.parse_args(argv)
    params = Params(
        events=a.events,
        invalid_ratio=a.invalid_ratio,
        kills=a.kills,
        broker_restarts=a.broker_restarts,
        db_restarts=a.db_restarts,
        rebalance=not a.no_rebalance,
        seed=a.seed,
        max_lag=a.max_lag,
        rate=a.rate,
        timeout=a.timeout,
        stall_timeout=a.stall_timeout,
        keep=a.keep,
        db_outages=a.db_outages,
        db_outage_seconds=a.db_outage_seconds,
        broker_outages=a.broker_outages,
        broker_outage_seconds=a.broker_outage_seconds,
        slow_db=a.slow_db,
        slow_db_seconds=a.slow_db_seconds,
        slow_db_latency=a.slow_db_latency,
        poison_every=a.poison_every,
    )
    # `timeout`/kill -TERM: unwind, so the members are stopped rather than orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        result = run_drill(params)
    except faults.FaultUnavailable as err:
        print(f"chaos: cannot inject the faults here: {err}", file=sys.stderr)
        return 2
    write_results(result, a.results)
    print(render_text(result))
    print(f"chaos: results in {a.results}/chaos.json and chaos.md")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
