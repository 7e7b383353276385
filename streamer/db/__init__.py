"""PostgreSQL access: connect() and the schema migrations (streamer.db.migrations)."""

from __future__ import annotations

from typing import Any

from streamer.config import redact_url
from streamer.errors import StreamerError


def connect(url: str, **kwargs: Any):
    """A psycopg connection to `url`; a refused or failed connection becomes a one-line StreamerError.

    The URL is redacted in the message (psycopg's own messages never contain the password). Keyword arguments
    go to psycopg.connect (autocommit, row_factory, ...); connect_timeout defaults to 10 s.
    """
    import psycopg

    kwargs.setdefault("connect_timeout", 10)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.Error as err:
        # libpq repeats the reason once per address tried; keep each distinct line once.
        lines = dict.fromkeys(line.strip() for line in str(err).splitlines() if line.strip())
        reason = "; ".join(lines) or type(err).__name__
        raise StreamerError(f"cannot connect to PostgreSQL at {redact_url(url)}: {reason}") from None
    except Exception as err:  # a malformed URL raises ProgrammingError/ValueError-like errors from libpq parsing
        raise StreamerError(f"cannot connect to PostgreSQL at {redact_url(url)}: {err}") from None


def one(conn, sql: str, params: Any = None) -> tuple:
    """The row of a query that always returns exactly one (an aggregate, SELECT f(...)); fails loudly if not."""
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise StreamerError(f"expected a row from: {' '.join(sql.split())[:80]}")
    return row
