"""HTTP endpoints for operators: /metrics (Prometheus), /healthz (the loop is alive), /readyz (model loaded,
broker and database reachable). Served from a daemon thread; reads flags the pipeline sets."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


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
        return {"alive": self.alive(), "ready": self.ready(), "model_loaded": self.model_loaded,
                "broker_ok": self.broker_ok, "database_ok": self.database_ok}


def serve(port: int, health: Health, registry, host: str = "0.0.0.0") -> ThreadingHTTPServer:
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

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="streamer-http", daemon=True).start()
    return server
