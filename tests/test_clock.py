"""One time model: day numbers in a zone, the watermark rule, and recency in the customer's zone around midnight."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from engine.cli import app
from engine.clock import EPOCH, WatermarkClock, day_number, day_start, watermark_after, zone_info, zone_name
from engine.config import Settings
from engine.errors import ConfigError
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.jsonl import JsonLinesSource

SEOUL = ZoneInfo("Asia/Seoul")


def test_day_number_is_the_local_date_in_the_zone_asked_or_the_times_own() -> None:
    late = datetime(2021, 1, 5, 23, 50, tzinfo=SEOUL)  # 14:50 UTC the same day
    early = datetime(2021, 1, 6, 0, 30, tzinfo=SEOUL)  # 15:30 UTC on the 5th
    assert day_number(date(1970, 1, 1)) == 0 and day_number(date(2021, 1, 6)) == date(2021, 1, 6).toordinal() - EPOCH
    assert day_number(early) == day_number(date(2021, 1, 6))
    assert day_number(early, "UTC") == day_number(date(2021, 1, 5))
    assert day_number(early.astimezone(UTC), "Asia/Seoul") == day_number(early, SEOUL) == day_number(early)
    assert day_number(late, "+09:00") == day_number(late) == day_number(date(2021, 1, 5))
    assert day_number(datetime(2021, 1, 5, 20), "Asia/Seoul") == day_number(date(2021, 1, 6))  # naive is UTC
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        day_number(early, "Mars/Olympus")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2140, 1, 1)),
       st.sampled_from(["UTC", "Asia/Seoul", "America/New_York", "+05:30", "-03:00"]))
def test_zone_names_round_trip_and_day_start_opens_its_day(moment: datetime, zone: str) -> None:
    local = moment.replace(tzinfo=UTC).astimezone(zone_info(zone))
    assert zone_name(local) == zone
    day = day_number(local)
    assert day_number(day_start(day, zone)) == day and day_start(day, zone) <= local < day_start(day + 1, zone)


def test_fixed_offsets_without_a_key_are_named_by_offset() -> None:
    assert zone_name(datetime(2021, 1, 1, tzinfo=timezone(timedelta(hours=-4, minutes=-30)))) == "-04:30"
    assert zone_name(datetime(2021, 1, 1, tzinfo=timezone.utc)) == "UTC"  # noqa: UP017 — the pre-3.11 spelling
    assert zone_name(datetime.fromisoformat("2021-01-01T10:00:00+09:00")) == "+09:00"


def test_the_watermark_rule_is_midnight_utc_after_the_last_events_day() -> None:
    assert watermark_after(datetime(2017, 9, 30, 23, 59, tzinfo=UTC)) == datetime(2017, 10, 1, tzinfo=UTC)
    assert watermark_after(datetime(2017, 10, 1, tzinfo=UTC)) == datetime(2017, 10, 2, tzinfo=UTC)
    # 00:30 in Seoul is 15:30 UTC the day before: the UTC day decides.
    assert watermark_after(datetime(2021, 1, 6, 0, 30, tzinfo=SEOUL)) == datetime(2021, 1, 6, tzinfo=UTC)


def test_watermark_clock_never_moves_back() -> None:
    clock = WatermarkClock()
    clock.observe(datetime(2021, 1, 6, tzinfo=UTC))
    clock.observe(datetime(2021, 1, 5, tzinfo=UTC))
    assert clock.now() == datetime(2021, 1, 6, tzinfo=UTC)


@pytest.fixture
def seoul_night(tmp_path: Path) -> Path:
    """Naive Seoul timestamps: c1 buys at 23:50 on the 5th, c2 at 00:10 and c3 at 00:30 on the 6th (the watermark)."""
    path = tmp_path / "night.jsonl"
    rows = [("r1", "c1", "2021-01-05 23:50:00"), ("r2", "c2", "2021-01-06 00:10:00"),
            ("r3", "c3", "2021-01-06 00:30:00")]
    path.write_text("".join(json.dumps({
        "event_id": rid, "customer_id": cid, "event_time": when,
        "lines": [{"product_id": "p1", "category": ["음료"], "quantity": 1, "amount": 1000.0}]}) + "\n"
        for rid, cid, when in rows), encoding="utf-8")
    return path


def test_recency_is_counted_in_the_customers_zone_at_half_past_midnight(seoul_night: Path, settings: Settings,
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = EmbeddedRuntime(settings)
    runtime.replay(JsonLinesSource(seoul_night, zone="Asia/Seoul"))
    # What `nudge summary` and `nudge customer` use: the states and the watermark read back from the checkpoint,
    # which keeps the watermark in UTC (15:30 on the 5th).
    states = runtime.checkpoints.load_states()
    now = runtime.checkpoints.watermark()
    assert now == datetime(2021, 1, 6, 0, 30, tzinfo=SEOUL) and now.tzinfo is UTC
    assert {c: s.zone for c, s in states.items()} == dict.fromkeys(("c1", "c2", "c3"), "Asia/Seoul")
    assert states["c1"].lrfmv(now)["recency"] == 1  # 23:50 yesterday, local time
    assert states["c2"].lrfmv(now)["recency"] == 0  # 00:10 today, earlier than now the same local day
    assert states["c3"].recency_days(now) == 0
    assert states["c1"].recency_days(now.astimezone(SEOUL)) == 1  # whatever zone `now` carries

    monkeypatch.setenv("NUDGE_HOME", str(settings.home))
    result = CliRunner().invoke(app, ["summary", "--json"])
    assert result.exit_code == 0, result.output
    recency = json.loads(result.output)["lrfmv"]["recency"]
    assert (recency["p0"], recency["p100"], recency["mean"]) == (0.0, 1.0, pytest.approx(1 / 3))
