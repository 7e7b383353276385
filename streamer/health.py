"""HTTP endpoints for operators: /metrics (Prometheus), /healthz (the loop is alive), /readyz (model loaded,
broker and database reachable). Served from a daemon thread; reads flags the pipeline sets.

Hardened against slow or vanishing clients: each connection has a socket timeout, at most
MAX_CONNECTIONS are served at once (the excess is answered 503 and closed at once), and a client that
hangs up or stalls costs a debug line, never a traceback."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("streamer.health")

DEFAULT_HOST = "127.0.0.1"
REQUEST_TIMEOUT_SECONDS = 5.0  # a scrape takes milliseconds; a client silent this long is gone
MAX_CONNECTIONS = 16  # scrapers and probes are few; more at once is a flood, not monitoring
_BUSY_RESPONSE = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"Connection: close\r\n\r\nbusy\n"
)
# What a client that hangs up, resets or stalls raises in the handler thread: not our fault, not worth a trace.
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, socket.timeout)


@dataclass
class Health:
    model_loaded: bool = False
    broker_ok: bool = False
    database_ok: bool = False
    last_loop_at: float = field(default_factory=time.monotonic)
    stall_seconds: float = 60.0  # the loop polls at least every second; much longer means it is stuck

    def alive(self) -> bool:
        return time.monotonic() - self.last_loop_at < self.stall_seconds

    def ready(self) -> bool:
        return self.model_loaded and self.broker_ok and self.database_ok

    def as_dict(self) -> dict:
        return {
            "alive": self.alive(),
            "ready": self.ready(),
            "model_loaded": self.model_loaded,
            "broker_ok": self.broker_ok,
            "database_ok": self.database_ok,
        }


class _BoundedServer(ThreadingHTTPServer):
    """One thread per connection, but never more than max_connections of them."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, handler, max_connections: int):
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            # Refused in the accept thread: a short non-blocking send, then close, so a flood cannot stall it.
            try:
                request.setblocking(False)
                request.send(_BUSY_RESPONSE)
            except OSError:
                pass
            self.shutdown_request(request)
            log.debug("HTTP: refused %s, %d connections already open", client_address[0], MAX_CONNECTIONS)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        import sys

        err = sys.exc_info()[1]
        if isinstance(err, _CLIENT_GONE):
            log.debug("HTTP: client %s went away: %s", client_address[0], type(err).__name__)
        else:
            log.warning("HTTP: request from %s failed: %r", client_address[0], err)


def serve(
    port: int,
    health: Health,
    registry,
    host: str = DEFAULT_HOST,
    timeout: float = REQUEST_TIMEOUT_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200 if health.alive() else 503, orjson.dumps(health.as_dict()), "application/json")
            elif path == "/readyz":
                self._send(200 if health.ready() else 503, orjson.dumps(health.as_dict()), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not worth a log line
            pass

    Handler.timeout = timeout  # StreamRequestHandler applies it to the socket: reads and writes both
    server = _BoundedServer((host, port), Handler, max_connections)
    threading.Thread(target=server.serve_forever, name="streamer-http", daemon=True).start()
    return server
