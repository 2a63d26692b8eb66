"""What the serving models say about one customer: segment, grade, CLV, next purchase, preferences, products.

`customer_view` reads the active version of each model in a registry and asks it about one customer's state
at `now` (the engine's watermark). A model with no active version, or one that cannot answer, is reported in
`missing` with the reason; the other models still answer, so one failed refit never blanks the view.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from engine.errors import NudgeError
from engine.models.clv import summarize
from engine.models.registry import Registry
from engine.models.repurchase import day_number
from engine.state import CustomerState


@dataclass
class CustomerView:
    """One customer as the serving models see them at `as_of`; `versions` names the version each figure is from."""

    customer_id: str
    as_of: datetime
    segment: str | None = None
    grade: str | None = None  # as of the segments model's training watermark
    clv: dict[str, float] = field(default_factory=dict)  # expected_purchases, p_alive, spend_per_day, clv_<n>m
    next_purchase: dict[str, str] | None = None  # date, low, high (ISO dates)
    categories: list[dict[str, Any]] = field(default_factory=list)  # category, preference, next date and range
    recommended: list[str] = field(default_factory=list)
    explore: list[str] = field(default_factory=list)
    cross_sell: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # model name -> why it gave nothing


def customer_view(registry: Registry, customer_id: str, state: CustomerState, now: datetime,
                  n: int = 10) -> CustomerView:
    """Ask every serving model about `customer_id` (whose state is `state`) at `now`."""
    view = CustomerView(customer_id, now)
    states = {customer_id: state}
    by_category: dict[str, dict[str, Any]] = {name: {"category": name} for name in sorted(state.categories)}

    def segments(model: Any) -> None:
        view.segment = str(model.predict(states, now).get(customer_id)) if state.days else None
        grade = model.grades_.get(customer_id) if hasattr(model, "grades_") else None
        view.grade = None if grade is None else str(grade)

    def clv(model: Any) -> None:
        # Every purchase day up to `now` counts: the day after now's date, or now's date when now is midnight.
        midnight = now.hour == now.minute == now.second == now.microsecond == 0
        end = day_number(now) + (0 if midnight else 1)
        if end == model.watermark_day_ and customer_id in model.customers_.index:
            row = model.customers_.loc[customer_id]  # what the model computed from the lines at its watermark
        else:
            # Later, the state alone: it does not keep the first day's spend (left out of Gamma-Gamma's
            # monetary), so that day is taken at the customer's mean spend per purchase day.
            days = state.purchase_days
            if not days:
                raise NudgeError("no purchase day before now")
            first_day = pd.MultiIndex.from_tuples([(customer_id, state.days[0])])
            first = pd.Series([state.spend / 100 / days], index=first_day)
            row = model.predict(summarize(states, end, first)).iloc[0]
        view.clv = {str(k): float(v) for k, v in row.items()}

    def next_purchase(model: Any) -> None:
        rows = model.predict(states, now)
        if rows.empty:
            raise NudgeError(f"fewer than {model.min_days} purchase days before now")
        view.next_purchase = _dates(rows.iloc[0])

    def next_purchase_category(model: Any) -> None:
        for row in model.predict(states, now).itertuples(index=False):
            by_category.setdefault(row.category, {"category": row.category})["next_purchase"] = _dates(row._asdict())

    def preference(model: Any) -> None:
        for row in model.predict(states, now).itertuples(index=False):
            by_category.setdefault(row.category, {"category": row.category})["preference"] = int(row.score)

    def recommend(model: Any) -> None:
        view.recommended = model.recommend(customer_id, n)
        view.explore = model.explore(customer_id, n)

    def rules(model: Any) -> None:
        bought = [pid for pid, count in state.products.items() if count > 0]
        view.cross_sell = model.cross_sell(bought, n)

    asks: dict[str, Callable[[Any], None]] = {
        "segments": segments, "clv": clv, "next_purchase": next_purchase,
        "next_purchase_category": next_purchase_category, "preference": preference, "recommend": recommend,
        "rules": rules,
    }
    for name, ask in asks.items():
        try:
            version = registry.active_version(name).version
            ask(registry.load(name, version))
        except Exception as exc:  # one model failing leaves the others' answers standing
            view.missing[name] = f"{type(exc).__name__}: {exc}"
            continue
        view.versions[name] = version
    view.categories = sorted(by_category.values(), key=lambda c: (-c.get("preference", -1), c["category"]))
    return view


def _dates(row: pd.Series | dict[str, Any]) -> dict[str, str]:
    return {key: str(pd.Timestamp(row[key]).date()) for key in ("date", "low", "high")}
