"""streamer train: fit the shared vectorizer, the level classifier and the anomaly detector."""

HELP = "train the models (built-in corpus, or --data FILE) and write a model directory"


def configure(parser):
    parser.add_argument("--data", metavar="FILE",
                        help="JSON lines or CSV with a message column and optional level, is_anomaly, "
                        "timestamp (default: the built-in corpus)")
    parser.add_argument("--out", metavar="DIR",
                        help="output model directory (default: STREAMER_MODELS_DIR or models)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--corpus-size", type=int, default=None, metavar="N",
                        help="built-in corpus events when --data is absent (default 60000)")
    parser.add_argument("--json", action="store_true", help="print the metadata as JSON")


def run(args) -> int:
    import json
    import os

    from streamer.ml import train as T
    from streamer.ml.report import summary_lines

    out = args.out or os.environ.get("STREAMER_MODELS_DIR") or "models"
    if args.data:
        from streamer.ml.data import read_dataset

        ds = read_dataset(args.data)
        model = T.train(ds.messages, ds.levels, ds.is_anomaly, ds.timestamps, source=ds.source, seed=args.seed)
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
