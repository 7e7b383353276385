"""The `streamer` command: one subcommand per module in streamer.commands.

Each command module exposes HELP (one line), configure(parser) and run(args) -> int. Modules import their
heavy dependencies (scikit-learn, confluent-kafka, psycopg) inside run(), so `streamer --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from streamer import __version__
from streamer.config import document_setting_flags
from streamer.errors import StreamerError

# Order is the order `streamer --help` lists them in.
COMMANDS: tuple[str, ...] = (
    "init",
    "run",
    "tail",
    "score",
    "train",
    "evaluate",
    "status",
    "replay",
    "models",
    "templates",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamer",
        description="Score log events from Kafka with machine learning; publish to Kafka and store in "
        "PostgreSQL, at least once.",
    )
    parser.add_argument("--version", action="version", version=f"streamer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"streamer.commands.{name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        document_setting_flags(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except StreamerError as err:
        print(f"streamer {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
