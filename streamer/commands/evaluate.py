"""streamer evaluate: metrics of a model on any labelled file."""

HELP = "print level and anomaly metrics of a model on a labelled JSON-lines or CSV file"


def configure(parser):
    from streamer.ml.cliargs import add_model_arguments

    parser.add_argument(
        "--data", required=True, metavar="FILE", help="JSON lines or CSV with message and level and/or is_anomaly"
    )
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args) -> int:
    import json

    from streamer.errors import StreamerError
    from streamer.levels import normalise
    from streamer.ml.cliargs import load_scorer
    from streamer.ml.data import read_dataset
    from streamer.ml.report import metrics_lines
    from streamer.ml.train import evaluate_predictions

    scorer, _ = load_scorer(args)
    ds = read_dataset(args.data)
    if ds.levels is None and ds.is_anomaly is None:
        raise StreamerError(f"{args.data}: no level or is_anomaly labels to evaluate against")
    cols = scorer.score(ds.messages)
    truth = [normalise(v) if v is not None else None for v in ds.levels] if ds.levels else [None] * len(cols)
    metrics = evaluate_predictions(
        truth, cols.predicted_level, ds.is_anomaly, cols.anomaly_score, scorer.anomaly_threshold
    )
    if args.json:
        print(json.dumps({"model_version": scorer.model_version, "data": ds.source, "metrics": metrics}, indent=2))
    else:
        print(f"model {scorer.model_version} on {ds.source}")
        for line in metrics_lines(metrics):
            print(line)
    return 0
