"""streamer score: score text lines or JSON events offline (no Kafka, no PostgreSQL)."""

HELP = "score log lines or JSON events from files or stdin; print one JSON object per line"

BATCH = 2000


def configure(parser):
    from streamer.ml.cliargs import add_model_arguments

    parser.add_argument("files", nargs="*", metavar="FILE", help="input files (default: stdin; - is stdin)")
    add_model_arguments(parser)


def _parse(line: str, loads):
    """(event dict, message, declared level) for a JSON object line, else the line as text."""
    from streamer.levels import normalise

    if line.startswith("{"):
        try:
            event = loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            msg = event.get("message")
            level = event.get("log.level")
            if level is None and isinstance(event.get("log"), dict):
                level = event["log"].get("level")
            if level is None:
                level = event.get("level")
            return event, "" if msg is None else str(msg), normalise(level)
    return {"message": line}, line, None


def run(args) -> int:
    import sys

    import orjson

    from streamer.errors import StreamerError
    from streamer.ml.cliargs import load_scorer

    scorer, _ = load_scorer(args)
    out = sys.stdout.buffer
    loads = orjson.loads

    def flush(batch):
        if not batch:
            return
        cols = scorer.score([b[1] for b in batch], [b[2] for b in batch])
        chunks = []
        for i, (event, _, _) in enumerate(batch):
            chunks.append(orjson.dumps({**event, **cols.row(i)}))
        out.write(b"\n".join(chunks) + b"\n")
        batch.clear()

    def lines():
        for name in args.files or ["-"]:
            if name == "-":
                yield from sys.stdin
                continue
            try:
                f = open(name, encoding="utf-8", errors="replace")
            except OSError as err:
                raise StreamerError(f"{name}: {err.strerror}") from None
            with f:
                yield from f

    batch = []
    try:
        for raw in lines():
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            batch.append(_parse(line, loads))
            if len(batch) >= BATCH:
                flush(batch)
        flush(batch)
        out.flush()
    except BrokenPipeError:
        return 0
    return 0
