"""The embedded runtime on real inputs: JSON Lines with every kind of bad record, and Complete Journey."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import Settings
from engine.deadletters import list_dead_letters
from engine.errors import SourceError
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.sources.jsonl import JsonLinesSource


def purchase(event_id: str, when: str, amount: float = 3.5, customer: str = "c1", **extra: object) -> dict:
    return {"event_id": event_id, "customer_id": customer, "event_time": when,
            "lines": [{"product_id": "p1", "category": ["DAIRY", "MILK"], "quantity": 1, "amount": amount}],
            **extra}


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """A stream with one of each problem, in arrival order."""
    return write_jsonl(tmp_path / "events.jsonl", [
        {"type": "profile", "customer_id": "c1", "time_zone": "Asia/Seoul", "sex": "여성", "age_band": "30대"},
        purchase("r1", "2021-01-05T10:00:00+09:00"),
        purchase("r2", "2021-01-07T10:00:00+09:00", customer="c2"),
        purchase("r1", "2021-01-05T10:00:00+09:00"),  # identical replay: counted, no effect
        purchase("r1", "2021-01-05T10:00:00+09:00", amount=9.0),  # same id, other content
        purchase("r0", "2021-01-02T08:00:00+09:00"),  # late: older than the watermark, still applied
        purchase("r9", "2099-01-01T00:00:00+09:00"),  # one bad timestamp must not move the clock
        purchase("r3", "2021-01-08 09:00:00"),  # naive: takes the source's zone
        purchase("r4", "05/01/2021 10:00"),  # unknown date format
        purchase("r5", "2021-01-08T11:00:00+09:00", amount="abc"),  # non-numeric amount
        {"customer_id": "c1", "event_time": "2021-01-08T12:00:00+09:00", "lines": []},  # no event id
        "{not json",
        [1, 2, 3],
    ])


def test_messy_stream_applies_the_good_and_dead_letters_the_bad(messy: Path, settings: Settings) -> None:
    runtime = EmbeddedRuntime(settings)
    summary = runtime.replay(JsonLinesSource(messy, zone="Asia/Seoul"))
    run = summary.run
    assert (run.records, run.profiles, run.purchases, run.duplicates, run.late) == (13, 1, 4, 1, 1)
    assert run.dead_letters == 7
    assert summary.watermark.isoformat() == "2021-01-08T09:00:00+09:00"
    c1 = summary.states["c1"]
    assert c1.baskets == 3 and c1.monetary == pytest.approx(10.5)  # r1, r0, r3 — r1 once
    letters = {d.position: d for d in list_dead_letters(runtime.engine)}
    assert sorted(letters) == [4, 6, 8, 9, 10, 11, 12]
    assert "conflicting duplicate" in letters[4].reason and "r1" in letters[4].reason
    assert "future-dated" in letters[6].reason
    assert "events.jsonl line 9" in letters[8].reason and "event_time" in letters[8].reason
    assert "line 10" in letters[9].reason and "lines.0.amount" in letters[9].reason
    assert "event_id" in letters[10].reason and "Field required" in letters[10].reason
    assert "not JSON" in letters[11].reason
    assert "expected a JSON object" in letters[12].reason
    assert json.loads(letters[9].raw)["lines"][0]["amount"] == "abc"  # the record as it was read
    assert runtime.checkpoints.load_profiles()["c1"].time_zone == "Asia/Seoul"


def test_naive_timestamps_take_the_declared_zone(tmp_path: Path, settings: Settings) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [purchase("r1", "2021-01-01 23:30:00")])
    summary = EmbeddedRuntime(settings).replay(JsonLinesSource(path, zone="Asia/Seoul"))
    assert summary.watermark.utcoffset().total_seconds() == 9 * 3600
    assert summary.states["c1"].first_purchase.isoformat() == "2021-01-01T14:30:00+00:00"


def test_a_second_run_resumes_and_fresh_starts_over(messy: Path, settings: Settings) -> None:
    runtime = EmbeddedRuntime(settings)
    first = runtime.replay(JsonLinesSource(messy))
    again = runtime.replay(JsonLinesSource(messy))
    assert again.run.records == 0 and again.resumed_from == first.position
    assert again.states == first.states and again.total.dead_letters == 7
    fresh = runtime.replay(JsonLinesSource(messy), fresh=True)
    assert fresh.run.records == 13 and fresh.states == first.states
    assert len(list_dead_letters(runtime.engine)) == 7  # recorded once, not once per run


@pytest.mark.parametrize(("content", "message"), [
    (b"", "the file is empty"),
    (b"  \n\n", "the file is empty"),
    (b'{"event_id": "r1"}\n{"event_id": "caf\xe9"}\n', "line 2: bytes that are not UTF-8"),
])
def test_unreadable_files_are_errors_that_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as info:
        JsonLinesSource(path)
    assert "bad.jsonl" in str(info.value)


def test_cli_replay_and_deadletters(messy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "cli-home"))
    runner = CliRunner()
    result = runner.invoke(app, ["replay", "--source", "jsonl", str(messy), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["dead_letters"] == 7 and figures["late"] == 1 and figures["customers"] == 2
    listed = runner.invoke(app, ["deadletters", "--json"])
    reasons = [json.loads(line)["reason"] for line in listed.stdout.splitlines()]
    assert len(reasons) == 7 and any("future-dated" in r for r in reasons)
    shown = runner.invoke(app, ["customer", "c1"])
    assert shown.exit_code == 0 and "DAIRY" in shown.stdout and "'frequency': 3" in shown.stdout
    unknown = runner.invoke(app, ["customer", "nobody"])
    assert unknown.exit_code == 2 and "no customer 'nobody'" in unknown.output
    summary = runner.invoke(app, ["summary", "--json"])
    assert json.loads(summary.stdout)["baskets"] == 4
    missing = runner.invoke(app, ["replay", "--source", "jsonl", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "nope.jsonl: no such file" in missing.output


def test_complete_journey_households_replay(cj_tables: dict, cj_households: set[int], settings: Settings) -> None:
    source = CompleteJourneySource(households=cj_households, tables=cj_tables)
    summary = EmbeddedRuntime(settings.model_copy(update={"checkpoint_every": 100})).replay(source)
    tx = cj_tables["transactions"]
    mine = tx[tx["household_id"].isin(cj_households)]
    assert summary.run.purchases == mine["basket_id"].nunique()
    assert summary.run.profiles == len(cj_households) and summary.run.dead_letters == 0
    assert summary.run.late == 0  # the source is in event-time order
    for hh, rows in mine.groupby("household_id"):
        state = summary.states[str(hh)]
        assert state.monetary == pytest.approx(rows["sales_value"].sum(), rel=1e-9)
        # Every line but the voided or zero-value scans (quantity 0, amount 0) counts as bought: CJ has no returns.
        assert sum(state.products.values()) == ((rows["quantity"] > 0) | (rows["sales_value"].round(2) > 0)).sum()
