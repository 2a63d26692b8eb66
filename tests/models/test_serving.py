"""Scores: after a refit the table answers every declared output for every customer; a changed customer is
re-scored alone; the customer view reads the table and names what is missing."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import Settings
from engine.db import connect
from engine.events import Purchase
from engine.models.catalogue import CATALOGUE
from engine.models.data import TrainingData
from engine.models.outputs import VOCABULARY, outputs_of
from engine.models.refit import refit_all
from engine.models.registry import Registry
from engine.models.serving import SCORED_MODELS, customer_view, rescore, score_all
from engine.runtime.embedded import EmbeddedRuntime
from engine.state import CustomerState, apply
from engine.store.checkpoints import Checkpoint
from engine.store.scores import ScoreStore

KEY = ["customer_id", "category", "output"]


@pytest.fixture(scope="module")
def fitted(cj_split: Callable, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingData, pd.DataFrame,
                                                                                  Registry, ScoreStore]:
    """Every model refitted on 200 real households before 2017-10-01, its scores in a SQLite table."""
    train, test_lines = cj_split(200)
    root = tmp_path_factory.mktemp("serving")
    registry = Registry(root / "models")
    store = ScoreStore(connect(f"sqlite:///{root / 'engine.db'}"))
    report = refit_all(train, registry, scores=store)
    assert report.ok, [(o.name, o.reason, o.score_error) for o in report.outcomes if not report.ok]
    return train, test_lines, registry, store


def _busy_customer(train: TrainingData) -> str:
    return max(sorted(train.states), key=lambda c: len(train.states[c].days))


def _expected_keys(name: str, states: dict[str, CustomerState], registry: Registry) -> set[tuple[str, str]]:
    """(customer, category) pairs an output's `needs` promises a value for."""
    output = next(o for o in VOCABULARY if o.name == name)
    min_days = 2  # next_purchase's and next_purchase_category's min_days
    if output.name == "grade":
        return {(c, "") for c in registry.active("segments").grades_.index}
    if output.level == "category":
        enough = 1 if output.model == "preference" else min_days
        return {(c, k) for c, s in states.items() for k, stats in s.categories.items() if len(stats.days) >= enough}
    if output.model == "next_purchase":
        return {(c, "") for c, s in states.items() if len(s.days) >= min_days}
    if output.needs == "a purchase day":
        return {(c, "") for c, s in states.items() if s.days}
    return {(c, "") for c in states}


def test_the_scores_table_answers_every_declared_output_for_every_customer(fitted: tuple) -> None:
    train, _, registry, store = fitted
    rows = store.frame()
    assert set(rows["output"]) == {o.name for o in VOCABULARY}
    assert set(store.versions()) == set(SCORED_MODELS) == {e.name for e in CATALOGUE}
    for o in VOCABULARY:
        mine = rows[rows["output"] == o.name]
        assert set(mine["model"]) == {o.model} and set(mine["version"]) == {"v0001"}
        have = set(zip(mine["customer_id"], mine["category"], strict=True))
        assert have == _expected_keys(o.name, train.states, registry), o.name
    assert not rows.duplicated(KEY).any() and (rows["as_of"] == train.until).all()
    for model, held in store.versions().items():
        assert held.rows == (rows["model"] == model).sum() and held.as_of == train.until


def test_every_serving_model_answers_about_one_customer_from_the_table(fitted: tuple) -> None:
    train, _, registry, store = fitted
    cid = _busy_customer(train)
    state = train.states[cid]
    view = customer_view(store, cid)
    assert view.missing == {} and set(view.versions) == set(SCORED_MODELS) and view.as_of == train.until
    assert view.segment in registry.active("segments").segment_names_
    assert view.grade in {"VIP", "Gold", "Silver", "Bronze", "At risk"}
    assert list(view.clv) == [o.name for o in outputs_of("clv")]
    assert 0 <= view.clv["p_alive"] <= 1 and view.clv["clv_12m"] >= view.clv["clv_3m"] > 0
    low, point, high = (date.fromisoformat(view.next_purchase[k]) for k in ("low", "date", "high"))
    assert train.until.date() <= low <= point <= high
    assert {c["category"] for c in view.categories} == set(state.categories)
    scores = [c["preference"] for c in view.categories]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 5 for s in scores)
    assert any("next_purchase" in c for c in view.categories)
    bought = {pid for pid, count in state.products.items() if count > 0}
    assert len(view.recommended) == 10 and len(view.explore) == 10 and len(view.recommended_categories) == 10
    assert not set(view.explore) & set(state.products)
    assert not set(view.cross_sell) & bought


def test_the_table_holds_what_the_models_answer(fitted: tuple) -> None:
    train, _, registry, store = fitted
    cid = _busy_customer(train)
    view = customer_view(store, cid)
    batch = registry.active("next_purchase").predict(train.states, train.until).set_index("customer_id").loc[cid]
    assert view.next_purchase == {k: str(pd.Timestamp(batch[k]).date()) for k in ("date", "low", "high")}
    assert view.segment == registry.active("segments").predict(train.states, train.until)[cid]
    assert view.clv == {k: float(v) for k, v in registry.active("clv").customers_.loc[cid].items()}
    assert view.recommended == registry.active("recommend").recommend(cid, 10)
    bought = [pid for pid, count in train.states[cid].products.items() if count > 0]
    assert view.cross_sell == registry.active("rules").cross_sell(bought, 10)


def test_clv_after_the_watermark_comes_from_the_state_and_a_silent_customer_fades(fitted: tuple) -> None:
    train, _, registry, _ = fitted
    model = registry.active("clv")
    cid = _busy_customer(train)
    one = {cid: train.states[cid]}

    def clv(now: object) -> dict[str, float]:
        rows = model.score(one, now)
        return dict(zip(rows["output"], rows["value"].astype(float), strict=True))

    at_fit, later = clv(train.until), clv(train.until + timedelta(days=60))
    assert later["p_alive"] < at_fit["p_alive"] and later["clv_12m"] < at_fit["clv_12m"]
    # A second after the watermark, from the state alone: only the first day's spend is estimated (and T is one day
    # longer), so the figures land close to the fit's.
    again = clv(train.until + timedelta(seconds=1))
    assert again["p_alive"] == pytest.approx(at_fit["p_alive"], rel=0.01) and again != at_fit
    assert again["clv_12m"] == pytest.approx(at_fit["clv_12m"], rel=0.05)


def _next_basket(train: TrainingData, test_lines: pd.DataFrame, cid: str) -> Purchase:
    """The customer's first real basket after the split, as the engine's purchase event."""
    mine = test_lines[test_lines["customer_id"].astype(str) == cid]
    first = mine[mine["event_id"] == mine.sort_values("event_time")["event_id"].iloc[0]]
    lines = tuple((str(r.product_id), (str(r.category),), int(r.quantity), float(r.amount))
                  for r in first.itertuples(index=False))
    return Purchase(event_id=str(first["event_id"].iloc[0]), customer_id=cid,
                    event_time=first["event_time"].iloc[0].to_pydatetime(), lines=lines)


def _one_basket_later(fitted: tuple, tmp_path: Path) -> tuple:
    """A copy of the fitted scores, the busiest customer given their next real basket, and the day after it."""
    train, test_lines, _, fitted_store = fitted
    store = ScoreStore(connect(f"sqlite:///{tmp_path / 'copy.db'}"))
    for name in SCORED_MODELS:
        store.publish(name, "v0001", _as_score_frame(fitted_store.frame(name)), train.until)
    cid = _busy_customer(train)
    basket = _next_basket(train, test_lines, cid)
    states = dict(train.states)
    states[cid] = apply(copy.deepcopy(states[cid]), basket)
    now = (pd.Timestamp(basket.event_time).tz_convert("UTC").normalize() + pd.Timedelta(days=1)).to_pydatetime()
    return store, store.frame(), cid, basket, states, now


def test_rescoring_one_changed_customer_changes_only_their_rows_and_equals_a_full_rescore(
        fitted: tuple, tmp_path: Path) -> None:
    registry = fitted[2]
    store, before, cid, _, states, now = _one_basket_later(fitted, tmp_path)

    written = rescore(store, registry, states, [cid], now)
    assert set(written) == {o.model for o in VOCABULARY if o.rescored}
    after = store.frame()
    others = before["customer_id"] != cid
    assert after[after["customer_id"] != cid].reset_index(drop=True).equals(before[others].reset_index(drop=True))
    mine = after[after["customer_id"] == cid]
    rescored = {o.name for o in VOCABULARY if o.rescored}
    assert (mine[mine["output"].isin(rescored)]["as_of"] == now).all()
    fixed = mine[~mine["output"].isin(rescored)].reset_index(drop=True)
    assert fixed.equals(before[(~others) & ~before["output"].isin(rescored)].reset_index(drop=True))
    changed = mine.merge(before[~others], on=KEY, suffixes=("", "_before"))
    assert (changed["value"].astype(str) != changed["value_before"].astype(str)).any()  # the purchase shows

    full = ScoreStore(connect(f"sqlite:///{tmp_path / 'full.db'}"))
    score_all(full, registry, states, now)
    everyone = full.frame()
    expected = everyone[(everyone["customer_id"] == cid) & everyone["output"].isin(rescored)]
    assert mine[mine["output"].isin(rescored)].reset_index(drop=True).equals(expected.reset_index(drop=True))


def test_rescoring_the_categories_a_purchase_touched_replaces_only_those_category_dates(
        fitted: tuple, tmp_path: Path) -> None:
    train, registry = fitted[0], fitted[2]
    store, before, cid, basket, states, now = _one_basket_later(fitted, tmp_path)
    touched = {line[1][0] for line in basket.lines}

    rescore(store, registry, states, [cid], now, categories={cid: touched})
    after = store.frame()
    dates = after[(after["customer_id"] == cid) & (after["model"] == "next_purchase_category")]
    was = before[(before["customer_id"] == cid) & (before["model"] == "next_purchase_category")]
    assert set(dates["category"]) == set(was["category"])  # no pair lost or added
    moved = dates[dates["category"].isin(touched)]
    kept = dates[~dates["category"].isin(touched)].reset_index(drop=True)
    assert len(moved) and (moved["as_of"] == now).all()
    assert kept.equals(was[~was["category"].isin(touched)].reset_index(drop=True))
    full = ScoreStore(connect(f"sqlite:///{tmp_path / 'full.db'}"))
    score_all(full, registry, states, now, models=["next_purchase_category"])
    everyone = full.frame()
    expected = everyone[(everyone["customer_id"] == cid) & everyone["category"].isin(touched)]
    assert moved.reset_index(drop=True).equals(expected.reset_index(drop=True))  # what a full re-score says
    others = after[after["model"] != "next_purchase_category"]
    assert (others[others["customer_id"] == cid]["as_of"].isin([now, train.until])).all()


def _as_score_frame(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[["customer_id", "category", "output", "value"]]


def test_a_model_without_scores_is_named_and_the_others_still_answer(fitted: tuple, tmp_path: Path) -> None:
    train, _, registry, _ = fitted
    store = ScoreStore(connect(f"sqlite:///{tmp_path / 'part.db'}"))
    score_all(store, registry, train.states, train.until, [m for m in SCORED_MODELS if m != "clv"])
    cid = _busy_customer(train)
    view = customer_view(store, cid)
    assert set(view.missing) == {"clv"} and "no scores yet" in view.missing["clv"]
    assert view.clv == {} and set(view.versions) == set(SCORED_MODELS) - {"clv"}
    assert view.segment is not None and len(view.recommended) == 10
    silent = customer_view(store, "no-such-customer")
    assert silent.versions == {} and set(silent.missing) == set(SCORED_MODELS)
    assert "no scores for this customer" in silent.missing["segments"]


def test_cli_customer_shows_the_scores_table(fitted: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _, registry, store = fitted
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    runtime = EmbeddedRuntime(Settings())
    runtime.checkpoints.save(Checkpoint("cj", 1, train.until), train.states.values(), [], [])
    cid = _busy_customer(train)
    runner = CliRunner()
    empty = runner.invoke(app, ["customer", cid], env={"COLUMNS": "200"})
    assert empty.exit_code == 0 and "no scores yet" in empty.stdout
    engine_store = ScoreStore(connect(Settings().database_url))
    score_all(engine_store, registry, train.states, train.until)
    shown = runner.invoke(app, ["customer", cid, "--json"])
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    assert figures.pop("offers") == []  # no campaign has run
    assert figures == customer_view(store, cid).model_dump(mode="json")
    table = runner.invoke(app, ["customer", cid], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and figures["next_purchase"]["date"] in table.stdout
    assert figures["segment"] in table.stdout and figures["recommended"][0] in table.stdout
    assert "explore v0001" in table.stdout and figures["explore"][0] in table.stdout
    missing = runner.invoke(app, ["customer", "no-such-customer"])
    assert missing.exit_code == 2 and "no customer 'no-such-customer'" in missing.output
