"""The line store: what a replay accepted, kept so a refit needs no source; equal to re-reading the source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config import Settings
from engine.errors import NudgeError
from engine.events import Purchase
from engine.models.data import collect, from_stores
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.sources.jsonl import JsonLinesSource
from engine.state import apply
from engine.store.lines import purchases, purchases_table

MIDDLE = datetime(2017, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def households(cj_tables: dict) -> set[int]:
    """Three dozen real households with demographics, spread over the ids."""
    demo = sorted(set(cj_tables["demographics"]["household_id"].tolist()))
    return set(demo[::22][:36])


@pytest.fixture
def replayed(cj_tables: dict, households: set[int],
             settings: Settings) -> tuple[EmbeddedRuntime, CompleteJourneySource]:
    """Those households replayed with a checkpoint every 37 records (many parts)."""
    source = CompleteJourneySource(households=households, tables=cj_tables)
    runtime = EmbeddedRuntime(settings.model_copy(update={"checkpoint_every": 37}))
    summary = runtime.replay(source)
    assert summary.run.dead_letters == 0 and len(runtime.lines.parts()) > 20
    return runtime, source


@pytest.mark.parametrize("until", [None, MIDDLE], ids=["all", "middle"])
def test_training_data_from_the_stores_equals_re_reading_the_source(replayed: tuple, until: datetime | None) -> None:
    runtime, source = replayed
    stored, stored_after = from_stores(runtime.checkpoints, runtime.lines, until)
    read, read_after = collect(source, until)
    assert stored.states == read.states and len(stored.states) == 36
    assert stored.profiles == read.profiles and len(stored.profiles) == 36
    pd.testing.assert_frame_equal(stored.lines, read.lines)
    pd.testing.assert_frame_equal(stored_after, read_after)
    assert stored.data_hash == read.data_hash
    assert stored.until == read.until == until
    if until is not None:  # refolded from the stored purchases: not the checkpoint's states
        assert stored.states != runtime.checkpoints.load_states()
        assert len(stored_after) > 0 and (stored_after["event_time"] >= pd.Timestamp(until)).all()


def test_a_resumed_replay_stores_each_purchase_once(cj_tables: dict, households: set[int], settings: Settings) -> None:
    source = CompleteJourneySource(households=households, tables=cj_tables)
    clean = EmbeddedRuntime(settings.model_copy(update={"home": settings.home / "clean"}))
    clean.replay(source)
    crashed = EmbeddedRuntime(settings.model_copy(update={"home": settings.home / "crashed", "checkpoint_every": 50}))
    crashed.replay(source)
    # What a kill between writing a part and committing its checkpoint leaves: a part no checkpoint lists
    # (here holding purchases already stored), and a write cut short.
    seq = crashed.lines.next_seq()
    table = crashed.lines.read()
    crashed.lines.write(seq, source.key, table.slice(table.num_rows - 40))
    (crashed.lines.root / f".part-{seq + 1:06d}.tmp").write_bytes(b"half a part")
    assert len(list(crashed.lines.root.iterdir())) == len(crashed.lines.parts()) + 2
    crashed.replay(source)  # complete: nothing to redo, but the orphans go
    assert len(list(crashed.lines.root.iterdir())) == len(crashed.lines.parts())
    assert crashed.lines.read().equals(clean.lines.read())


def test_fresh_forgets_the_lines(cj_tables: dict, households: set[int], settings: Settings) -> None:
    source = CompleteJourneySource(households=households, tables=cj_tables)
    runtime = EmbeddedRuntime(settings.model_copy(update={"checkpoint_every": 500}))
    runtime.replay(source)
    first = runtime.lines.read()
    again = runtime.replay(source, fresh=True)
    assert again.run.purchases == first.num_rows == runtime.lines.read().num_rows
    assert runtime.lines.read().equals(first)


def test_retention_drops_whole_old_parts(cj_tables: dict, households: set[int], settings: Settings) -> None:
    source = CompleteJourneySource(households=households, tables=cj_tables)
    runtime = EmbeddedRuntime(settings.model_copy(update={"checkpoint_every": 40, "line_retention_days": 60}))
    summary = runtime.replay(source)
    kept = runtime.lines.read()
    cutoff = summary.watermark - timedelta(days=60)
    dropped = runtime.lines.dropped_until()
    assert dropped is not None and dropped < cutoff
    assert 0 < kept.num_rows < summary.run.purchases
    parts = runtime.lines.parts()
    assert all(p.last_time >= cutoff for p in parts)
    assert sorted(p.name for p in runtime.lines.root.iterdir()) == [runtime.lines.path(p.seq).name for p in parts]
    with pytest.raises(NudgeError, match="retention dropped the lines up to"):
        from_stores(runtime.checkpoints, runtime.lines, MIDDLE)
    latest, _ = from_stores(runtime.checkpoints, runtime.lines)  # the checkpoint's states, the kept lines
    assert latest.states == summary.states and len(latest.lines) == sum(p.lines for p in parts)


def test_nothing_replayed_is_a_clear_error(settings: Settings) -> None:
    runtime = EmbeddedRuntime(settings)
    with pytest.raises(NudgeError, match=r"run `nudge replay` first, or pass --source"):
        from_stores(runtime.checkpoints, runtime.lines)


def test_late_and_duplicate_purchases_keep_the_order_accepted(tmp_path: Path, settings: Settings) -> None:
    rows = [
        '{"event_id": "b", "customer_id": "c1", "event_time": "2021-01-07T10:00:00+09:00", "amount": 2.0}',
        '{"event_id": "a", "customer_id": "c1", "event_time": "2021-01-05T10:00:00+09:00", '
        '"lines": [["p1", ["DAIRY", "MILK"], 1, 3.5]]}',
        '{"event_id": "b", "customer_id": "c1", "event_time": "2021-01-07T10:00:00+09:00", "amount": 2.0}',
        '{"event_id": "z", "customer_id": "c1", "event_time": "2099-01-01T00:00:00+09:00", "amount": 1.0}',
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    runtime = EmbeddedRuntime(settings)
    summary = runtime.replay(JsonLinesSource(path))
    assert (summary.run.late, summary.run.duplicates, summary.run.dead_letters) == (1, 1, 1)
    stored = list(purchases(runtime.lines.read()))
    assert [p.event_id for p in stored] == ["b", "a"]  # the service use, then the late basket; not the copy
    assert stored[0].lines == () and stored[0].amount == 2.0
    assert stored[1].event_time.utcoffset() == timedelta(hours=9)
    read, _ = collect(JsonLinesSource(path))
    stored_data, _ = from_stores(runtime.checkpoints, runtime.lines)
    assert stored_data.data_hash == read.data_hash and stored_data.states == read.states


ZONES = st.sampled_from([UTC, ZoneInfo("Asia/Seoul"), ZoneInfo("America/New_York"), timezone(timedelta(hours=-3)),
                         timezone(timedelta(hours=5, minutes=45))])
LINES = st.lists(st.tuples(st.sampled_from(["p1", "p2", "우유"]),
                           st.lists(st.sampled_from(["DAIRY", "MILK", "음료"]), min_size=1, max_size=3).map(tuple),
                           st.integers(-3, 5), st.integers(-500, 5000).map(lambda c: c / 100)), max_size=6)


@st.composite
def purchase_lists(draw: st.DrawFn) -> list[Purchase]:
    out = []
    for i in range(draw(st.integers(1, 8))):
        when = datetime(2021, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 400 * 86_400)),
                                                            microseconds=draw(st.integers(0, 999_999)))
        lines = draw(LINES)
        out.append(Purchase(event_id=f"e{i}", customer_id=draw(st.sampled_from(["c1", "c2"])),
                            event_time=when.astimezone(draw(ZONES)), lines=lines,
                            amount=None if lines else draw(st.integers(-100, 100).map(lambda c: c / 10)),
                            store_id=draw(st.none() | st.just("s1")), affiliate=draw(st.none() | st.just("A01")),
                            channel=draw(st.sampled_from(["offline", "online"])), lpay=draw(st.booleans())))
    return out


@settings(max_examples=60, deadline=None)
@given(purchase_lists())
def test_stored_purchases_are_the_events_again(given_purchases: list[Purchase]) -> None:
    back = list(purchases(purchases_table(given_purchases)))
    assert [p.model_dump() for p in back] == [p.model_dump() for p in given_purchases]
    for original, restored in zip(given_purchases, back, strict=True):
        assert restored.event_time.utcoffset() == original.event_time.utcoffset()  # the local date is kept
        assert restored.content_key == original.content_key
        assert apply(None, restored) == apply(None, original)
