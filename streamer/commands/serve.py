"""streamer serve: the HTTP API (status, analyze, events, templates) and the dashboard, on uvicorn."""

HELP = "serve the HTTP API (status, analyze, events) and the dashboard page; reads PostgreSQL read-only"

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def configure(parser):
    from streamer.config import add_connection_arguments, add_topic_arguments
    from streamer.ml.cliargs import add_model_arguments

    add_model_arguments(parser)
    add_connection_arguments(parser)
    add_topic_arguments(parser)
    parser.add_argument("--group-id", metavar="GROUP", help="consumer group whose lag is shown (STREAMER_GROUP_ID)")
    g = parser.add_argument_group("HTTP")
    g.add_argument(
        "--host",
        dest="api_host",
        metavar="ADDR",
        help="address to bind (STREAMER_API_HOST, default 127.0.0.1); any other address needs "
        "STREAMER_API_TOKEN (or STREAMER_API_TOKEN_FILE), the bearer token clients must send",
    )
    g.add_argument(
        "--port",
        dest="api_port",
        type=int,
        metavar="PORT",
        help="port (STREAMER_API_PORT, default 8080; 0 picks a free one)",
    )
    g.add_argument(
        "--max-events",
        type=int,
        default=1000,
        metavar="N",
        help="most events per POST /api/analyze (default 1000); larger requests get 413",
    )


def check_bind(host: str, token: str) -> None:
    """Off the loopback interface, everyone on the network could read the stored logs: a token is required."""
    from streamer.errors import ConfigError

    if host not in LOOPBACK and not token:
        raise ConfigError(
            f"refusing to bind {host} without STREAMER_API_TOKEN: set a bearer token "
            "(STREAMER_API_TOKEN or STREAMER_API_TOKEN_FILE), or bind 127.0.0.1"
        )


def build(settings, max_events: int = 1000):
    """(FastAPI app, pool): the verified model, the same decoder as `run`, a read-only database pool."""
    from streamer.api.analyze import Limits
    from streamer.api.app import ApiContext, create_app
    from streamer.api.db import open_pool
    from streamer.commands.status import broker_report
    from streamer.decode import Decoder
    from streamer.errors import ConfigError
    from streamer.ml.reload import ModelWatcher
    from streamer.ml.scorer import Scorer

    if max_events < 1:
        raise ConfigError(f"--max-events must be >= 1, got {max_events}")
    scorer = Scorer.load(settings.models_dir, anomaly_threshold=settings.anomaly_threshold)
    decoder = Decoder(
        max_message_bytes=settings.max_message_bytes,
        message_fields=settings.message_field_names(),
        line_format=settings.line_format or None,
    )
    pool = open_pool(settings.database_url)
    limits = Limits(
        max_events=max_events,
        max_event_bytes=settings.max_message_bytes,
        max_body_bytes=max_events * min(settings.max_message_bytes, 64 * 1024) + 1024 * 1024,
    )
    ctx = ApiContext(
        settings=settings,
        decoder=decoder,
        pool=pool,
        limits=limits,
        token=settings.api_token,
        watcher=ModelWatcher(settings.models_dir, scorer, anomaly_threshold=settings.anomaly_threshold),
        broker_report=broker_report,
    )
    return create_app(ctx), pool


def run(args) -> int:
    import signal

    import uvicorn

    from streamer import logs
    from streamer.config import settings_from_args

    settings = settings_from_args(args)
    logs.setup(settings.log_format)
    check_bind(settings.api_host, settings.api_token)
    app, pool = build(settings, args.max_events)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=5,
        limit_concurrency=64,
        timeout_graceful_shutdown=5,
    )
    server = _server_class()(config)
    # uvicorn handles SIGTERM/SIGINT itself, then raises the signal again once it has shut down; a no-op
    # handler to restore makes that a clean exit 0, as `streamer run` gives.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    finally:
        pool.close()
    return 0 if server.started else 1


def _server_class():
    """uvicorn's Server, logging the address it bound once it has (a port of 0 is only known then)."""
    import logging

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets)
            for s in self.servers:
                for sock in s.sockets:
                    host, port = sock.getsockname()[:2]
                    # The line tests and scripts wait for (port 0 picks a free one).
                    logging.getLogger("streamer.serve").info(
                        "serving http://%s:%d/ (API under /api, OpenAPI at /openapi.json)",
                        f"[{host}]" if ":" in host else host,
                        port,
                    )

    return Server
