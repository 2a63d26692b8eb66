"""`nudge delivery ledger` reads the engine's ledger."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.campaigns.candidates import Candidate, Decision, Verdict
from engine.cli import app
from engine.config import Settings
from engine.db import connect
from engine.delivery.ledger import Ledger

T = datetime(2017, 1, 1, tzinfo=UTC)


def test_the_ledger_command_counts_and_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    ledger = Ledger(connect(Settings().database_url))
    ledger.record([Decision(Candidate("winback", "1", "o", T), Verdict.QUEUED, T, T, "night"),
                   Decision(Candidate("winback", "2", "o", T), Verdict.CAPPED, T)], {"winback": "push"})
    ledger.mark("winback|1|o", Verdict.SENT, T)
    out = CliRunner().invoke(app, ["delivery", "ledger", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"counts": {"winback": {"sent": 1, "capped": 1}},
                                      "deferred": {"winback": {"night": 1}}}
    table = CliRunner().invoke(app, ["delivery", "ledger"])
    assert "winback" in table.output and "0 / 1" in table.output
    rows = json.loads(CliRunner().invoke(app, ["delivery", "ledger", "--customer", "1", "--json"]).output)
    assert [(r["key"], r["verdict"], r["sent_at"]) for r in rows] == [("winback|1|o", "sent", T.isoformat())]
