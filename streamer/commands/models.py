"""streamer models: list model versions, promote one to be the default (guarded by its held-out metrics),
convert a pickled model directory of an older release to the .npz/.json format."""

HELP = (
    "list model versions; promote one to be the default model (refused when it is worse); convert an old "
    "pickled model directory"
)


def configure(parser):
    from streamer.ml.cliargs import add_model_arguments

    sub = parser.add_subparsers(dest="action", metavar="ACTION", title="actions")
    sub.required = True
    ls = sub.add_parser(
        "list",
        help="the default model and every version beside it (models-versions/)",
        description="the default model and every version beside it (models-versions/)",
    )
    add_model_arguments(ls, threshold=False)
    pr = sub.add_parser(
        "promote",
        help="make DIR the default model",
        description="make DIR the default model (the directory --models / STREAMER_MODELS_DIR "
        "names), unless its held-out level macro-F1 is below the current default's by more than "
        "the margin; the previous default is kept as models-versions/<version> and "
        "models-versions/previous",
    )
    pr.add_argument("dir", metavar="DIR", help="candidate model directory (e.g. models-versions/m-...)")
    pr.add_argument(
        "--margin",
        type=float,
        default=0.01,
        metavar="F1",
        help="how far below the current macro-F1 the candidate may be (default 0.01)",
    )
    pr.add_argument("--force", action="store_true", help="promote even when worse (the candidate is still verified)")
    add_model_arguments(pr, threshold=False)
    cv = sub.add_parser(
        "convert",
        help="re-save a pickled (*.joblib) model directory as .npz/.json",
        description="re-save a model directory of an older release (pickled *.joblib files, "
        "which are no longer loaded) as .npz/.json with the same weights. Converting unpickles, "
        "which can run code: it happens only after the directory's digest, file hashes and "
        "signature (STREAMER_MODEL_KEY) were verified, and an unsigned directory is converted "
        "only with --trust-unsigned",
    )
    cv.add_argument("dir", metavar="DIR", help="the pickled model directory")
    cv.add_argument(
        "--out",
        metavar="OUT",
        help="write the converted model here (default: DIR itself, whose *.joblib files are then removed)",
    )
    cv.add_argument(
        "--trust-unsigned",
        action="store_true",
        help="convert although DIR is not signed with STREAMER_MODEL_KEY (only a directory you made)",
    )


def run(args) -> int:
    from streamer.config import settings_from_args
    from streamer.errors import ConfigError
    from streamer.ml import registry

    if args.action == "convert":
        from streamer.ml.artifacts import convert

        meta = convert(args.dir, args.out, trust_unsigned=args.trust_unsigned)
        print(
            f"converted {args.dir} ({meta['converted_from']['model_version']}, pickled) -> "
            f"{args.out or args.dir} ({meta['model_version']}, .npz/.json, "
            f"{'signed' if 'signature' in meta else 'unsigned'})"
        )
        return 0
    settings = settings_from_args(args)
    if args.action == "list":
        rows = [("VERSION", "TRAINED_AT", "ROWS", "MACRO_F1", "TAGS", "PATH", "CHECK")]
        for v in registry.list_versions(settings.models_dir):
            rows.append(
                (
                    v.version or "?",
                    v.trained_at or "?",
                    "?" if v.rows is None else str(v.rows),
                    "n/a" if v.macro_f1 is None else f"{v.macro_f1:.4f}",
                    ",".join(v.tags) or "-",
                    str(v.path),
                    v.status,
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
        return 0

    if not 0 <= args.margin <= 1:
        raise ConfigError(f"--margin must be within 0..1, got {args.margin}")
    try:
        result = registry.promote(args.dir, settings.models_dir, margin=args.margin, force=args.force)
    except registry.PromotionRefused as refused:
        for line in refused.lines:
            print(line)
        raise
    for line in result.lines:
        print(line)
    return 0
