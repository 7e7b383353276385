"""The FastAPI application of `streamer serve`. create_app() takes everything it needs; nothing is global."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamer.api import queries
from streamer.api.analyze import BadRequest, Limits, analyze, parse_items
from streamer.errors import one_line

log = logging.getLogger("streamer.api")
STATIC = Path(__file__).with_name("static")
# The page loads only its own files and talks only to this server.
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
BROKER_CACHE_S = 2.0  # the dashboard and several clients poll status: one broker round trip per 2 s is enough


# Module level: FastAPI resolves the (postponed) annotation in this module's namespace.
_BEARER = HTTPBearer(auto_error=False, description="STREAMER_API_TOKEN; required when the server has one")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


@dataclass
class ApiContext:
    settings: Any  # streamer.config.Settings
    watcher: Any  # streamer.ml.reload.ModelWatcher (or anything with .poll() -> scorer)
    decoder: Any  # streamer.decode.Decoder, built from the same settings as `run`'s
    pool: Any  # psycopg_pool.ConnectionPool of read-only sessions, None without a database
    limits: Limits = field(default_factory=Limits)
    token: str = ""
    broker_report: Any = None  # settings -> dict (streamer.commands.status.broker_report)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _broker: tuple[float, dict] | None = None

    def scorer(self):
        with self._lock:  # ModelWatcher is not thread-safe; the check itself is a stat every few seconds
            return self.watcher.poll()

    def broker(self) -> dict:
        with self._lock:
            cached = self._broker
        if cached and time.monotonic() - cached[0] < BROKER_CACHE_S:
            return cached[1]
        report = self.broker_report(self.settings)
        with self._lock:
            self._broker = (time.monotonic(), report)
        return report


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict | None = None) -> Response:
    return json_response({"error": message, "status": status}, status, headers)


def create_app(ctx: ApiContext) -> FastAPI:
    # /docs and /redoc load their scripts from a CDN: only the OpenAPI description itself is served.
    app = FastAPI(
        title="streamer",
        version="1",
        docs_url=None,
        redoc_url=None,
        description="Status, analyze and events API of streamer, and its dashboard (`/`).",
    )
    registry = CollectorRegistry()
    requests = Counter(
        "streamer_api_requests_total",
        "HTTP requests by route and status",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "streamer_api_request_seconds",
        "HTTP request latency by route",
        ["method", "route"],
        registry=registry,
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    analyzed = Counter("streamer_api_analyzed_events_total", "events scored by POST /api/analyze", registry=registry)
    app.state.ctx = ctx  # for tests and embedding: the one place the app's dependencies live
    expected = ctx.token.encode()

    def authorized(credentials: Credentials = None) -> None:
        if not expected:
            return
        given = (credentials.credentials if credentials else "").encode()
        if not hmac.compare_digest(given, expected):  # constant time: no timing oracle on the token
            raise StarletteHTTPException(401, "a valid bearer token is required")

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            name = getattr(route, "path", None) or "unmatched"  # templates, never raw paths: bounded labels
            latency.labels(request.method, name).observe(time.perf_counter() - started)
            requests.labels(request.method, name, str(status)).inc()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return _error(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body"))
        return _error(400, f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid")))

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest):
        return _error(exc.status, exc.message)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.error(
            "%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc, exc_info=exc
        )  # the trace goes to the server's log, never to the client
        return _error(500, "internal error; see the server log")

    guarded = [Depends(authorized)]

    @app.get("/", include_in_schema=False)
    def dashboard():
        return FileResponse(
            STATIC / "index.html", headers={"Cache-Control": "no-cache", "Content-Security-Policy": CSP}
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz():
        return json_response({"alive": True})

    @app.get("/metrics", dependencies=guarded, summary="Prometheus metrics of this process")
    def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/status", dependencies=guarded, summary="model metadata, broker, database, lag, versions")
    def status():
        scorer = ctx.scorer()
        meta = scorer.metadata
        return json_response(
            {
                "model": {
                    "model_version": scorer.model_version,
                    "trained_at": meta.get("trained_at"),
                    "samples": meta.get("num_training_samples"),
                    "levels": meta.get("levels"),
                    "anomaly_detector": meta.get("anomaly_model", {}).get("kind"),
                    "anomaly_threshold": scorer.anomaly_threshold,
                    "metrics": meta.get("metrics"),
                    "evaluation": meta.get("evaluation"),
                    "models_dir": str(ctx.settings.models_dir),
                },
                "broker": ctx.broker(),
                "database": _database(ctx),
            }
        )

    @app.post(
        "/api/analyze",
        dependencies=guarded,
        summary="score posted events as `streamer run` would",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {
                                    "type": "object",
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "items": {"oneOf": [{"type": "string"}, {"type": "object"}]},
                                        }
                                    },
                                    "required": ["events"],
                                },
                                {
                                    "type": "object",
                                    "properties": {
                                        "log_data": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {"id": {}, "message": {"type": "string"}},
                                            },
                                        }
                                    },
                                    "required": ["log_data"],
                                },
                                {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
                                {"type": "object", "description": "one JSON event"},
                            ]
                        }
                    },
                    "text/plain": {"schema": {"type": "string", "description": "one record per line"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            }
        },
        responses={
            400: {"description": "bad JSON or shape"},
            413: {"description": "too many or too large"},
            415: {"description": "wrong Content-Type"},
        },
    )
    async def analyze_events(request: Request):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > ctx.limits.max_body_bytes):
            raise BadRequest(413, f"the body is over {ctx.limits.max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():  # bounded read: a lying or absent Content-Length cannot balloon it
            body += chunk
            if len(body) > ctx.limits.max_body_bytes:
                raise BadRequest(413, f"the body is over {ctx.limits.max_body_bytes} bytes")
        items = parse_items(bytes(body), request.headers.get("content-type"), ctx.limits)
        from starlette.concurrency import run_in_threadpool

        out = await run_in_threadpool(analyze, items, ctx.scorer(), ctx.decoder)
        analyzed.inc(len(items))
        return json_response(out)

    @app.get("/api/events", dependencies=guarded, summary="stored events with their predictions, newest first")
    def list_events(
        since: Annotated[datetime | None, Query(description="ISO 8601; a time without zone is UTC")] = None,
        until: Annotated[datetime | None, Query(description="ISO 8601, exclusive")] = None,
        time_field: Annotated[
            Literal["event", "scored"],
            Query(alias="time", description="event: the event's time; scored: when it was scored"),
        ] = "event",
        service: str | None = None,
        host: str | None = None,
        min_severity: Literal["low", "medium", "high", "critical"] | None = None,
        anomalies: Annotated[bool, Query(description="only events flagged as anomalies")] = False,
        model_version: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ):
        try:
            with _conn(ctx) as conn:
                return json_response(
                    queries.events(
                        conn,
                        time=time_field,
                        since=_utc(since),
                        until=_utc(until),
                        service=service,
                        host=host,
                        min_severity=min_severity,
                        anomalies=anomalies,
                        model_version=model_version,
                        limit=limit,
                        cursor=cursor,
                    )
                )
        except queries.BadCursor as err:
            raise BadRequest(400, str(err)) from None

    @app.get("/api/summary", dependencies=guarded, summary="the dashboard's figures over a window")
    def summary(
        window: Literal["5m", "15m", "1h", "6h", "24h", "7d", "30d", "all"] = "1h", model_version: str | None = None
    ):
        with _conn(ctx) as conn:
            return json_response(queries.summary(conn, window, model_version))

    @app.get("/api/templates", dependencies=guarded, summary="new or surging log templates (log_templates)")
    def templates(
        kind: Literal["new", "surging", "top"] = "new",
        since: Annotated[str, Query(pattern=r"^\s*\d+\s*[smhd]\s*$", description="1h, 30m, 2d")] = "1h",
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
    ):
        from streamer.commands import templates as t

        sql = {"new": t.NEW_SQL, "surging": t.SURGING_SQL, "top": t.ALL_SQL}[kind]
        params = (limit,) if kind == "top" else (t._interval(since), limit)
        with _conn(ctx) as conn:
            cur = conn.execute(sql, params)
            names = [d.name for d in cur.description]
            rows = cur.fetchall()
        # Columns by name: the surging query's rate columns are its own (streamer/commands/templates.py).
        return json_response(
            {
                "kind": kind,
                "since": since,
                "templates": [{k: _plain(v) for k, v in zip(names, r, strict=True)} for r in rows],
            }
        )

    return app


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _plain(value):
    """A database value as JSON has it: times in ISO 8601, numerics (rates) as floats rounded to 2 places."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (Decimal, float)):
        return round(float(value), 2)
    return value


def _iso(value):
    return None if value is None else value.isoformat()


class _conn:
    """A pooled read-only connection; an unreachable database is a 503, not a 500."""

    def __init__(self, ctx: ApiContext):
        self.ctx = ctx
        self._cm = None

    def __enter__(self):
        from psycopg_pool import PoolTimeout

        if self.ctx.pool is None:
            raise StarletteHTTPException(503, "no database configured")
        self._cm = self.ctx.pool.connection()
        try:
            return self._cm.__enter__()
        except PoolTimeout:
            raise StarletteHTTPException(503, "the database is unreachable") from None

    def __exit__(self, *exc):
        import psycopg

        self._cm.__exit__(*exc)
        if exc[0] is not None and issubclass(exc[0], psycopg.OperationalError):
            raise StarletteHTTPException(503, f"the database failed: {one_line(exc[1], limit=200)}") from None
        return False


def _database(ctx: ApiContext) -> dict:
    from streamer.config import redact_url

    out: dict = {"url": redact_url(ctx.settings.database_url), "reachable": False}
    try:
        with _conn(ctx) as conn:
            from streamer.db.migrations import applied_versions, latest_version
            from streamer.ml.history import predictions_per_version

            out["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
            out["read_only"] = conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
            out["reachable"] = True
            schema = applied_versions(conn)
            out["schema_version"] = schema[-1] if schema else None
            out["schema_needed"] = latest_version()
            if schema and schema[-1] >= latest_version():
                out["versions"] = [
                    {"model_version": v, "rows": n, "first_scored": _iso(first), "last_scored": _iso(last)}
                    for v, n, first, last in predictions_per_version(conn)
                ]
    except StarletteHTTPException as err:
        out["error"] = err.detail
    except Exception as err:
        out["error"] = one_line(err, limit=200)
    return out
