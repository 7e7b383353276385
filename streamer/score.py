"""The score stage: one scorer call for the whole batch, with the events that make it fail isolated.

A scorer error that an event triggers would otherwise fail the batch at every redelivery: the process would
crash-loop on one record. When the batch call raises, the batch is bisected until the events that fail on
their own are found; they become `score`-stage dead letters and the rest is scored in one call again. When
a plain canary message fails too, the input is not the cause (a broken model, a bug): the error is raised.
"""

from __future__ import annotations

import logging

from streamer.batch import Batch
from streamer.decode import DeadLetter, Event
from streamer.errors import one_line
from streamer.isolate import failing_alone

log = logging.getLogger(__name__)


def score_batch(scorer, batch: Batch):
    """Returns (batch, columns): the batch without the events the scorer cannot score (now dead letters),
    and the ScoreColumns of its events (None when it has none)."""
    if not batch.events:
        return batch, None
    try:
        return batch, _score(scorer, batch.events)
    except Exception as err:  # noqa: BLE001 - any error: find out whether some events cause it
        first_error = err
    events = batch.events
    failing = failing_alone(
        list(range(len(events))), first_error, lambda half: _score(scorer, [events[i] for i in half])
    )
    if not failing or not _scores_canary(scorer):
        raise first_error
    log.warning(
        "the scorer failed on %d of %d events; they go to the dead-letter topic (first: %s: %s)",
        len(failing),
        len(events),
        type(first_error).__name__,
        first_error,
    )
    kept = Batch(first_record_at=batch.first_record_at, next_offsets=batch.next_offsets, records=batch.records)
    kept.events = [e for i, e in enumerate(events) if i not in failing]
    kept.dead_letters = batch.dead_letters + [
        DeadLetter.of_event(events[i], "score_failed", _reason(err), "score") for i, err in failing.items()
    ]
    return kept, _score(scorer, kept.events)


def _score(scorer, events: list[Event]):
    # An unsupervised detector keys templates per service (tests wrap Scorer.score with two arguments, so
    # the gate's fallback of a supervised model gets none: its counts are service-less).
    if getattr(scorer, "learns", False):
        return scorer.score([e.message for e in events], [e.level for e in events], [e.service for e in events])
    return scorer.score([e.message for e in events], [e.level for e in events])


def _scores_canary(scorer) -> bool:
    try:
        if getattr(scorer, "learns", False):
            scorer.score(["service started"], [None], learn=False)  # a probe, not an event to learn from
        else:
            scorer.score(["service started"], [None])
        return True
    except Exception:  # noqa: BLE001
        return False


def _reason(err: BaseException) -> str:
    return one_line(err, with_type=True)
