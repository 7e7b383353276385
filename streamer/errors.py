"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from enum import StrEnum


class StreamerError(Exception):
    """A failure the user can act on; str(err) is the one line printed. exit_code is the process exit code."""

    exit_code = 2

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(StreamerError):
    """A wrong flag, environment variable or librdkafka property."""


class ModelError(StreamerError):
    """A model directory that is missing, incomplete, tampered with or built by other library versions."""


class Dependency(StrEnum):
    """What a transient failure waits for. Its value is the `cause` label of `streamer_retries_total`, and
    /readyz keys on it: nothing parses the text of a cause."""

    DATABASE = "database"
    KAFKA = "kafka"
    COMMIT = "commit"
    TEMPLATES = "templates"  # the template miner process (streamer/template_worker.py)


class TransientError(Exception):
    """A dependency is unavailable for now (database down, broker unreachable): retry the same batch later.

    str(err) is a short cause, safe to log (no secrets); the pipeline logs it once per state change.
    `dependency` says which one failed: metrics and /readyz key on it.
    """

    def __init__(self, message: str, dependency: Dependency = Dependency.KAFKA):
        super().__init__(message)
        self.dependency = dependency


def one_line(err: BaseException, limit: int = 500, with_type: bool = False) -> str:
    """An error as one loggable line: its message's first non-empty line (the type's name when it has none),
    at most `limit` characters; with_type prefixes "TypeName: ". The one place that shortens errors."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if with_type or not text:
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return text[:limit]
