"""streamer.template_worker: the miner process gives the ids the in-process miner gives, batch after batch in
order, and a worker that dies fails only its batch, as a transient error, and is replaced."""

from __future__ import annotations

import os
import signal

import pytest

from streamer.errors import Dependency, TransientError
from streamer.template_worker import TemplateWorker
from streamer.templates import TemplateMiners

NO_DATABASE = "postgresql://streamer@127.0.0.1:1/none"  # refused at once: the refresh logs and goes on

BATCHES = [
    ["Accepted password for root from 10.0.0.1 port 22", "session opened for user root", "disk 3 full"],
    ["Accepted password for bob from 10.0.0.9 port 2222", "session opened for user news", "VM Paused"],
    ["session opened for user cyrus", "VM Resumed", "disk 17 full"],
]


@pytest.fixture
def worker():
    w = TemplateWorker(NO_DATABASE)
    yield w
    w.close()


def test_the_worker_gives_the_in_process_ids_in_submission_order(worker):
    pending = [worker.submit(["sshd"] * len(b), b) for b in BATCHES]  # all in flight at once
    in_process = TemplateMiners()
    for batch, mined in zip(BATCHES, pending):
        expected = in_process.assign(["sshd"] * len(batch), batch)
        got = mined.result()
        assert got.ids == expected.ids
        assert got.texts == expected.texts


def test_a_dead_worker_fails_its_batch_as_transient_and_the_next_batch_gets_a_new_one(worker):
    first = worker.submit(["sshd"], BATCHES[0][:1]).result()
    busy = [f"worker w{i} started job j{i * 7} on node n{i % 97}" for i in range(100_000)]  # seconds of mining
    in_flight = worker.submit(["app"] * len(busy), busy)
    os.kill(next(iter(worker._pool._processes)), signal.SIGKILL)  # the worker process
    with pytest.raises(TransientError) as failed:
        in_flight.result()
    assert failed.value.dependency is Dependency.TEMPLATES
    again = worker.submit(["sshd"], BATCHES[0][:1]).result()  # a fresh worker: the same text, the same id
    assert again.ids == first.ids


def test_the_worker_exits_when_its_pipeline_is_killed(tmp_path):
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    script = (
        "import os, sys, time\n"
        "from streamer.template_worker import TemplateWorker\n"
        f"w = TemplateWorker({NO_DATABASE!r})\n"
        "w.submit([''], ['hello']).result()\n"
        f"open({str(pid_file)!r}, 'w').write(str(next(iter(w._pool._processes))))\n"
        "time.sleep(60)\n"
    )
    pipeline = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        worker_pid = int(pid_file.read_text())
    finally:
        pipeline.kill()  # SIGKILL: nothing of the pipeline runs any more
        pipeline.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{worker_pid}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not os.path.exists(f"/proc/{worker_pid}"), "the orphaned worker is still running"


def test_a_sigterm_to_the_worker_does_not_take_the_batches_in_flight(worker):
    worker.submit(["sshd"], BATCHES[0][:1]).result()
    os.kill(next(iter(worker._pool._processes)), signal.SIGTERM)  # systemd signals the whole unit at stop
    assert worker.submit(["sshd"], BATCHES[1]).result().ids  # the same worker still answers
