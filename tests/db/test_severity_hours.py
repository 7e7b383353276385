"""severity_hours.counts(): the hour of each event in UTC, whatever zone its time was given in."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

from streamer.db.severity_hours import counts

BASE = datetime(2026, 3, 1, 22, 50, tzinfo=UTC)


def row(t: datetime, service: str | None = "svc", severity: str = "low", version: str = "v1") -> tuple:
    # STAGE_COLUMNS order: key, event_time, level, message, host, service, raw, version, ..., severity, template
    return ("t", 0, 0, 0, t, "INFO", "m", "h", service, "{}", version, "INFO", 0.9, False, 0.1, severity, None)


def utc_hour(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def expected(rows: list[tuple]) -> Counter:
    return Counter((utc_hour(r[4]), r[8], r[15], r[10]) for r in rows)


def test_utc_and_whole_hour_zones_count_in_their_utc_hour_across_midnight():
    plus_two = timezone(timedelta(hours=2))
    rows = [
        row(BASE + timedelta(minutes=7 * i), service=f"s{i % 3}", severity=("low", "high")[i % 2]) for i in range(40)
    ]
    rows += [row((BASE + timedelta(minutes=11 * i)).astimezone(plus_two)) for i in range(20)]
    rows.append(row(BASE, service=None, version="v2"))
    found = counts(rows)
    assert found == expected(rows)
    assert sum(found.values()) == len(rows)
    assert len({k[0] for k in found}) > 3  # the rows span several hours, over midnight UTC
    assert all(k[0].tzinfo is not None and k[0].utcoffset() == timedelta(0) for k in found)


def test_a_zone_off_by_a_fraction_of_an_hour_is_counted_row_by_row():
    india = timezone(timedelta(hours=5, minutes=30))
    rows = [row((BASE + timedelta(minutes=13 * i)).astimezone(india)) for i in range(30)]
    rows += [row(BASE + timedelta(minutes=5 * i)) for i in range(10)]
    assert counts(rows) == expected(rows)


def test_no_rows_no_counts():
    assert counts([]) == Counter()
