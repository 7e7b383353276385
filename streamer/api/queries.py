"""The SQL behind /api/events and /api/summary (read-only; parameters always bound, never formatted in)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import orjson

SEVERITIES = ("low", "medium", "high", "critical")  # in rising order
# Which timestamp a time range and the order use: the event's own time, or when the pipeline scored it.
TIME_COLUMNS = {"event": "coalesce(e.event_time, e.ingested_at)", "scored": "p.predicted_at"}
WINDOWS = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
SERIES_BUCKETS = 60  # points per chart: the window divided into this many buckets
TOP_SERVICES = 8  # services charted one by one; the rest are summed as "other"

_EVENT_COLUMNS = """e.kafka_topic, e.kafka_partition, e.kafka_offset, e.record_index, e.event_time, e.ingested_at,
    e.level, e.message, e.host, e.service, p.model_version, p.predicted_level, p.level_confidence, p.is_anomaly,
    p.anomaly_score, p.severity, p.predicted_at"""
_JOIN = "ml_predictions p JOIN log_entries e USING (kafka_topic, kafka_partition, kafka_offset, record_index)"
_KEY = "e.kafka_topic, e.kafka_partition, e.kafka_offset, e.record_index, p.model_version"


class BadCursor(ValueError):
    pass


def severities_at_least(minimum: str) -> list[str]:
    return list(SEVERITIES[SEVERITIES.index(minimum) :])


def events(
    conn,
    *,
    time: str = "event",
    since: datetime | None = None,
    until: datetime | None = None,
    service: str | None = None,
    host: str | None = None,
    min_severity: str | None = None,
    anomalies: bool = False,
    model_version: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> dict:
    """Newest first by the chosen time, then by Kafka coordinates and version (a total order, so the keyset
    cursor never skips or repeats a row)."""
    ts = TIME_COLUMNS[time]
    where: list[str] = []
    params: list = []
    for clause, value in (
        (f"{ts} >= %s", since),
        (f"{ts} < %s", until),
        ("e.service = %s", service),
        ("e.host = %s", host),
        ("p.model_version = %s", model_version),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    if min_severity:
        where.append("p.severity = ANY(%s)")
        params.append(severities_at_least(min_severity))
    if anomalies:
        where.append("p.is_anomaly")
    if cursor:
        where.append(f"({ts}, {_KEY}) < (%s, %s, %s, %s, %s, %s)")
        params.extend(decode_cursor(cursor))
    sql = (
        f"SELECT {_EVENT_COLUMNS}, {ts} FROM {_JOIN} {'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY {ts} DESC, e.kafka_topic DESC, e.kafka_partition DESC, e.kafka_offset DESC, "
        f"e.record_index DESC, p.model_version DESC LIMIT %s"
    )
    rows = conn.execute(sql, [*params, limit + 1]).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    out = [_event(r) for r in rows]
    nxt = None
    if more:
        last = rows[-1]
        nxt = encode_cursor([last[-1].isoformat(), last[0], last[1], last[2], last[3], last[10]])
    return {"events": out, "next_cursor": nxt}


def _event(r) -> dict:
    return {
        "source": {"topic": r[0], "partition": r[1], "offset": r[2], "record_index": r[3]},
        "event_time": _iso(r[4]),
        "ingested_at": _iso(r[5]),
        "level": r[6],
        "message": r[7],
        "host": r[8],
        "service": r[9],
        "model_version": r[10],
        "predicted_level": r[11],
        "level_confidence": None if r[12] is None else round(float(r[12]), 4),
        "is_anomaly": r[13],
        "anomaly_score": None if r[14] is None else round(float(r[14]), 4),
        "severity": r[15],
        "predicted_at": _iso(r[16]),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def encode_cursor(key: list) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(cursor: str) -> list:
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ts, topic, partition, offset, record_index, version = key
        if not (
            isinstance(topic, str)
            and isinstance(version, str)
            and all(isinstance(v, int) for v in (partition, offset, record_index))
        ):
            raise ValueError
        return [datetime.fromisoformat(ts), topic, partition, offset, record_index, version]
    except Exception:
        raise BadCursor("cursor is not one this API returned") from None


def summary(conn, window: str = "1h", model_version: str | None = None) -> dict:
    """The dashboard's figures over predictions scored within the window (`all`: every row).

    Versions are compared side by side; the other figures are for one version: the one asked for, else the
    one that scored most recently (after a replay both have rows for the same events)."""
    seconds = WINDOWS.get(window)
    in_window = "p.predicted_at >= now() - make_interval(secs => %s)" if seconds else "true"
    wparams = [seconds] if seconds else []
    sql = (
        "SELECT p.model_version, count(*), count(*) FILTER (WHERE p.is_anomaly), "
        + ", ".join(f"count(*) FILTER (WHERE p.severity = '{s}')" for s in SEVERITIES)
        + f", min(p.predicted_at), max(p.predicted_at) FROM ml_predictions p WHERE {in_window} "
        "GROUP BY 1 ORDER BY min(p.predicted_at), 1"
    )
    versions = conn.execute(sql, wparams).fetchall()
    version_rows = [
        {
            "model_version": v,
            "rows": n,
            "anomalies": a,
            "anomaly_rate": _rate(a, n),
            "by_severity": dict(zip(SEVERITIES, sev, strict=False)),
            "first_scored": _iso(first),
            "last_scored": _iso(last),
        }
        for v, n, a, *sev, first, last in versions
    ]
    if model_version is None and versions:
        model_version = max(versions, key=lambda r: r[-1])[0]
    current = next((r for r in version_rows if r["model_version"] == model_version), None)
    (now,) = conn.execute("SELECT now()").fetchone()
    # Bucket width: the window in SERIES_BUCKETS steps (whole seconds); for `all`, the span of the data.
    if seconds:
        width, start = max(seconds // SERIES_BUCKETS, 1), now.timestamp() - seconds
    elif current:
        first = datetime.fromisoformat(current["first_scored"]).timestamp()
        width, start = max(int((now.timestamp() - first) // SERIES_BUCKETS) + 1, 1), first
    else:
        width, start = 60, now.timestamp() - 3600
    start = start // width * width  # aligned with the buckets SQL forms, so the first one is charted whole
    series = conn.execute(
        f"SELECT floor(extract(epoch FROM p.predicted_at) / %s)::bigint * %s AS bucket, "
        f"coalesce(e.service, '-'), p.severity, count(*) FROM {_JOIN} WHERE {in_window} AND p.model_version = %s "
        "GROUP BY 1, 2, 3 ORDER BY 1",
        [width, width, *wparams, model_version],
    ).fetchall()
    per_service: dict[str, int] = {}
    for _, service, _, n in series:
        per_service[service] = per_service.get(service, 0) + n
    top = sorted(per_service, key=lambda s: (-per_service[s], s))[:TOP_SERVICES]
    charts: dict[str, dict[int, dict[str, int]]] = {s: {} for s in top}
    if len(per_service) > len(top):
        charts["other"] = {}
    for bucket, service, severity, n in series:
        points = charts[service if service in top else "other"].setdefault(int(bucket), dict.fromkeys(SEVERITIES, 0))
        points[severity] = points.get(severity, 0) + n
    (recent,) = conn.execute(
        "SELECT count(*) FROM ml_predictions p WHERE p.predicted_at >= now() - interval '60 s'"
    ).fetchone()
    return {
        "window": window,
        "now": _iso(now),
        "bucket_seconds": width,
        "start": start,
        "model_version": model_version,
        "versions": version_rows,
        "totals": current
        or {
            "model_version": model_version,
            "rows": 0,
            "anomalies": 0,
            "anomaly_rate": None,
            "by_severity": dict.fromkeys(SEVERITIES, 0),
        },
        "services": [
            {
                "service": s,
                "rows": per_service.get(s, sum(sum(p.values()) for p in charts[s].values())),
                "series": [{"t": t, **points} for t, points in sorted(charts[s].items())],
            }
            for s in charts
        ],
        "throughput": {"rows_last_60s": recent, "per_second": round(recent / 60.0, 2)},
    }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
