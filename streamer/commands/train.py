"""streamer train: fit the shared vectorizer, the level classifier and the anomaly detector."""

HELP = "train the models (built-in corpus, or --data FILE) and write a model directory"


def configure(parser):
    from streamer.config import add_settings

    parser.add_argument(
        "--data",
        metavar="FILE",
        help="JSON lines or CSV with a message column and optional level, is_anomaly, "
        "timestamp (default: the built-in corpus)",
    )
    parser.add_argument("--out", metavar="DIR", help="output model directory (default: STREAMER_MODELS_DIR or models)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--corpus-size",
        type=int,
        default=None,
        metavar="N",
        help="built-in corpus events when --data is absent (default 60000)",
    )
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON")
    add_settings(parser, "anomaly_alert_rate")
    # Training from the stored history (streamer.ml.history, docs/rescoring.md).
    h = parser.add_argument_group("from the stored history")
    h.add_argument(
        "--from-postgres",
        action="store_true",
        help="train on log_entries (declared level) + anomaly_labels; default --out: "
        "models-versions/<model_version> beside the default model, which it does not replace",
    )
    h.add_argument("--since", metavar="ISO8601", help="only events at or after this time (UTC without an offset)")
    h.add_argument("--until", metavar="ISO8601", help="only events before this time")
    h.add_argument("--service", metavar="S", help="only events of this service")
    h.add_argument(
        "--unmarked-normal",
        action="store_true",
        help="events without a row in anomaly_labels count as normal (when only anomalies are marked)",
    )
    add_settings(h, "database_url")


def run(args) -> int:
    import json

    from streamer.config import settings_from_args
    from streamer.ml import train as T
    from streamer.ml.report import summary_lines

    if getattr(args, "from_postgres", False):
        return _from_postgres(args)
    settings = settings_from_args(args)
    out = args.out or settings.models_dir
    if args.data:
        from streamer.ml.data import read_dataset

        ds = read_dataset(args.data)
        rate = settings.anomaly_alert_rate
        model = T.train(
            ds.messages, ds.levels, ds.is_anomaly, ds.timestamps, source=ds.source, seed=args.seed, alert_rate=rate
        )
    else:
        model = T.train_corpus(args.corpus_size or T.DEFAULT_CORPUS_SIZE, seed=args.seed)
    meta = T.save(model, out)
    if args.json:
        print(json.dumps(meta, indent=2))
    else:
        print(f"wrote {out}/ ({', '.join(meta['artifacts'])}, metadata.json)")
        for line in summary_lines(meta):
            print(line)
    return 0


def _from_postgres(args) -> int:
    import json

    from streamer.config import settings_from_args
    from streamer.errors import ConfigError
    from streamer.ml.history import train_from_postgres
    from streamer.ml.registry import save_version
    from streamer.ml.report import summary_lines

    if args.data or args.corpus_size:
        raise ConfigError("--from-postgres cannot be combined with --data or --corpus-size")
    settings = settings_from_args(args)
    model, hist = train_from_postgres(
        settings.database_url,
        args.since,
        args.until,
        args.service,
        args.unmarked_normal,
        seed=args.seed,
        alert_rate=settings.anomaly_alert_rate,
    )
    meta, out = save_version(model, settings.models_dir, args.out)
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    detector = (
        "supervised"
        if hist.supervised_anomaly
        else f"unsupervised (level x template rarity, alert rate {settings.anomaly_alert_rate})"
    )
    print(
        f"read {len(hist.messages)} stored events ({hist.level_rows} with a declared level, "
        f"{hist.marked} with an anomaly label; anomaly detector {detector})"
    )
    print(f"wrote {out}/ ({', '.join(meta['artifacts'])}, metadata.json)")
    for line in summary_lines(meta):
        print(line)
    print(f"next: streamer models promote {out}   (or try it first: streamer run --models {out})")
    return 0
