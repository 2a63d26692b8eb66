"""The customer view: every serving model answers about one customer; a missing model is named, not fatal."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.config import Settings
from engine.models.data import TrainingData
from engine.models.refit import refit_all
from engine.models.registry import Registry
from engine.models.serving import customer_view
from engine.runtime.embedded import EmbeddedRuntime
from engine.store.checkpoints import Checkpoint

MODELS = {"segments", "clv", "next_purchase", "next_purchase_category", "preference", "recommend", "rules"}


@pytest.fixture(scope="module")
def fitted(cj_split: Callable, tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainingData, Registry]:
    """Every model refitted on 200 real households before 2017-10-01."""
    train, _ = cj_split(200)
    registry = Registry(tmp_path_factory.mktemp("models"))
    report = refit_all(train, registry)
    assert report.ok, [(o.name, o.reason) for o in report.outcomes if o.status != "published"]
    return train, registry


def _busy_customer(train: TrainingData) -> str:
    return max(sorted(train.states), key=lambda c: len(train.states[c].days))


def test_every_serving_model_answers_about_one_customer(fitted: tuple) -> None:
    train, registry = fitted
    cid = _busy_customer(train)
    state = train.states[cid]
    view = customer_view(registry, cid, state, train.until)
    assert view.missing == {} and set(view.versions) == MODELS
    assert view.segment in registry.active("segments").segment_names_
    assert view.grade in {"VIP", "Gold", "Silver", "Bronze", "At risk"}
    assert 0 <= view.clv["p_alive"] <= 1 and view.clv["clv_12m"] >= view.clv["clv_3m"] > 0
    low, point, high = (date.fromisoformat(view.next_purchase[k]) for k in ("low", "date", "high"))
    assert train.until.date() <= low <= point <= high
    # Categories: the customer's own, best preference first; the top ones carry a next date too.
    assert {c["category"] for c in view.categories} == set(state.categories)
    scores = [c["preference"] for c in view.categories]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 5 for s in scores)
    assert any("next_purchase" in c for c in view.categories)
    bought = {pid for pid, count in state.products.items() if count > 0}
    assert len(view.recommended) == 10 and len(view.explore) == 10
    assert not set(view.explore) & set(state.products)
    assert not set(view.cross_sell) & bought


def test_the_view_of_one_state_matches_the_models_batch_answers(fitted: tuple) -> None:
    train, registry = fitted
    cid = _busy_customer(train)
    view = customer_view(registry, cid, train.states[cid], train.until)
    batch = registry.active("next_purchase").predict(train.states, train.until).set_index("customer_id").loc[cid]
    assert view.next_purchase == {k: str(pd.Timestamp(batch[k]).date()) for k in ("date", "low", "high")}
    segments = registry.active("segments").predict(train.states, train.until)
    assert view.segment == segments[cid]
    clv = registry.active("clv").customers_.loc[cid]
    assert view.clv == {k: float(v) for k, v in clv.items()}
    assert view.recommended == registry.active("recommend").recommend(cid, 10)


def test_clv_after_the_watermark_comes_from_the_state_and_a_silent_customer_fades(fitted: tuple) -> None:
    train, registry = fitted
    cid = _busy_customer(train)
    at_fit = customer_view(registry, cid, train.states[cid], train.until).clv
    later = customer_view(registry, cid, train.states[cid], train.until + timedelta(days=60)).clv
    assert later["p_alive"] < at_fit["p_alive"] and later["clv_12m"] < at_fit["clv_12m"]
    # A second after the watermark, from the state alone: only the first day's spend is estimated (and T is one day
    # longer), so the figures land close to the fit's.
    again = customer_view(registry, cid, train.states[cid], train.until + timedelta(seconds=1)).clv
    assert again["p_alive"] == pytest.approx(at_fit["p_alive"], rel=0.01) and again != at_fit
    assert again["clv_12m"] == pytest.approx(at_fit["clv_12m"], rel=0.05)


def test_a_model_without_a_serving_version_is_named_and_the_others_still_answer(fitted: tuple,
                                                                                  tmp_path: Path) -> None:
    train, registry = fitted
    copy = tmp_path / "models"
    shutil.copytree(registry.root, copy)
    shutil.rmtree(copy / "clv")
    cid = _busy_customer(train)
    view = customer_view(Registry(copy), cid, train.states[cid], train.until)
    assert set(view.missing) == {"clv"} and "clv" in view.missing["clv"]
    assert view.clv == {} and set(view.versions) == MODELS - {"clv"}
    assert view.segment is not None and len(view.recommended) == 10


def test_cli_customer_shows_what_the_serving_models_say(fitted: tuple, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    train, registry = fitted
    monkeypatch.setenv("NUDGE_HOME", str(tmp_path / "home"))
    runtime = EmbeddedRuntime(Settings())
    runtime.checkpoints.save(Checkpoint("cj", 1, train.until), train.states.values(), [], [])
    cid = _busy_customer(train)
    runner = CliRunner()
    shown = runner.invoke(app, ["customer", cid, "--models-dir", str(registry.root), "--json"])
    assert shown.exit_code == 0, shown.output
    figures = json.loads(shown.stdout)
    assert figures == json.loads(json.dumps(dataclasses.asdict(customer_view(registry, cid, train.states[cid],
                                                                             train.until)), default=str))
    table = runner.invoke(app, ["customer", cid, "--models-dir", str(registry.root)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and figures["next_purchase"]["date"] in table.stdout
    assert figures["segment"] in table.stdout and figures["recommended"][0] in table.stdout
    assert "explore v0001" in table.stdout and figures["explore"][0] in table.stdout
    empty = runner.invoke(app, ["customer", cid, "--models-dir", str(tmp_path / "none")])
    assert empty.exit_code == 0 and "no models in" in empty.stdout
