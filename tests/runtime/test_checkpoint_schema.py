"""A checkpoint written before the state had a schema still loads, and its replays are still duplicates.

`tests/fixtures/checkpoint_schema1.db` is a real checkpoint of the code before state schemas (main at
ca4cf25: states pickled as plain tuples, content digests from `hash()`), written by::

    PYTHONPATH=<main at ca4cf25> python -c "
    from engine.config import Settings
    from engine.runtime.embedded import EmbeddedRuntime
    from engine.sources.completejourney import CompleteJourneySource
    EmbeddedRuntime(Settings(home='/tmp/fix')).replay(CompleteJourneySource(households={1, 2, 3}))"
    sqlite3 /tmp/fix/nudge.db 'PRAGMA wal_checkpoint(TRUNCATE); VACUUM;'

(Complete Journey households 1, 2 and 3: 92 records, 91 purchases, one profile.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from engine.config import Settings
from engine.db import checkpoint, store_meta, upsert
from engine.errors import ConflictingDuplicate, NudgeError
from engine.events import DIGEST, LEGACY_DIGEST, Purchase
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.state import STATE_SCHEMA, CustomerState, apply

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_schema1.db"
HOUSEHOLDS = {1, 2, 3}
FIGURES = ("customer_id", "baskets", "days", "spend", "lpay_spend", "units", "first_ts", "last_ts", "products",
           "categories", "zone")


@pytest.fixture
def old_home(tmp_path: Path) -> Settings:
    """An engine home holding the schema-1 checkpoint (a copy: loading and saving change it)."""
    settings = Settings(home=tmp_path / "old")
    settings.home.mkdir()
    shutil.copy(FIXTURE, settings.home / "nudge.db")
    return settings


@pytest.fixture(scope="module")
def fresh(cj_tables: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CustomerState]:
    """The same households replayed by this code."""
    settings = Settings(home=tmp_path_factory.mktemp("fresh"))
    return EmbeddedRuntime(settings).replay(CompleteJourneySource(households=HOUSEHOLDS, tables=cj_tables)).states


def same_figures(old: CustomerState, new: CustomerState) -> bool:
    """Equal in everything but the content half of the event words (digested differently)."""
    return (all(getattr(old, f) == getattr(new, f) for f in FIGURES)
            and [w >> 24 for w in old.event_words] == [w >> 24 for w in new.event_words])


def test_a_schema_1_checkpoint_loads_with_the_new_fields_filled(old_home: Settings,
                                                                fresh: dict[str, CustomerState]) -> None:
    runtime = EmbeddedRuntime(old_home)  # connecting adds the store_meta table to the old database
    states = runtime.checkpoints.load_states()
    assert sorted(states) == sorted(fresh) and len(states) == 3
    for cid, state in states.items():
        assert state.zone == "UTC" and state.digest == LEGACY_DIGEST and fresh[cid].digest == DIGEST
        assert same_figures(state, fresh[cid]), cid
        now = runtime.checkpoints.watermark()
        assert state.lrfmv(now) == fresh[cid].lrfmv(now)


def test_replaying_the_same_events_over_a_migrated_checkpoint_is_all_duplicates(
        old_home: Settings, fresh: dict[str, CustomerState], cj_tables: dict) -> None:
    runtime = EmbeddedRuntime(old_home)
    before = runtime.checkpoints.load_states()
    with runtime.engine.begin() as conn:  # forget the position, keep the states: the source is read again
        conn.execute(delete(checkpoint))
    summary = runtime.replay(CompleteJourneySource(households=HOUSEHOLDS, tables=cj_tables))
    run = summary.run
    assert (run.records, run.duplicates, run.purchases, run.profiles, run.dead_letters) == (92, 91, 0, 1, 0)
    after = runtime.checkpoints.load_states()
    assert after == before  # untouched, legacy digest and all
    with runtime.engine.connect() as conn:
        meta = {r.key: r.value for r in conn.execute(select(store_meta))}
    assert int(meta["state_schema"]) == STATE_SCHEMA
    assert {"python", "pandas", "numpy", "pydantic", "sqlalchemy"} <= set(json.loads(meta["libraries"]))


def test_a_conflict_is_still_refused_by_a_migrated_state(old_home: Settings, cj_tables: dict) -> None:
    runtime = EmbeddedRuntime(old_home)
    states = runtime.checkpoints.load_states()
    source = CompleteJourneySource(households={1}, tables=cj_tables)
    decoded = (source.decoder.decode(r.raw, r.where) for r in source.records(0))
    purchases = [e for e in decoded if isinstance(e, Purchase)]
    event = purchases[0]
    state = states[event.customer_id]
    assert apply(state, event) is state and state.events == len(purchases)
    changed = event.model_copy(update={"store_id": "elsewhere"})
    with pytest.raises(ConflictingDuplicate, match=event.event_id):
        apply(state, changed)


def test_a_store_written_by_a_newer_schema_is_refused_naming_the_versions(old_home: Settings) -> None:
    runtime = EmbeddedRuntime(old_home)
    with runtime.engine.begin() as conn:
        conn.execute(upsert(runtime.engine, store_meta, "key"), [
            {"key": "state_schema", "value": str(STATE_SCHEMA + 1)},
            {"key": "libraries", "value": json.dumps({"python": "3.99.0", "pandas": "9.0"})},
        ])
    with pytest.raises(NudgeError, match=rf"schema version {STATE_SCHEMA + 1} \(written with python 3.99.0, "
                                         rf"pandas 9.0\); this nudge reads schema {STATE_SCHEMA}"):
        runtime.checkpoints.load_states()
