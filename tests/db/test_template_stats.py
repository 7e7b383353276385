"""Template statistics written by PostgresSink (streamer/db/template_stats.py) against the real database: the
COPY path and the staged path of a redelivery count each stored event once, and exactly the first stored
event of a template new to the group is marked template_new."""

from __future__ import annotations

import pytest

from streamer.enrich import database_rows
from streamer.sink import PostgresSink
from streamer.templates import EventTemplates
from testkit.clients import query
from tests.test_sink import Columns, event

pytestmark = pytest.mark.integration

TEXTS = {"a" * 16: ("svc", "user <*> logged in"), "b" * 16: ("svc", "disk <NUM> full")}


def mined(offsets: list[int]) -> tuple[list, EventTemplates]:
    """Events at these offsets; even offsets have template a, odd ones b."""
    events = [event(i, message=f"line {i}") for i in offsets]
    templates = EventTemplates(["a" * 16 if i % 2 == 0 else "b" * 16 for i in offsets], TEXTS)
    return events, templates


def write(sink: PostgresSink, offsets: list[int], version: str = "v-test") -> EventTemplates:
    events, templates = mined(offsets)
    assert sink.write(database_rows(events, Columns(len(events), version), templates), templates) == []
    return templates


def template_counts(url: str) -> dict[str, int]:
    return dict(query(url, "select template_id, count from log_templates"))


def hour_counts(url: str) -> dict[str, int]:
    return dict(query(url, "select template_id, sum(count)::int from log_template_hours group by 1"))


def marked_new(url: str) -> list[tuple]:
    return query(url, "select kafka_offset, template_id from ml_predictions where template_new order by 1")


def test_first_batch_counts_and_marks_the_first_event_of_each_new_template(migrated_db_url):
    sink = PostgresSink(migrated_db_url)
    first = write(sink, [5, 3, 4, 6, 7])  # not in offset order: the first in key order is marked
    assert template_counts(migrated_db_url) == {"a" * 16: 2, "b" * 16: 3}
    assert hour_counts(migrated_db_url) == {"a" * 16: 2, "b" * 16: 3}
    assert marked_new(migrated_db_url) == [(3, "b" * 16), (4, "a" * 16)]
    assert first.new_keys == {("logs.raw", 0, 3, 0), ("logs.raw", 0, 4, 0)}
    nulls = query(migrated_db_url, "select count(*) from ml_predictions where template_new is null")[0][0]
    assert nulls == 0  # a mined row not new is false, not unknown


def test_a_redelivery_counts_only_the_events_it_stores_and_marks_nothing_again(migrated_db_url):
    sink = PostgresSink(migrated_db_url)
    write(sink, [0, 1, 2])
    again = write(sink, [1, 2, 3, 4])  # 1 and 2 are stored: the staged path
    assert template_counts(migrated_db_url) == {"a" * 16: 3, "b" * 16: 2}  # 0 2 4 / 1 3
    assert hour_counts(migrated_db_url) == {"a" * 16: 3, "b" * 16: 2}
    assert again.new_keys == set()
    assert marked_new(migrated_db_url) == [(0, "a" * 16), (1, "b" * 16)]
    assert query(migrated_db_url, "select count(*) from ml_predictions")[0][0] == 5


def test_a_replay_with_a_new_model_version_counts_no_event_twice(migrated_db_url):
    sink = PostgresSink(migrated_db_url)
    write(sink, [0, 1])
    replayed = write(sink, [0, 1], version="v-next")  # new predictions, no new entries
    assert template_counts(migrated_db_url) == {"a" * 16: 1, "b" * 16: 1}
    assert replayed.new_keys == set()
    assert query(migrated_db_url, "select count(*) from ml_predictions")[0][0] == 4
