"""The chaos drill of `make chaos` (bench/chaos.py, bench/drill/) at CI size: a few thousand events through SIGKILLs of
members, a real PostgreSQL restart, a real broker restart, a member joining and leaving, PostgreSQL stopped for
a while, the broker stopped beyond the session timeout, a slow database, and poison records of every class;
nothing may be lost, no row duplicated, no member stuck. Faults hit the shared test stack; the drill waits
until both answer again."""

from __future__ import annotations

import pytest

from bench import faults
from bench.chaos import render_text, run_drill
from bench.drill.plan import Params
from testkit.clients import LOCAL_BOOTSTRAP

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(420)
def test_chaos_drill_loses_nothing_and_duplicates_no_row(kafka_bootstrap, database_url):
    try:
        faults.database_cluster(database_url)
    except faults.FaultUnavailable as err:
        pytest.skip(f"cannot restart PostgreSQL here: {err}")
    broker_faults = 1
    try:
        faults.check_broker()
    except faults.FaultUnavailable:
        broker_faults = 0  # a broker from elsewhere: everything else still runs
    if kafka_bootstrap != LOCAL_BOOTSTRAP:
        broker_faults = 0

    # 3,000 events at 60/s: about 50 s of stream for 3 kills, 2 restarts (~15 s), a rebalance, and the outages
    # (PostgreSQL 15 s, the broker 12 s: twice the members' 6 s session timeout, the database slow for 8 s).
    params = Params(
        events=3000,
        kills=3,
        broker_restarts=broker_faults,
        db_restarts=1,
        rebalance=True,
        db_outages=1,
        db_outage_seconds=15,
        broker_outages=broker_faults,
        broker_outage_seconds=12,
        slow_db=1,
        slow_db_seconds=8,
        slow_db_latency=0.3,
        poison_every=150,
        rate=60,
        max_lag=1000,
        timeout=300,
        stall_timeout=60,
        bootstrap=kafka_bootstrap,
        database_url=database_url,
    )
    result = run_drill(params, log=print)
    report = render_text(result)
    print(report)

    assert result.kills == 3 and result.db_restarts == 1 and result.broker_restarts == broker_faults, report
    assert result.db_outages == 1 and result.slow_db_windows == 1 and result.broker_outages == broker_faults, report
    assert set(result.poison) == set(faults.POISON_KINDS), report
    assert result.poison_dead_lettered == result.poison, report  # every one where it belongs
    assert result.truncated_dead_letters >= result.poison["oversized_for_dlq"], report
    assert result.stuck_members == 0, report
    assert result.members_added == 1 and result.members_removed == 1, report
    assert result.lost == 0, report
    assert result.duplicate_rows == 0 and result.extra_rows == 0, report
    assert result.wrong_rows == result.wrong_predictions == result.wrong_scored == 0, report
    assert result.committed_at_end and result.commits_backwards == 0, report
    assert not result.problems, report
    stored_poison = sum(n for k, n in result.poison.items() if k in faults.STORE_POISON)
    assert result.dead_letters == result.invalid + stored_poison, report
