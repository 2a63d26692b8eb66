"""Serving: the serving models' outputs written to the scores table, re-scored for changed customers, and read back.

A refit writes each model's outputs for every customer (`write_scores`). When customers' states change, the
outputs that depend on the state are re-scored for those customers alone with the serving models
(`rescore`), no refit. `customer_view` reads one customer's scores from the table — never a model — and
names the version each answer is from and the models that have none.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from engine.errors import NudgeError
from engine.models.base import Scorer
from engine.models.outputs import VOCABULARY, outputs_of
from engine.models.registry import Registry
from engine.moments import Moment
from engine.state import CustomerState
from engine.store.scores import ScoreStore

SCORED_MODELS: tuple[str, ...] = tuple(dict.fromkeys(o.model for o in VOCABULARY))


class CustomerView(BaseModel):
    """One customer's scores; `versions` names the model version each answer is from, `as_of` when it was scored."""

    customer_id: str
    as_of: Moment | None = None  # the latest time any of the customer's scores was computed at
    segment: str | None = None
    grade: str | None = None  # as of the segments model's training watermark
    clv: dict[str, float] = Field(default_factory=dict)  # expected_purchases, p_alive, spend_per_day, clv_<n>m
    next_purchase: dict[str, str] | None = None  # date, low, high (ISO dates)
    categories: list[dict[str, Any]] = Field(default_factory=list)  # category, preference, next date and range
    recommended: list[str] = Field(default_factory=list)
    explore: list[str] = Field(default_factory=list)
    recommended_categories: list[str] = Field(default_factory=list)
    cross_sell: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    missing: dict[str, str] = Field(default_factory=dict)  # model name -> why it gave nothing


def scores_of(name: str, model: Any, states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
    """Every declared output of `model` (the model called `name`) for the customers in `states` at `now`."""
    if not isinstance(model, Scorer):
        raise NudgeError(f"model {name!r} ({type(model).__name__}) declares no outputs: it has no score(states, now)")
    return model.score(states, now)


def write_scores(store: ScoreStore, name: str, version: str, model: Any, states: Mapping[str, CustomerState],
                 now: datetime) -> int:
    """Score every customer in `states` at `now` with `model` (version `version` of `name`); replace its rows."""
    return store.publish(name, version, scores_of(name, model, states, now), now)


def score_all(store: ScoreStore, registry: Registry, states: Mapping[str, CustomerState], now: datetime,
              models: Iterable[str] = SCORED_MODELS) -> dict[str, int]:
    """Re-score every customer with each serving model (no refit); rows written per model."""
    written = {}
    for name in models:
        version = registry.active_version(name).version
        written[name] = write_scores(store, name, version, registry.load(name, version), states, now)
    return written


def rescore(store: ScoreStore, registry: Registry, states: Mapping[str, CustomerState],
            customer_ids: Iterable[str], now: datetime,
            categories: Mapping[str, Collection[str]] | None = None) -> dict[str, int]:
    """Re-score the state-dependent outputs of `customer_ids` alone with the serving models; rows per model.

    Only models with scores in the table are re-scored. A model whose serving version is no longer the one its
    rows come from (activated or rolled back since) is re-scored for every customer in `states`, so the table
    never mixes two versions of one model. With `categories` (customer -> the top categories their purchases
    touched), a model that `scores_by_category` replaces only those customer × category rows.
    """
    changed = {cid: states[cid] for cid in dict.fromkeys(map(str, customer_ids)) if cid in states}
    written: dict[str, int] = {}
    for name, held in store.versions().items():
        version = registry.active_version(name).version
        model = registry.load(name, version)
        if version != held.version:
            written[name] = write_scores(store, name, version, model, states, now)
            continue
        rescored = [o.name for o in outputs_of(name) if o.rescored]
        if not rescored or not changed:
            continue
        if categories is not None and getattr(model, "scores_by_category", False):
            touched = {cid: categories.get(cid, ()) for cid in changed}
            frame = model.score(changed, now, categories=touched)
            pairs = [(cid, c) for cid, cats in touched.items() for c in cats]
            written[name] = store.replace_pairs(name, version, frame[frame["output"].isin(rescored)], now, pairs,
                                                rescored)
            continue
        frame = model.score(changed, now)
        written[name] = store.replace_customers(name, version, frame[frame["output"].isin(rescored)], now,
                                                changed, rescored)
    return written


def customer_view(store: ScoreStore, customer_id: str) -> CustomerView:
    """What the scores table says about `customer_id`, and which models have no answer and why."""
    view = CustomerView(customer_id=customer_id)
    by_category: dict[str, dict[str, Any]] = {}
    for s in store.customer(customer_id):
        view.versions[s.model] = s.version
        view.as_of = s.as_of if view.as_of is None else max(view.as_of, s.as_of)
        if s.category:
            entry = by_category.setdefault(s.category, {"category": s.category})
            if s.output == "category.preference":
                entry["preference"] = s.value
            else:
                entry.setdefault("next_purchase", {})[s.output.rsplit(".", 1)[1]] = str(s.value)
        elif s.model == "clv":
            view.clv[s.output] = s.value
        elif s.output.startswith("next_purchase."):
            view.next_purchase = {**(view.next_purchase or {}), s.output.rsplit(".", 1)[1]: str(s.value)}
        else:
            setattr(view, s.output, s.value)
    clv_order = [o.name for o in outputs_of("clv")]
    view.clv = {k: view.clv[k] for k in clv_order if k in view.clv}
    view.categories = sorted(by_category.values(), key=lambda c: (-c.get("preference", -1), c["category"]))
    scored = store.versions()
    for name in SCORED_MODELS:
        if name not in scored:
            view.missing[name] = "no scores yet: `nudge refit` writes them"
        elif name not in view.versions:
            needs = "; ".join(dict.fromkeys(o.needs for o in outputs_of(name)))
            view.missing[name] = f"no scores for this customer ({scored[name].version} scores customers with {needs})"
    return view
