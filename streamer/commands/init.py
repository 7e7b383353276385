"""streamer init: create the Kafka topics and migrate the PostgreSQL schema (idempotent)."""

from __future__ import annotations

from streamer.config import add_connection_arguments, add_topic_arguments

HELP = "create the Kafka topics and migrate the database schema (safe to run again)"


def configure(parser):
    add_connection_arguments(parser)
    add_topic_arguments(parser)
    g = parser.add_argument_group("init")
    g.add_argument(
        "--partitions",
        type=int,
        default=6,
        metavar="N",
        help="partitions of the input and output topics (default 6; the dead-letter topic has 1)",
    )
    g.add_argument("--skip-topics", action="store_true", help="only migrate the database")
    g.add_argument("--skip-db", action="store_true", help="only create the topics")
    g.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for Kafka and PostgreSQL (default 30)",
    )


def run(args) -> int:
    from streamer.config import redact_url, settings_from_args
    from streamer.errors import ConfigError

    settings = settings_from_args(args)
    if args.partitions < 1:
        raise ConfigError(f"--partitions must be >= 1, got {args.partitions}")

    if not args.skip_topics:
        from streamer.kafka_admin import ensure_topics

        inputs = settings.input_topics()
        if any(t.startswith("^") for t in inputs):
            raise ConfigError(
                "init cannot create topics for a regex input topic; create them yourself or "
                "pass --input-topic with plain names"
            )
        wanted = {name: args.partitions for name in inputs}
        wanted[settings.output_topic] = args.partitions
        wanted[settings.dlq_topic] = 1
        for name, state in ensure_topics(settings.kafka_client_config(), wanted, timeout=args.timeout).items():
            print(f"topic {name}: {state} ({wanted[name]} partition{'s' if wanted[name] != 1 else ''})")

    if not args.skip_db:
        from streamer.db import connect
        from streamer.db.migrations import latest_version, migrate

        with connect(settings.database_url, connect_timeout=max(1, int(args.timeout))) as conn:
            applied = migrate(conn)
        where = redact_url(settings.database_url)
        if applied:
            print(
                f"database {where}: applied migration{'s' if len(applied) > 1 else ''} "
                f"{', '.join(map(str, applied))} (schema version {latest_version()})"
            )
        else:
            print(f"database {where}: up to date (schema version {latest_version()})")
    return 0
