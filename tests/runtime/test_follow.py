"""Live: `nudge run --follow` reads purchases as they are appended to a JSON Lines file and sends a
purchase-triggered message at once, on the wall clock — once per key, a repeated event sending nothing — and
stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WELCOME = """\
name: welcome
kind: transactional
trigger: {type: event, first_purchase: true}
channel: file
template: welcome
language: en
sender: Test Shop
"""
TEMPLATE = ("{% block title %}Welcome{% endblock %}\n"
            "{% block body %}Thanks for shopping at {{ sender }}.{% endblock %}\n")


def _nudge() -> str:
    script = Path(sys.executable).parent / "nudge"
    return str(script) if script.exists() else shutil.which("nudge") or pytest.fail("no nudge console script")


def _purchase(event_id: str, customer: str) -> str:
    return json.dumps({"event_id": event_id, "customer_id": customer, "event_time": datetime.now(UTC).isoformat(),
                       "lines": [["p1", ["DAIRY"], 1, 3.5]]}) + "\n"


def _keys(outbox: Path) -> list[str]:
    if not outbox.exists():
        return []
    return [json.loads(line)["key"] for line in outbox.read_text().splitlines() if line.strip()]


def _wait_for(outbox: Path, key: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while key not in _keys(outbox):
        if proc.poll() is not None:
            pytest.fail(f"nudge run --follow exited ({proc.returncode}):\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{key} not delivered within {timeout:.0f} s (outbox: {_keys(outbox)})")
        time.sleep(0.1)


def test_following_a_file_sends_a_purchase_triggered_message_once_and_stops_on_sigterm(tmp_path: Path) -> None:
    campaigns, templates, home = tmp_path / "campaigns", tmp_path / "templates", tmp_path / "home"
    campaigns.mkdir()
    templates.mkdir()
    (campaigns / "welcome.yaml").write_text(WELCOME)
    (templates / "welcome.en.j2").write_text(TEMPLATE)
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env.update(NUDGE_HOME=str(home), NUDGE_TEMPLATES_DIR=str(templates), NUDGE_FOLLOW_POLL_SECONDS="0.2")
    outbox = home / "outbox.jsonl"
    proc = subprocess.Popen([_nudge(), "run", "--follow", str(feed), "--campaigns", str(campaigns)], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        first = _purchase("e1", "c1")
        with feed.open("a") as f:
            f.write(first)
        _wait_for(outbox, "welcome|c1|e1", proc)
        with feed.open("a") as f:
            f.write(first)  # the same event again: a counted no-op
            f.write(_purchase("e2", "c1"))  # not a first purchase
            f.write(_purchase("e3", "c2"))
        _wait_for(outbox, "welcome|c2|e3", proc)
        time.sleep(1.0)  # a few more polls: nothing else may arrive
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 0, stderr
    assert sorted(_keys(outbox)) == ["welcome|c1|e1", "welcome|c2|e3"]
