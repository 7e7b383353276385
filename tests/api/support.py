"""`streamer serve` as a real process for tests: started on a free port, its URL read from its log line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

from testkit.pipeline import MODELS, ROOT


def serve_env(db_url: str, base: dict | None = None, **extra) -> dict:
    """The environment without the caller's STREAMER_*, pointed at db_url, the shipped model and port 0."""
    env = {k: v for k, v in (base or os.environ).items() if base is not None or not k.startswith("STREAMER_")}
    env.setdefault("STREAMER_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    env.update(STREAMER_DATABASE_URL=db_url, STREAMER_MODELS_DIR=str(MODELS), STREAMER_API_PORT="0", **extra)
    return env


class Serve:
    def __init__(self, env: dict, *args: str, timeout: float = 30.0):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "serve", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.proc.stdout.readline()
            assert line or self.proc.poll() is None, "".join(self.lines)
            self.lines.append(line)
            m = re.search(r"serving (http://\S+/)", line)
            if m:
                self.url = m.group(1)
                return
            assert time.monotonic() < deadline, "".join(self.lines)

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.url + path.lstrip("/"))
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(15)
        self.lines.append(self.proc.stdout.read())
        return code
