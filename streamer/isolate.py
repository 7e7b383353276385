"""Find the records that make a batch fail, by bisection (Kafka Connect's way of isolating a poison record).

Used where a whole batch is handed to something that accepts or refuses it as one: the scorer
(streamer/score.py) and the database transaction (streamer/sink.py).
"""

from __future__ import annotations

from collections.abc import Callable


def failing_alone(
    indexes: list[int],
    error: BaseException,
    attempt: Callable[[list[int]], object],
    catch: type[BaseException] | tuple[type[BaseException], ...] = Exception,
) -> dict[int, BaseException]:
    """`indexes` failed together with `error`; returns {index: its error} for those that fail on their own.

    Each half is attempted again (attempt(half) raises when it fails) and halves that fail are split further,
    so k bad records among n cost about 2k·log2(n) attempts. An error that is not a `catch` propagates: it is
    not the records' fault. Empty when no record fails alone (only a combination does)."""
    failing: dict[int, BaseException] = {}
    _split(indexes, error, attempt, catch, failing)
    return failing


def _split(indexes, error, attempt, catch, failing) -> None:
    if len(indexes) == 1:
        failing[indexes[0]] = error
        return
    mid = len(indexes) // 2
    for half in (indexes[:mid], indexes[mid:]):
        try:
            attempt(half)
        except catch as err:
            _split(half, err, attempt, catch, failing)
