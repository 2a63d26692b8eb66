"""The scores store: typed values round-trip, a publish replaces a model's rows at once or not at all."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.db import connect
from engine.errors import NudgeError
from engine.models.catalogue import CATALOGUE
from engine.models.outputs import LEVELS, TYPES, VOCABULARY, output, outputs_of
from engine.store.scores import ScoreStore

AS_OF = datetime(2017, 10, 1, tzinfo=UTC)


def _frame(rows: list[tuple[str, str, str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["customer_id", "category", "output", "value"])


@pytest.fixture
def store(tmp_path: Path) -> ScoreStore:
    """A store in a fresh SQLite database."""
    return ScoreStore(connect(f"sqlite:///{tmp_path / 'engine.db'}"))


def test_every_catalogue_model_declares_its_vocabulary_outputs() -> None:
    assert {o.model for o in VOCABULARY} == {e.name for e in CATALOGUE}
    assert len({o.name for o in VOCABULARY}) == len(VOCABULARY)
    for o in VOCABULARY:
        assert o.type in TYPES and o.level in LEVELS and o.meaning and o.needs
        assert o.name.startswith("category.") == (o.level == "category")
    for entry in CATALOGUE:
        assert entry.factory.outputs == outputs_of(entry.name) and callable(entry.factory.score)


@given(st.lists(st.text(min_size=1), max_size=5), st.floats(allow_nan=False, allow_infinity=False),
       st.integers(-10**9, 10**9), st.dates(), st.text())
def test_values_round_trip_through_the_table_columns(products: list[str], number: float, whole: int,
                                                     day: date, name: str) -> None:
    for out, value in ((output("recommended"), products), (output("p_alive"), number),
                       (output("category.preference"), whole), (output("next_purchase.date"), day),
                       (output("segment"), name)):
        assert out.decode(*out.encode(value)) == value


def test_a_publish_replaces_the_models_rows_and_records_its_version(store: ScoreStore) -> None:
    store.publish("segments", "v0001", _frame([("1", "", "segment", "loyal"), ("2", "", "segment", "new")]), AS_OF)
    store.publish("rules", "v0001", _frame([("1", "", "cross_sell", ["a", "b"])]), AS_OF)
    later = AS_OF.astimezone(timezone(timedelta(hours=9))) + timedelta(days=1)  # any zone: stored as UTC
    store.publish("segments", "v0002", _frame([("1", "", "segment", "regular")]), later)
    assert [(s.model, s.version, s.output, s.value, s.as_of) for s in store.customer("1")] == [
        ("rules", "v0001", "cross_sell", ["a", "b"], AS_OF), ("segments", "v0002", "segment", "regular", later)]
    assert store.customer("2") == []
    held = store.versions()
    assert (held["segments"].version, held["segments"].rows, held["segments"].as_of) == ("v0002", 1, later)


def test_a_failing_publish_leaves_the_previous_rows(store: ScoreStore) -> None:
    store.publish("segments", "v0001", _frame([("1", "", "segment", "loyal")]), AS_OF)
    with pytest.raises(NudgeError, match="output 'p_alive' belongs to model 'clv'"):
        store.publish("segments", "v0002", _frame([("1", "", "segment", "new"), ("1", "", "p_alive", 0.5)]), AS_OF)
    with pytest.raises(NudgeError, match="no output 'segmnt'"):
        store.publish("segments", "v0002", _frame([("1", "", "segmnt", "new")]), AS_OF)
    assert [(s.version, s.value) for s in store.customer("1")] == [("v0001", "loyal")]
    assert store.versions()["segments"].version == "v0001"


def test_replacing_some_customers_touches_only_their_rows_of_those_outputs(store: ScoreStore) -> None:
    rows = [("1", "", "segment", "loyal"), ("1", "", "grade", "VIP"), ("2", "", "segment", "new")]
    store.publish("segments", "v0001", _frame(rows), AS_OF)
    later = AS_OF + timedelta(days=3)
    store.replace_customers("segments", "v0001", _frame([("1", "", "segment", "lost")]), later, ["1"], ["segment"])
    frame = store.frame("segments")
    assert list(zip(frame["customer_id"], frame["output"], frame["value"], frame["as_of"], strict=True)) == [
        ("1", "grade", "VIP", AS_OF), ("1", "segment", "lost", later), ("2", "segment", "new", AS_OF)]
    assert store.versions()["segments"].rows == 3
    with pytest.raises(NudgeError, match="outside the customers or outputs"):
        store.replace_customers("segments", "v0001", _frame([("2", "", "segment", "x")]), later, ["1"], ["segment"])
