"""`nudge consent import` and `nudge consent show` on a real engine home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_idempotent_and_show_prints_what_is_in_effect(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    file = ROOT / "campaigns/consent/lpoint_consent.csv"
    first = runner.invoke(app, ["consent", "import", str(file)])
    assert first.exit_code == 0, first.output
    assert "2 change(s) added, 0 already stored, 1 customer(s)" in first.output
    assert "0 change(s) added, 2 already stored" in runner.invoke(app, ["consent", "import", str(file)]).output
    shown = runner.invoke(app, ["consent", "show", "M355489415", "--json"])
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.output)
    assert {(c["channel"], c["granted"]) for c in view["in_effect"]} == {("push", False), ("email", True)}
    assert view["reconfirmation_due"] == "2018-10-22T02:43:43+00:00"  # two years after the email grant
    assert runner.invoke(app, ["consent", "show", "M355489415", "--at", "2016-09-01"]).exit_code == 0
    missing = runner.invoke(app, ["consent", "show", "M000000000"])
    assert missing.exit_code == 2 and "no consent recorded for customer 'M000000000'" in missing.output


def test_a_bad_file_exits_2_naming_the_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    bad = tmp_path / "bad.csv"
    bad.write_text("customer_id,channel,purpose,granted,at,source\nM1,push,ads,1,2016-01-01T00:00:00+09:00,x\n",
                   encoding="utf-8")
    result = CliRunner().invoke(app, ["consent", "import", str(bad)])
    assert result.exit_code == 2
    assert "bad.csv:2:" in result.output and "purpose 'ads' is not one of" in result.output
