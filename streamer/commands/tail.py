"""streamer tail: a downstream consumer of logs.scored that prints alerts as they arrive."""

from __future__ import annotations

HELP = "print scored events at or above a severity as they arrive on logs.scored (an alerting consumer)"

SEVERITIES = ("low", "medium", "high", "critical")


def configure(parser) -> None:
    from streamer.config import add_connection_arguments

    add_connection_arguments(parser)
    parser.add_argument("--topic", help="scored topic to follow (STREAMER_OUTPUT_TOPIC, default logs.scored)")
    parser.add_argument(
        "--min-severity",
        choices=SEVERITIES,
        default="high",
        help="print events at or above this severity (default high)",
    )
    parser.add_argument(
        "--group-id",
        dest="tail_group",
        default="streamer-tail",
        help="this consumer's own group (default streamer-tail)",
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest scored event when the group has no committed offset",
    )
    parser.add_argument("--json", action="store_true", help="print each alert as one JSON line")
    parser.add_argument("--max-events", type=int, metavar="N", help="exit after printing N alerts")


def run(args) -> int:
    import signal
    import sys

    import orjson
    from confluent_kafka import Consumer

    from streamer.config import settings_from_args

    settings = settings_from_args(args)
    topic = args.topic or settings.output_topic
    threshold = SEVERITIES.index(args.min_severity)
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": args.tail_group,
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "enable.auto.commit": True,  # an alert printer, not a sink: at-most-once display is fine
        }
    )
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.subscribe([topic])
    printed = 0
    try:
        while not stopping:
            msg = consumer.poll(0.5)
            value = msg.value() if msg is not None and msg.error() is None else None
            if value is None:
                continue
            try:
                event = orjson.loads(value)
                scored = event["streamer"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # not a streamer record
            if SEVERITIES.index(scored.get("severity", "low")) < threshold:
                continue
            if args.json:
                sys.stdout.write(orjson.dumps(event).decode() + "\n")
            else:
                src = scored.get("source", {})
                message = next(
                    (event[k] for k in ("message", "msg", "log", "MESSAGE") if isinstance(event.get(k), str)), ""
                )
                sys.stdout.write(
                    f"{scored['severity'].upper():8} {scored['predicted_level']:5} "
                    f"anomaly={scored['anomaly_score']:.2f} {src.get('topic')}[{src.get('partition')}]"
                    f"@{src.get('offset')}  {message[:200]}\n"
                )
            sys.stdout.flush()
            printed += 1
            if args.max_events and printed >= args.max_events:
                break
    finally:
        consumer.close()
    return 0
