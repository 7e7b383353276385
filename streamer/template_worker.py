"""Template mining in a process of its own, beside `streamer run`'s pipeline.

Masking and drain3 are pure Python: on the pipeline's interpreter they held the GIL for ~35 µs per event, as
long as decoding and scoring together (bench/results/e2e.md, "templates"). In a child process they run on
another core while the pipeline decodes and scores the next batch; the deliver thread waits for a batch's
templates only when it stores the batch.

One worker process, fed in read order: batches are mined in the order the pipeline scored them, so ids are
the ones the in-process streamer.templates.TemplateMiners gives (the worker holds one). The worker seeds its
miners from log_templates before its first batch and every refresh interval, as the pipeline did. A worker
that dies or hangs fails its batch as a transient error (retried, re-mined by a fresh worker seeded from the
table); started with "spawn", never forked from a process with librdkafka's threads.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from streamer import logs
from streamer.errors import Dependency, TransientError, one_line
from streamer.templates import EventTemplates, TemplateMiners

log = logging.getLogger(__name__)

# A batch of 5,000 new lines mines in well under a second; this long means the worker is stuck.
RESULT_TIMEOUT = 60.0

_miners: TemplateMiners | None = None  # the worker process's own
_database_url = ""


def _start_worker(database_url: str, refresh_interval: float, log_format: str, log_level: int) -> None:
    global _miners, _database_url
    # The pipeline decides when the worker ends: Ctrl-C, or systemd's SIGTERM to the whole unit, must not take
    # the templates of the batches it still commits while it shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logs.setup(log_format, log_level)  # a spawned interpreter: the pipeline's log lines, on the same stderr
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    _miners, _database_url = TemplateMiners(refresh_interval=refresh_interval), database_url
    _miners.refresh(database_url)  # the group's templates, before the first batch


def _exit_with_parent(parent: int) -> None:
    """A pipeline killed with SIGKILL cannot end its worker: the worker notices it was orphaned, and exits."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _started() -> None:
    """The first task: the worker's initializer has run (and seeded its miners)."""


def _assign(services: list, messages: list[str]) -> EventTemplates:
    assert _miners is not None, "initialised by _start_worker"
    _miners.refresh(_database_url)  # what other members mined; once a refresh interval
    return _miners.assign(services, messages)


class PendingTemplates:
    """The templates of one batch, being mined; result() waits for them."""

    def __init__(self, future: Future, worker: TemplateWorker, pool: ProcessPoolExecutor):
        self._future = future
        self._worker = worker
        self._pool = pool  # the worker it was submitted to

    def result(self) -> EventTemplates:
        """Raises TransientError when the worker died or hung (it is replaced: the retry mines again)."""
        try:
            return self._future.result(timeout=RESULT_TIMEOUT)
        except (BrokenProcessPool, FutureTimeout) as err:
            self._worker.replace(self._pool)
            reason = one_line(err, with_type=True) if str(err) else f"no answer in {RESULT_TIMEOUT:.0f}s"
            raise TransientError(f"the template miner process failed: {reason}", Dependency.TEMPLATES) from None


class TemplateWorker:
    """submit(services, messages) -> PendingTemplates; close() ends the worker process."""

    def __init__(self, database_url: str, refresh_interval: float = 60.0, log_format: str = "text"):
        self._init_args = (database_url, refresh_interval, log_format, logging.getLogger().getEffectiveLevel())
        self._lock = threading.Lock()  # deliver threads may replace the pool while the main thread submits
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=self._init_args,
        )
        pool.submit(_started)  # spawned and seeded now, not at the first batch (which may be long in coming)
        return pool

    def submit(self, services: list, messages: list[str]) -> PendingTemplates:
        with self._lock:
            try:
                future = self._pool.submit(_assign, services, messages)
            except BrokenProcessPool:  # died between batches: its failed batch's result() said so, or will
                self._replace_locked()
                future = self._pool.submit(_assign, services, messages)
            return PendingTemplates(future, self, self._pool)

    def replace(self, failed: ProcessPoolExecutor) -> None:
        """A fresh worker in place of `failed`, unless another thread replaced it already."""
        with self._lock:
            if self._pool is failed:
                self._replace_locked()

    def _replace_locked(self) -> None:
        old, self._pool = self._pool, self._new_pool()
        log.warning("the template miner process failed; a new one seeds itself from log_templates")
        _stop(old)

    def close(self) -> None:
        with self._lock:
            _stop(self._pool)


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool's worker without waiting for a stuck batch: its callers are told by result()."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()  # SIGTERM is ignored (see _start_worker)
        process.join(timeout=5)
