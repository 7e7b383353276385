"""`streamer serve` as a real process: 127.0.0.1 by default, another bind address only with STREAMER_API_TOKEN,
and then every API call (and /metrics) needs that bearer token; the dashboard's page itself holds no data."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamer.commands.serve import check_bind
from streamer.errors import ConfigError
from testkit.pipeline import ROOT
from tests.api.support import Serve
from tests.api.support import serve_env as _env

TOKEN = "s3cret-token-for-tests"


def test_check_bind_needs_a_token_off_loopback():
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, "")
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError, match=r"refusing to bind 0\.0\.0\.0 without STREAMER_API_TOKEN"):
        check_bind("0.0.0.0", "")


@pytest.mark.integration
def test_a_non_loopback_bind_without_a_token_is_refused_in_one_line(migrated_db_url):
    got = subprocess.run(
        [sys.executable, "-m", "streamer", "serve", "--host", "0.0.0.0"],
        cwd=ROOT,
        env=_env(migrated_db_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 2, got.stderr
    assert got.stderr.strip().splitlines() == [
        "streamer serve: refusing to bind 0.0.0.0 without STREAMER_API_TOKEN: set a bearer token "
        "(STREAMER_API_TOKEN or STREAMER_API_TOKEN_FILE), or bind 127.0.0.1"
    ]


@pytest.mark.integration
def test_with_a_token_every_api_call_needs_it(migrated_db_url, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    serve = Serve(_env(migrated_db_url, STREAMER_API_TOKEN_FILE=str(token_file)), "--host", "0.0.0.0")
    try:
        assert serve.url.startswith("http://0.0.0.0:")
        serve.url = serve.url.replace("0.0.0.0", "127.0.0.1")
        for path in ("/api/status", "/api/events", "/api/summary", "/metrics"):
            assert serve.get(path)[0] == 401, path
            assert serve.get(path, "wrong")[0] == 401, path
            assert serve.get(path, TOKEN[:-1])[0] == 401, path
            assert serve.get(path, TOKEN)[0] == 200, path
        status, body = serve.get("/")
        assert status == 200 and "<html" in body  # the page asks for the token; it holds no data itself
        assert serve.get("/healthz")[0] == 200
    finally:
        assert serve.stop() == 0
    assert TOKEN not in "".join(serve.lines)


@pytest.mark.integration
def test_loopback_by_default_and_a_clean_stop(migrated_db_url):
    serve = Serve(_env(migrated_db_url))
    try:
        assert serve.url.startswith("http://127.0.0.1:")
        assert serve.get("/api/status")[0] == 200
    finally:
        assert serve.stop() == 0
