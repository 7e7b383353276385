"""`streamer status` on the database: the schema version, and prediction rows counted per record."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streamer.commands.status import _database
from streamer.db import connect
from streamer.db.migrations import latest_version, migrate
from testkit.clients import query

pytestmark = pytest.mark.integration


def test_an_old_schema_is_named_with_the_fix(db_url):
    with connect(db_url) as conn:
        migrate(conn, up_to=2)
    line = _database(SimpleNamespace(database_url=db_url))
    assert f"schema version 2 (this streamer needs {latest_version()}: run `streamer init`)" in line


def test_prediction_rows_are_records(migrated_db_url):
    # One message (offset 7) with three records, one single-record message (offset 8).
    for offset, records in ((7, 3), (8, 1)):
        query(
            migrated_db_url,
            "INSERT INTO log_entries (kafka_topic, kafka_partition, kafka_offset, record_index, message) "
            "SELECT 'raw', 0, %s, i, 'm' FROM generate_series(0, %s - 1) AS i",
            (offset, records),
        )
    query(
        migrated_db_url,
        "INSERT INTO ml_predictions (kafka_topic, kafka_partition, kafka_offset, record_index, model_version) "
        "SELECT kafka_topic, kafka_partition, kafka_offset, record_index, 'v1' FROM log_entries",
    )
    line = _database(SimpleNamespace(database_url=migrated_db_url))
    assert f"schema version {latest_version()}, 4 prediction rows (2 from records after a message's first)" in line
