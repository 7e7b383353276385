"""Read-only PostgreSQL sessions for the API: a small psycopg_pool whose every connection is read-only."""

from __future__ import annotations

import logging

from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = 5000  # a dashboard query slower than this is a bug, not a wait worth holding a worker for
POOL_TIMEOUT_S = 5.0


def _configure(conn) -> None:
    # Server-side guard: any write through this session fails (SQLSTATE 25006), whatever the SQL says.
    conn.execute("SET default_transaction_read_only = on")
    conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")


def open_pool(url: str, max_size: int = 4) -> ConnectionPool:
    """A pool that does not wait for the database at start: serve starts (and /api/status says so) without it."""
    return ConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=True,
        timeout=POOL_TIMEOUT_S,
        kwargs={"autocommit": True, "connect_timeout": 3},
        configure=_configure,
        name="streamer-api",
    )
