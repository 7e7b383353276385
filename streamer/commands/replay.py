"""streamer replay: move a stopped consumer group's offsets, e.g. to re-score history with a new model version."""

HELP = "reset a stopped consumer group's offsets (like kafka-consumer-groups --reset-offsets) to re-score events"


def configure(parser):
    from streamer.config import add_connection_arguments

    parser.add_argument(
        "--group", required=True, metavar="GROUP", help="consumer group to reset (it must have no active members)"
    )
    to = parser.add_argument_group("target (exactly one)").add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the oldest retained offset")
    to.add_argument("--to-latest", action="store_true", help="the end of each partition (skip everything)")
    to.add_argument(
        "--to-datetime",
        metavar="ISO8601",
        help="the first offset whose timestamp is at or after this time (UTC unless an offset is "
        "given); the end of the partition when there is none",
    )
    to.add_argument(
        "--to-offset",
        action="append",
        metavar="TOPIC:PARTITION:OFFSET",
        help="this offset on this partition, repeatable; clamped to [earliest, latest]",
    )
    to.add_argument(
        "--shift-by",
        type=int,
        metavar="N",
        help="the committed offset plus N (negative: back), clamped to [earliest, latest]",
    )
    parser.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[:P,P...]",
        help="topic (optionally only some partitions) to reset, repeatable (default: "
        "STREAMER_INPUT_TOPIC, i.e. logs.raw)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the offsets before and after, change nothing")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per Kafka request (default 30)")
    add_connection_arguments(parser)


def run(args) -> int:
    from streamer import replay as R
    from streamer.config import settings_from_args
    from streamer.errors import ConfigError

    settings = settings_from_args(args)
    reset = R.parse_reset(args.to_earliest, args.to_latest, args.to_datetime, args.to_offset, args.shift_by)
    topics = args.topic or settings.input_topics()
    if reset.kind == "offset":
        named = {t for t, _ in reset.offsets}
        if args.topic and not named <= {R.parse_scope(t)[0] for t in args.topic}:
            raise ConfigError("--to-offset names a topic that --topic does not; drop --topic or make them agree")
    elif any(t.startswith("^") for t in topics):
        raise ConfigError("the input topic is a regex; name the topic(s) to reset with --topic")
    kafka = settings.kafka_client_config()

    plan = R.make_plan(kafka, args.group, topics, reset, timeout=args.timeout)
    print(
        f"group {plan.group} (state {plan.state}, {plan.members} member{'s' if plan.members != 1 else ''}): "
        f"reset to {reset.label}"
    )
    for line in R.table(plan):
        print(line)
    moved = plan.to_reread()
    summary = f"{moved} offset{'s' if moved != 1 else ''} to read again" if moved >= 0 else f"{-moved} offsets skipped"
    if args.dry_run:
        note = "; the group is active, so a real run would be refused now" if plan.active else ""
        print(f"dry run: nothing changed ({summary}{note})")
        return 0
    R.apply(kafka, plan, timeout=args.timeout)
    print(
        f"reset {len(plan.partitions)} partition{'s' if len(plan.partitions) != 1 else ''} of group "
        f"{plan.group} ({summary}); the next `streamer run --group-id {plan.group}` starts there"
    )
    return 0
