"""streamer status (not implemented yet)."""

HELP = "(not implemented yet)"


def configure(parser):
    pass


def run(args) -> int:
    raise NotImplementedError
