"""Real log shippers in the foreground, with test-owned config, pid, state and work files, never the machine's
own logging; and a real `streamer run` reading what they ship.

A missing shipper skips its tests on a developer machine and fails them in CI (CI set, as `.ci/run` does), where
`.ci/run` installs rsyslog, rsyslog-kafka and kcat and unpacks syslog-ng privately (scripts/syslog-ng.sh).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from testkit.pipeline import StreamerProcess
from tests.shippers.support import APP_LOG, Daemon, Pipeline, write_app_log


@pytest.fixture
def daemons(tmp_path):
    """start(name, argv, env=None) -> Daemon; every daemon started is stopped after the test."""
    started: list[Daemon] = []

    def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(name, argv, tmp_path / f"{name}.log", env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


@pytest.fixture
def pipeline_env() -> dict[str, str]:
    """Extra STREAMER_* variables for the pipeline; a test parametrizes this name to set some."""
    return {}


@pytest.fixture
def pipeline(kafka_bootstrap, topics, migrated_db_url, streamer_env, pipeline_env, tmp_path):
    proc = StreamerProcess({**streamer_env, **pipeline_env}, tmp_path / "streamer.log")
    try:
        proc.wait_ready()
        yield Pipeline(kafka_bootstrap, topics.raw, migrated_db_url, proc)
        assert proc.terminate() == 0, proc.output()[-3000:]
    finally:
        proc.close()


@pytest.fixture
def ship_app_log(daemons, pipeline, tmp_path):
    """ship(name, config, argv) -> (rows, since): APP_LOG written to app.log, then a daemon started whose config
    file, config(log_file, work_dir), lives in its own work directory with its state; argv(conf, work_dir)."""

    def ship(name: str, config: Callable[[Path, Path], str], argv: Callable[[Path, Path], list[str]]):
        work = tmp_path / name
        work.mkdir()
        log_file = tmp_path / "app.log"
        since = write_app_log(log_file, APP_LOG)
        conf = work / f"{name}.conf"
        conf.write_text(config(log_file, work))
        return pipeline.rows(len(APP_LOG), daemons(name, argv(conf, work))), since

    return ship
