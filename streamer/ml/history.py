"""Training data from what the pipeline stored: log_entries (+ anomaly_labels), read from PostgreSQL.

    hist = read_history(conn, since=..., until=..., service=...)   # chronological
    check_enough(hist)                                              # StreamerError when too little
    model = train(hist.messages, hist.levels, hist.is_anomaly, hist.timestamps, source=hist.source)

Labels: the level is the event's declared level (log_entries.level, NULL when the event declared none);
is_anomaly comes from anomaly_labels (migration 2), which people fill in. streamer.ml.train only trains the
supervised anomaly detector when EVERY row has a label, so: either label whole ranges, or pass
unmarked_normal=True (the usual case of marking only the anomalies) to count unlabelled events as normal.
Otherwise the unsupervised detector (template rarity x level prior, cut from the alert rate) is trained.

Order: by event time (ingestion time for events without one), then Kafka coordinates, so the hold-out of
streamer.ml.train is the most recent 20 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from streamer.errors import ConfigError, StreamerError, one_line

MIN_LEVEL_ROWS = 200  # rows with a declared level needed to train at all
MIN_LEVELS = 2  # distinct declared levels needed for a level classifier


@dataclass
class History:
    messages: list[str]
    levels: list[str | None]
    is_anomaly: list[bool | None]
    timestamps: list[str]  # ISO 8601 UTC, fixed width, in row order (already sorted)
    source: str
    marked: int = 0  # rows with a row in anomaly_labels

    @property
    def level_rows(self) -> int:
        return sum(lv is not None for lv in self.levels)

    @property
    def distinct_levels(self) -> list[str]:
        return sorted({lv for lv in self.levels if lv is not None})

    @property
    def supervised_anomaly(self) -> bool:
        """Whether streamer.ml.train will use the anomaly labels (all rows labelled, both classes present)."""
        values = set(self.is_anomaly)
        return bool(self.messages) and None not in values and values == {True, False}


def parse_time(text: str | None, flag: str) -> datetime | None:
    """ISO 8601 -> aware datetime (UTC when no offset is given)."""
    if text is None:
        return None
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not ISO 8601 (e.g. 2024-06-01T00:00:00Z)") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def read_history(
    conn,
    since: datetime | None = None,
    until: datetime | None = None,
    service: str | None = None,
    unmarked_normal: bool = False,
) -> History:
    """Every stored event in [since, until) (of `service`), oldest first, with its labels."""
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append("coalesce(e.event_time, e.ingested_at) >= %s")
        params.append(since)
    if until is not None:
        where.append("coalesce(e.event_time, e.ingested_at) < %s")
        params.append(until)
    if service is not None:
        where.append("e.service = %s")
        params.append(service)
    sql = (
        "SELECT e.message, e.level, coalesce(e.event_time, e.ingested_at) AS t, a.is_anomaly "
        # A label belongs to one record of a message: the join takes record_index too.
        "FROM log_entries e LEFT JOIN anomaly_labels a "
        "USING (kafka_topic, kafka_partition, kafka_offset, record_index) "
        + (f"WHERE {' AND '.join(where)} " if where else "")
        + "ORDER BY t, e.kafka_topic, e.kafka_partition, e.kafka_offset, e.record_index"
    )
    messages, levels, labels, times = [], [], [], []
    marked = 0
    try:
        # A server-side cursor: the table can be far larger than one fetch.
        with conn.cursor(name="streamer_history") as cur:
            cur.itersize = 10_000
            cur.execute(sql, params)
            for message, level, t, is_anomaly in cur:
                messages.append(message)
                marked += is_anomaly is not None
                levels.append(level)
                labels.append(False if is_anomaly is None and unmarked_normal else is_anomaly)
                times.append(_iso(t))
    except Exception as err:
        import psycopg

        if isinstance(err, psycopg.errors.UndefinedTable):
            raise StreamerError(
                "the database has no log_entries/anomaly_labels tables; run `streamer init` (migrations) first"
            ) from None
        if isinstance(err, psycopg.Error):
            raise StreamerError(f"cannot read the stored history: {one_line(err)}") from None
        raise
    filters = [
        f"since {_iso(since)}" if since else "",
        f"until {_iso(until)}" if until else "",
        f"service {service}" if service is not None else "",
    ]
    scope = ", ".join(f for f in filters if f) or "all rows"
    source = (
        f"PostgreSQL log_entries ({scope}; anomaly labels from anomaly_labels"
        f"{', unmarked = normal' if unmarked_normal else ''})"
    )
    return History(messages, levels, labels, times, source, marked)


def check_enough(hist: History) -> None:
    """One-line StreamerError when the history cannot train a useful level classifier."""
    n = hist.level_rows
    if n < MIN_LEVEL_ROWS:
        raise StreamerError(
            f"too little labelled data: {n} stored events with a declared level "
            f"(of {len(hist.messages)} selected), need at least {MIN_LEVEL_ROWS}; "
            "widen --since/--until/--service or ingest more"
        )
    levels = hist.distinct_levels
    if len(levels) < MIN_LEVELS:
        raise StreamerError(
            f"too little labelled data: every one of the {n} events with a declared level is "
            f"{levels[0]}; need at least {MIN_LEVELS} different levels to learn from"
        )


def train_from_postgres(
    database_url: str,
    since: str | None = None,
    until: str | None = None,
    service: str | None = None,
    unmarked_normal: bool = False,
    seed: int = 0,
    alert_rate: float | None = None,
):
    """Read, check and train. Returns (TrainedModel, History). Without anomaly labels the detector is the
    unsupervised TemplateRarity, its cut at the training-score quantile of 1 - alert_rate."""
    from streamer.db import connect
    from streamer.ml.models import DEFAULT_ALERT_RATE
    from streamer.ml.train import train

    t0, t1 = parse_time(since, "--since"), parse_time(until, "--until")
    if t0 is not None and t1 is not None and t0 >= t1:
        raise ConfigError("--since must be before --until")
    with connect(database_url) as conn:
        hist = read_history(conn, t0, t1, service, unmarked_normal)
    check_enough(hist)
    model = train(
        hist.messages,
        hist.levels,
        hist.is_anomaly,
        hist.timestamps,
        source=hist.source,
        seed=seed,
        alert_rate=DEFAULT_ALERT_RATE if alert_rate is None else alert_rate,
    )
    return model, hist


def predictions_per_version(conn) -> list[tuple[str, int, datetime | None, datetime | None]]:
    """(model_version, rows, first predicted_at, last predicted_at) in ml_predictions, oldest version first."""
    return conn.execute(
        "SELECT model_version, count(*), min(predicted_at), max(predicted_at) FROM ml_predictions "
        "GROUP BY model_version ORDER BY min(predicted_at), model_version"
    ).fetchall()
