"""The read models the CLI renders, and the commands that read the engine's stores instead of a source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine import queries
from engine.cli import app
from engine.config import Settings
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.summary import population_summary


def test_population_and_status_read_the_stores(cj_tables: dict, cj_households: set[int], settings: Settings) -> None:
    runtime = EmbeddedRuntime(settings.model_copy(update={"checkpoint_every": 300}))
    summary = runtime.replay(CompleteJourneySource(households=cj_households, tables=cj_tables))
    figures = queries.population(runtime.checkpoints)
    assert figures.model_dump(mode="json") == {**population_summary(summary.states, summary.watermark)}
    status = queries.replay_status(runtime.checkpoints, runtime.lines)
    assert status.customers == len(cj_households) and status.watermark == summary.watermark
    (cj,) = status.sources
    assert cj.complete and cj.position == summary.position and cj.counters == vars(summary.total)
    assert status.line_store.purchases == summary.total.purchases
    assert status.line_store.parts == len(runtime.lines.parts()) > 1
    assert status.line_store.last_time == summary.watermark and status.line_store.dropped_until is None


def test_refit_and_evaluate_without_a_replay_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    for command in (["refit"], ["evaluate", "--split", "2017-10-01"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert "run `nudge replay` first, or pass --source" in result.output


def test_registry_root_is_the_models_dir_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    assert f"no model versions in {tmp_path / 'home' / 'models'}" in runner.invoke(app, ["models", "list"]).stdout
    monkeypatch.setenv("NUDGE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert Settings().models_dir == tmp_path / "elsewhere"
    missing = runner.invoke(app, ["models", "list", "segments"])
    assert missing.exit_code == 2 and "elsewhere" in missing.output


def test_cli_status_after_a_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    events = tmp_path / "e.jsonl"
    events.write_text('{"event_id": "r1", "customer_id": "c1", "event_time": "2021-01-05T10:00:00+09:00", '
                      '"lines": [["p1", ["DAIRY"], 1, 3.5]]}\n{not json\n', encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(app, ["replay", "--source", "jsonl", str(events)]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
    assert shown["customers"] == 1 and shown["watermark"] == "2021-01-05T01:00:00+00:00"
    assert shown["line_store"]["lines"] == 1 and shown["sources"][0]["counters"]["dead_letters"] == 1
    assert "1 part(s), 1 purchases, 1 lines" in runner.invoke(app, ["status"]).stdout
    letters = [json.loads(line) for line in runner.invoke(app, ["deadletters", "--json"]).stdout.splitlines()]
    assert [d["position"] for d in letters] == [1] and "not JSON" in letters[0]["reason"]
