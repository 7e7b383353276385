"""The HTTP endpoints survive half-open, slow and vanishing clients (issue 11 item 6). Pure unit tests: a real
server on an ephemeral port of 127.0.0.1, no broker or database."""

from __future__ import annotations

import logging
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from streamer.config import settings_from_args
from streamer.health import Health, serve


@pytest.fixture
def server():
    registry = CollectorRegistry()
    Counter("probe_total", "a metric to scrape", registry=registry).inc()
    health = Health(model_loaded=True, broker_ok=True, database_ok=True)
    srv = serve(0, health, registry, timeout=5.0, max_connections=4)  # 5 s: the flood is in before any slot frees
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{srv.server_address[1]}{path}"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _get_until_ok(srv, path: str) -> tuple[int, bytes, list[int]]:
    """GET until 200; every attempt must be answered (a hung server raises a timeout and fails the test)."""
    statuses = []
    for _ in range(120):
        status, body = _get(srv, path)
        statuses.append(status)
        if status != 503:
            return status, body, statuses
        time.sleep(0.25)
    return status, body, statuses


def test_binds_loopback_by_default():
    srv = serve(0, Health(), CollectorRegistry())
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.shutdown()
        srv.server_close()


def test_endpoints_keep_their_answers(server):
    status, body = _get(server, "/metrics")
    assert status == 200 and b"probe_total 1.0" in body
    assert _get(server, "/healthz")[0] == 200
    assert _get(server, "/readyz")[0] == 200
    assert _get(server, "/nope")[0] == 404


@pytest.mark.slow
def test_half_open_and_slow_clients_do_not_starve_a_scrape(server, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="streamer.health")
    address = ("127.0.0.1", server.server_address[1])
    half_open = [socket.create_connection(address) for _ in range(200)]  # connect, never send
    slow = []
    for _ in range(5):  # a request line that never ends
        s = socket.create_connection(address)
        s.sendall(b"GET /metr")
        slow.append(s)
    try:
        # Connections beyond the bound are refused with 503 rather than queued behind the idle ones.
        half_open[-1].settimeout(30)
        assert half_open[-1].recv(64).startswith(b"HTTP/1.0 503")
        status, body, statuses = _get_until_ok(server, "/metrics")
        assert status == 200 and b"probe_total" in body, statuses
    finally:
        for s in half_open + slow:
            s.close()
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_clients_that_hang_up_cost_no_traceback(server, capfd, caplog):
    caplog.set_level(logging.DEBUG, logger="streamer.health")
    address = ("127.0.0.1", server.server_address[1])
    for _ in range(50):
        s = socket.create_connection(address)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        s.close()
    status, _, statuses = _get_until_ok(server, "/healthz")
    assert status == 200, statuses
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_metrics_host_setting():
    assert settings_from_args(env={}).metrics_host == "127.0.0.1"
    assert settings_from_args(env={"STREAMER_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
