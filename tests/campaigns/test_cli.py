"""`nudge campaigns`: check's exit code and lines, the schema, list, pause/resume and the audit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.campaigns.files import schema_json
from engine.cli import app
from tests.campaigns.conftest import CAMPAIGNS


@pytest.fixture
def home(tmp_path: Path, templates: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    for name in ("cj_repurchase_coupon.yaml", "cj_winback.yaml"):
        shutil.copy(CAMPAIGNS / name, folder / name)
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NUDGE_CAMPAIGNS_DIR", str(folder))
    monkeypatch.setenv("NUDGE_TEMPLATES_DIR", str(templates))
    return folder


def test_check_prints_each_problem_and_exits_1(home: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["campaigns", "check"])
    assert ok.exit_code == 0, ok.output
    assert "2 of 2 campaign files valid: cj_repurchase_coupon, cj_winback" in ok.stderr
    bad = home / "cj_winback.yaml"
    bad.write_text(bad.read_text().replace("channel: push", "channel: sms").replace("holdout: 20", "holdout: 90"))
    failed = runner.invoke(app, ["campaigns", "check", str(home)])
    assert failed.exit_code == 1
    lines = failed.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{bad}:") for line in lines)
    assert ": channel: input should be 'push'" in lines[0] and "(got 'sms')" in lines[0]
    assert ": holdout: input should be less than or equal to 50 (got 90)" in lines[1]
    assert "1 of 2 campaign files valid; 2 problems" in failed.stderr
    one = runner.invoke(app, ["campaigns", "check", str(home / "cj_repurchase_coupon.yaml")])
    assert one.exit_code == 0, one.output
    missing = runner.invoke(app, ["campaigns", "check", str(home / "nope")])
    assert missing.exit_code == 2 and "nope: no such file or folder" in missing.stderr


def test_schema_prints_or_writes_the_exported_schema(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["campaigns", "schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == json.loads(schema_json())
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["campaigns", "schema", "--out", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == schema_json()


def test_list_pause_resume_audit(home: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["campaigns", "list", "--json"])
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["cj_winback"]["state"] == "not loaded" and rows["cj_winback"]["trigger"] == "lapse"
    assert rows["cj_repurchase_coupon"]["offer"] == "coupon" and rows["cj_repurchase_coupon"]["priority"] == 20

    paused = runner.invoke(app, ["campaigns", "pause", "cj_winback", "--reason", "budget review", "--by", "ops"])
    assert paused.exit_code == 0 and "paused cj_winback" in paused.stderr
    assert "already paused" in runner.invoke(app, ["campaigns", "pause", "cj_winback", "--reason", "x"]).stderr
    rows = {row["name"]: row for row in map(json.loads, runner.invoke(app, ["campaigns", "list", "--json"])
                                            .stdout.splitlines())}
    assert rows["cj_winback"]["state"] == "paused"
    unknown = runner.invoke(app, ["campaigns", "pause", "nope", "--reason", "x"])
    assert unknown.exit_code == 2 and "campaign 'nope': no such campaign" in unknown.stderr
    assert "resumed cj_winback" in runner.invoke(app, ["campaigns", "resume", "cj_winback", "--by", "ops"]).stderr

    trail = [json.loads(line) for line in runner.invoke(app, ["campaigns", "audit", "--json"]).stdout.splitlines()]
    assert [(e["campaign"], e["action"], e["by"], e["detail"]) for e in trail] == [
        ("cj_winback", "paused", "ops", "budget review"), ("cj_winback", "resumed", "ops", "")]
    table = runner.invoke(app, ["campaigns", "audit"])
    assert table.exit_code == 0 and "budget review" in table.stdout
