"""streamer run: the stream processor."""

from __future__ import annotations

STARTUP_DATABASE_WAIT = 60  # seconds
TOPIC_CHECK_JOIN = 5.0  # seconds for the cancelled topic check to destroy its admin client

HELP = "consume log events, score them, publish to logs.scored and store in PostgreSQL (at least once)"


def configure(parser) -> None:
    from streamer.config import add_connection_arguments, add_topic_arguments

    add_connection_arguments(parser)
    add_topic_arguments(parser)
    g = parser.add_argument_group("processing")
    g.add_argument("--group-id", help="consumer group (STREAMER_GROUP_ID, default streamer)")
    g.add_argument(
        "--models",
        "--models-dir",
        dest="models_dir",
        metavar="DIR",
        help="model directory (STREAMER_MODELS_DIR, default models)",
    )
    g.add_argument(
        "--anomaly-threshold",
        type=float,
        metavar="P",
        help="anomaly decision threshold 0..1 (STREAMER_ANOMALY_THRESHOLD, default: the model's)",
    )
    g.add_argument(
        "--batch-max-events",
        type=int,
        metavar="N",
        help="events per micro-batch at most (STREAMER_BATCH_MAX_EVENTS, default 5000)",
    )
    g.add_argument(
        "--batch-max-ms",
        type=int,
        metavar="MS",
        help="age of a micro-batch at most (STREAMER_BATCH_MAX_MS, default 100)",
    )
    g.add_argument(
        "--max-message-bytes",
        type=int,
        metavar="BYTES",
        help="larger values are dead-lettered (STREAMER_MAX_MESSAGE_BYTES, default 1 MiB)",
    )
    g.add_argument(
        "--message-fields",
        metavar="A,B,..",
        help="JSON fields holding the message, first non-empty wins (STREAMER_MESSAGE_FIELDS, "
        "default message,msg,log,MESSAGE,short_message)",
    )
    o = parser.add_argument_group("operations")
    o.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics, /healthz, /readyz on this port (STREAMER_METRICS_PORT; off when unset)",
    )
    o.add_argument(
        "--metrics-host",
        metavar="ADDRESS",
        help="address the HTTP endpoints bind to (STREAMER_METRICS_HOST, default 127.0.0.1; "
        "0.0.0.0 for every interface)",
    )
    o.add_argument(
        "--log-format", choices=("text", "json"), help="log lines as text or JSON (STREAMER_LOG_FORMAT, default text)"
    )


def run(args) -> int:
    import logging
    import signal
    import threading

    from streamer import logs
    from streamer.config import settings_from_args
    from streamer.kafka_clients import check_kafka_config

    settings = settings_from_args(args)
    logs.setup(settings.log_format)
    log = logging.getLogger("streamer.run")

    # Installed first, so a SIGTERM during start-up is a clean stop too.
    stopping = threading.Event()

    def stop(signum, _frame):
        log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    check_kafka_config(settings)
    # In the background: a broker that is still starting must not hold up start-up. Cancelled and joined on
    # every exit, so its admin client is destroyed before the interpreter goes (kafka_admin.topic_limits).
    cancel_topic_check = threading.Event()
    topic_check = threading.Thread(
        target=warn_about_topic_limits, args=(settings, cancel_topic_check), name="streamer-topic-limits", daemon=True
    )
    topic_check.start()
    try:
        return _start_and_run(settings, stopping, log)
    finally:
        cancel_topic_check.set()
        topic_check.join(timeout=TOPIC_CHECK_JOIN)


def _start_and_run(settings, stopping, log) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from streamer.config import redact_url
    from streamer.db import connect
    from streamer.db.migrations import migrate
    from streamer.errors import StreamerError
    from streamer.health import Health, serve
    from streamer.metrics import Metrics
    from streamer.ml.scorer import Scorer

    # The model loads (mostly numpy/scipy imports) while the database is reached and migrated.
    with ThreadPoolExecutor(max_workers=1) as loader:
        loading = loader.submit(Scorer.load, settings.models_dir, anomaly_threshold=settings.anomaly_threshold)
        # A database that is still starting (or restarting) is waited for; one that stays away stops start-up.
        deadline = time.monotonic() + STARTUP_DATABASE_WAIT
        while True:
            try:
                with connect(settings.database_url, connect_timeout=5) as conn:
                    migrate(conn)
                break
            except StreamerError as err:
                failed = loading.exception() if loading.done() else None
                if failed is not None:
                    raise failed from None  # a bad model is the clearer, final error
                if time.monotonic() >= deadline or stopping.is_set() or _never_heals(err):
                    raise
                log.warning("%s; retrying for up to %ds", err, STARTUP_DATABASE_WAIT)
                stopping.wait(2.0)
        log.info("database %s is migrated", redact_url(settings.database_url))
        scorer = loading.result()

    metrics, health = Metrics(), Health()
    if settings.metrics_port is not None:
        serve(settings.metrics_port, health, metrics.registry, host=settings.metrics_host)
        log.info("serving /metrics, /healthz and /readyz on %s port %d", settings.metrics_host, settings.metrics_port)
    health.database_ok = True

    # Daily partitions made ahead and expired ones dropped, in the background (streamer/partitions.py).
    from streamer.partitions import PartitionKeeper, parse_retention

    keeper = PartitionKeeper(settings.database_url, parse_retention(settings.retention)).start()
    try:
        return _run_pipeline(settings, scorer, metrics, health, stopping)
    finally:
        keeper.stop()


def _run_pipeline(settings, scorer, metrics, health, stopping) -> int:
    """The composition root: the clients, sinks and template miner the pipeline works with, built here and
    passed in."""
    from streamer.template_worker import TemplateWorker

    # Template mining is opt-in (STREAMER_TEMPLATES=on): its cost, README "Templates".
    templates = (
        TemplateWorker(settings.database_url, log_format=settings.log_format) if settings.templates == "on" else None
    )
    try:
        return _run_with_clients(settings, scorer, metrics, health, stopping, templates)
    finally:
        if templates is not None:
            templates.close()


def _run_with_clients(settings, scorer, metrics, health, stopping, templates) -> int:
    from streamer.kafka_clients import KafkaErrors, close_clients, open_clients
    from streamer.pipeline import DELIVERING, Pipeline
    from streamer.sink import PostgresSink

    kafka_errors = KafkaErrors(health, stopping)
    consumer, kafka = open_clients(settings, kafka_errors, stats_cb=metrics.observe_stats)
    try:
        # One database connection for the synchronous path, one per batch delivered at once.
        databases = [PostgresSink(settings.database_url) for _ in range(1 + DELIVERING)]
        pipeline = Pipeline(
            settings,
            scorer,
            consumer,
            kafka,
            databases,
            kafka_errors=kafka_errors,
            metrics=metrics,
            health=health,
            stop=stopping,
            templates=templates,
        )
    except BaseException:
        close_clients(consumer, kafka.producer, flush_timeout=0)  # from here on, run() closes them
        raise
    return pipeline.run()


def _never_heals(err) -> bool:
    # A server certificate that does not verify (wrong sslrootcert or host name) fails alike on every try.
    text = str(err)
    return "certificate verify failed" in text or "does not match host name" in text


def warn_about_topic_limits(settings, cancel=None) -> None:
    """Log one warning per output topic whose max.message.bytes is below what streamer may send it."""
    import logging

    from streamer.errors import StreamerError
    from streamer.kafka_admin import PRODUCER_MAX_MESSAGE_BYTES, topic_limit_warnings
    from streamer.kafka_clients import producer_config

    log = logging.getLogger("streamer.run")
    producer_max = int(producer_config(settings).get("message.max.bytes", PRODUCER_MAX_MESSAGE_BYTES))
    try:
        warnings = topic_limit_warnings(
            settings.kafka_client_config(),
            settings.output_topic,
            settings.dlq_topic,
            settings.input_topics(),
            settings.max_message_bytes,
            producer_max,
            cancel=cancel,
        )
    except StreamerError as err:
        if cancel is None or not cancel.is_set():
            log.warning("cannot check the topics' record size limits: %s", err)
        return
    for line in warnings:
        log.warning("%s", line)
