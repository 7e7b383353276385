"""streamer status: the model's metadata, and when reachable the broker, the database and consumer lag."""

from streamer.errors import one_line

HELP = "show the model (from metadata.json), broker, database and the consumer group's lag"

TIMEOUT_S = 3.0


def configure(parser):
    from streamer.config import add_connection_arguments, add_topic_arguments
    from streamer.ml.cliargs import add_model_arguments

    add_model_arguments(parser)
    add_connection_arguments(parser)
    add_topic_arguments(parser)
    parser.add_argument("--group-id", metavar="GROUP", help="consumer group (STREAMER_GROUP_ID, default streamer)")


def broker_report(settings) -> dict:
    """The broker's reachability and the group's lag per partition, as data (`streamer serve` answers it)."""
    import re

    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    conf = settings.kafka_client_config()
    report: dict = {
        "bootstrap_servers": settings.bootstrap_servers,
        "reachable": False,
        "group": settings.group_id,
        "missing_topics": [],
        "partitions": [],
        "total_lag": None,
        "error": None,
    }
    try:
        admin = AdminClient({**conf, "socket.timeout.ms": int(TIMEOUT_S * 1000)})
        md = admin.list_topics(timeout=TIMEOUT_S)
    except Exception as err:  # KafkaException or config errors: report, don't fail
        report["error"] = one_line(err, 120)
        return report
    report.update(reachable=True, brokers=len(md.brokers), topics=len([t for t in md.topics if not t.startswith("__")]))
    wanted = settings.input_topics()
    if wanted and wanted[0].startswith("^"):
        rx = re.compile(wanted[0])
        topics = sorted(t for t in md.topics if rx.match(t))
    else:
        topics = [t for t in wanted if t in md.topics]
        report["missing_topics"] = [t for t in wanted if t not in md.topics]
    if not topics:
        return report
    consumer = Consumer(
        {**conf, "group.id": settings.group_id, "enable.auto.commit": False, "socket.timeout.ms": int(TIMEOUT_S * 1000)}
    )
    try:
        parts = [TopicPartition(t, p) for t in topics for p in sorted(md.topics[t].partitions)]
        committed = consumer.committed(parts, timeout=TIMEOUT_S)
        total = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=TIMEOUT_S)
            # nothing committed: everything retained is still to be read
            lag = max(high - tp.offset, 0) if tp.offset >= 0 else max(high - low, 0)
            total += lag
            report["partitions"].append(
                {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "committed": tp.offset if tp.offset >= 0 else None,
                    "high_watermark": high,
                    "lag": lag,
                }
            )
        report["total_lag"] = total
    except Exception as err:
        report["lag_error"] = one_line(err, 120)
    finally:
        consumer.close()
    return report


def _broker(settings) -> tuple[list[str], dict | None]:
    """Lines about the broker and the group's lag; returns (lines, None)."""
    r = broker_report(settings)
    if not r["reachable"]:
        return [f"broker: {settings.bootstrap_servers} unreachable ({r['error']})"], None
    lines = [f"broker: {settings.bootstrap_servers} reachable, {r['brokers']} broker(s), {r['topics']} topic(s)"]
    lines += [f"  topic {t}: does not exist" for t in r["missing_topics"]]
    if r["partitions"]:
        lines.append(f"consumer group {settings.group_id}:")
    for p in r["partitions"]:
        shown = "none" if p["committed"] is None else str(p["committed"])
        lines.append(
            f"  {p['topic']}[{p['partition']}] committed {shown} high watermark {p['high_watermark']} lag {p['lag']}"
        )
    if "lag_error" in r:
        lines.append(f"  consumer group {settings.group_id}: lag unavailable ({r['lag_error']})")
    elif r["total_lag"] is not None:
        lines.append(f"  total lag {r['total_lag']}")
    return lines, None


def _database(settings) -> str:
    from streamer.config import redact_url

    try:
        import psycopg

        from streamer.db import one
        from streamer.db.migrations import applied_versions, latest_version

        with psycopg.connect(settings.database_url, connect_timeout=int(TIMEOUT_S)) as conn:
            version = one(conn, "SHOW server_version")[0]
            schema = applied_versions(conn)
            extra = ", schema not initialised"
            if schema:
                extra = f", schema version {schema[-1]}"
                if schema[-1] < latest_version():
                    extra += f" (this streamer needs {latest_version()}: run `streamer init`)"
                else:
                    # Rows are records: a Kafka message may hold several (OTLP, JSON array, NDJSON).
                    rows, later = one(
                        conn, "SELECT count(*), count(*) FILTER (WHERE record_index > 0) FROM ml_predictions"
                    )
                    extra += f", {rows} prediction rows ({later} from records after a message's first)"
        return f"database: {redact_url(settings.database_url)} reachable (PostgreSQL {version}{extra})"
    except Exception as err:
        return f"database: {redact_url(settings.database_url)} unreachable ({one_line(err, 160)})"


def run(args) -> int:
    from streamer.config import settings_from_args
    from streamer.ml.artifacts import load_model
    from streamer.ml.report import summary_lines

    settings = settings_from_args(args)
    # verifies sha256/versions and unpickles: a model that can't score makes status fail
    meta, _ = load_model(settings.models_dir)
    print(f"model: {settings.models_dir}")
    for line in summary_lines(meta):
        print(f"  {line}")
    lines, _ = _broker(settings)
    for line in lines:
        print(line)
    print(_database(settings))
    for line in _versions(settings, meta.get("model_version")):
        print(line)
    return 0


def _versions(settings, default_version) -> list[str]:
    """Prediction rows per model version (after a replay with a new version, both are there)."""
    try:
        import psycopg

        from streamer.ml.history import predictions_per_version

        with psycopg.connect(settings.database_url, connect_timeout=int(TIMEOUT_S)) as conn:
            rows = predictions_per_version(conn)
    except Exception:  # unreachable or not initialised: _database() already said so
        return []
    return [
        f"  {version}: {n} prediction rows, {first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S}"
        f"{'  (the model above)' if version == default_version else ''}"
        for version, n, first, last in rows
    ]
