"""The chaos drill of `make chaos` (bench/chaos.py) at CI size: a few thousand events through SIGKILLs of
members, a real PostgreSQL restart, a real broker restart and a member joining and leaving; nothing may be
lost and no row duplicated. Restarts hit the shared test stack; the drill waits until both answer again."""

from __future__ import annotations

import pytest

from bench import faults
from bench.chaos import Params, render_text, run_drill
from tests.support import LOCAL_BOOTSTRAP

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(400)
def test_chaos_drill_loses_nothing_and_duplicates_no_row(kafka_bootstrap, database_url):
    try:
        faults.database_cluster(database_url)
    except faults.FaultUnavailable as err:
        pytest.skip(f"cannot restart PostgreSQL here: {err}")
    broker_restarts = 1
    try:
        faults.check_broker()
    except faults.FaultUnavailable:
        broker_restarts = 0  # a broker from elsewhere: everything else still runs
    if kafka_bootstrap != LOCAL_BOOTSTRAP:
        broker_restarts = 0

    # 3,000 events at 60/s: about 50 s of stream for 3 kills, 2 restarts (~15 s) and a rebalance to land in.
    params = Params(events=3000, kills=3, broker_restarts=broker_restarts, db_restarts=1, rebalance=True,
                    rate=60, max_lag=1000, timeout=240, stall_timeout=60, bootstrap=kafka_bootstrap,
                    database_url=database_url)
    result = run_drill(params, log=print)
    report = render_text(result)
    print(report)

    assert result.kills == 3 and result.db_restarts == 1 and result.broker_restarts == broker_restarts, report
    assert result.members_added == 1 and result.members_removed == 1, report
    assert result.lost == 0, report
    assert result.duplicate_rows == 0 and result.extra_rows == 0, report
    assert result.wrong_rows == result.wrong_predictions == result.wrong_scored == 0, report
    assert result.committed_at_end, report
    assert not result.problems, report
    assert result.dead_letters == result.invalid, report
