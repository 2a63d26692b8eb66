"""`nudge serve` runs the API on uvicorn over the engine home and says where."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.api.conftest import HOUSEHOLDS, copy_home

pytestmark = pytest.mark.slow  # the session's backtest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_prints_the_url_and_answers_there(built, tmp_path) -> None:
    settings = copy_home(built.settings, tmp_path / "home")
    port = _free_port()
    env = {**os.environ, "NUDGE_HOME": str(settings.home), "NUDGE_CAMPAIGNS_DIR": str(settings.campaigns_dir),
           "NUDGE_TEMPLATES_DIR": str(settings.templates_dir), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    env.pop("NUDGE_API_WRITE_TOKEN", None)
    server = subprocess.Popen([sys.executable, "-m", "engine.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line and "/docs" in line, line
        answer = None
        for _ in range(100):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/overview", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200 and answer.json()["customers"] == HOUSEHOLDS
        assert httpx.get(f"http://127.0.0.1:{port}/docs", timeout=2).status_code == 200
        refused = httpx.post(f"http://127.0.0.1:{port}/api/events", json={}, timeout=2)
        assert refused.status_code == 403  # no write token configured: every write refused
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert "writes (POST, DELETE) are refused" in server.stderr.read()
