"""streamer score: score text lines or JSON events offline (no Kafka, no PostgreSQL)."""

HELP = "score log lines or JSON events from files or stdin; print one JSON object per line"

BATCH = 2000


def configure(parser):
    from streamer.ml.cliargs import add_model_arguments

    parser.add_argument("files", nargs="*", metavar="FILE", help="input files (default: stdin; - is stdin)")
    add_model_arguments(parser)


def run(args) -> int:
    import sys

    import orjson

    from streamer.batch import Batch
    from streamer.decode import Decoder
    from streamer.enrich import scored_records
    from streamer.errors import StreamerError
    from streamer.ml.cliargs import load_scorer
    from streamer.score import score_batch

    scorer, _ = load_scorer(args)
    out = sys.stdout.buffer
    # The same decoder, score stage and output record as `streamer run`: one line is one message.
    decoder = Decoder()

    def flush(batch: Batch):
        if not len(batch):
            return
        batch, columns = score_batch(scorer, batch)
        for dead in batch.dead_letters:
            print(
                orjson.dumps(
                    {
                        "dead_letter": {
                            "source": dead.topic,
                            "line": dead.offset + 1,
                            "record_index": dead.record_index,
                            "error_class": dead.error_class,
                            "reason": dead.reason,
                        }
                    }
                ).decode(),
                file=sys.stderr,
            )
        if columns is not None:
            out.write(b"\n".join(value for _, value, _ in scored_records(batch.events, columns)) + b"\n")

    def lines():
        for name in args.files or ["-"]:
            if name == "-":
                for number, line in enumerate(sys.stdin):
                    yield "-", number, line
                continue
            try:
                f = open(name, encoding="utf-8", errors="replace")  # noqa: SIM115 (a generator closes it below)
            except OSError as err:
                raise StreamerError(f"{name}: {err.strerror}") from None
            with f:
                for number, line in enumerate(f):
                    yield name, number, line

    batch = Batch()
    try:
        for name, number, raw in lines():
            if not raw.strip():
                continue
            for item in decoder.decode(raw.encode("utf-8"), topic=name, partition=0, offset=number):
                batch.add(item)
            if len(batch) >= BATCH:
                flush(batch)
                batch = Batch()
        flush(batch)
        out.flush()
    except BrokenPipeError:
        return 0
    return 0
