"""The scores vocabulary: every model output by name, the names campaign rules, the due sweep and the API use.

Each output is one value per customer (level "customer") or per customer × top category (level "category").
`rescored` outputs depend on the customer's state at the time asked, so a changed customer is re-scored with
the serving model alone; the others are fixed when the model is fitted and change only with a refit.
`needs` says which customers have no value, and why: the scores table holds no row for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from engine.errors import NudgeError

TYPES = ("str", "float", "int", "date", "list[str]")
NUMERIC = frozenset({"float", "int"})
LEVELS = ("customer", "category")


@dataclass(frozen=True)
class Output:
    """One named model output: its value type, level, the model that makes it and what it means."""

    name: str
    type: str
    level: str
    model: str
    meaning: str
    rescored: bool  # depends on the state at the time asked (True), or fixed when the model was fitted
    needs: str = "a purchase day"  # who has a value: customers without it have no row

    def encode(self, value: Any) -> tuple[float | None, str | None]:
        """(number, text) as the scores table stores the value."""
        if self.type in NUMERIC:
            return float(value), None
        if self.type == "list[str]":
            return None, json.dumps([str(v) for v in value])
        if self.type == "date":
            return None, str(value)[:10]
        return None, str(value)

    def decode(self, number: float | None, text: str | None) -> Any:
        """The value back from the table's (number, text)."""
        if self.type == "int":
            return int(number)  # type: ignore[arg-type]
        if self.type == "float":
            return float(number)  # type: ignore[arg-type]
        if self.type == "list[str]":
            return json.loads(text or "[]")
        if self.type == "date":
            return date.fromisoformat(text or "")
        return text


def _out(name: str, type_: str, model: str, meaning: str, rescored: bool, level: str = "customer",
         needs: str = "a purchase day") -> Output:
    return Output(name, type_, level, model, meaning, rescored, needs)


_NEXT = "next_purchase"
_NEXT_CATEGORY = "next_purchase_category"
_FIT = "a purchase day before the model's training watermark"

VOCABULARY: tuple[Output, ...] = (
    _out("segment", "str", "segments", "LRFMV segment name (e.g. 'loyal'); kept across refits for a matched "
         "segment", True),
    _out("grade", "str", "segments", "VIP / Gold / Silver / Bronze / At risk, from quintiles of R, F, M, tenure "
         "and clv_12m at the training watermark", False, needs=_FIT),
    _out("expected_purchases", "float", "clv", "BG/NBD expected purchase days in the next horizon_days (90)", True),
    _out("p_alive", "float", "clv", "BG/NBD probability the customer is still buying (0..1)", True),
    _out("spend_per_day", "float", "clv", "Gamma-Gamma expected spend per purchase day", True),
    _out("clv_3m", "float", "clv", "discounted expected spend over the next 3 months", True),
    _out("clv_6m", "float", "clv", "discounted expected spend over the next 6 months", True),
    _out("clv_12m", "float", "clv", "discounted expected spend over the next 12 months", True),
    _out("next_purchase.date", "date", _NEXT, "expected date of the next purchase", True,
         needs="min_days (2) purchase days"),
    _out("next_purchase.low", "date", _NEXT, "earliest likely date of the next purchase (lower quantile)", True,
         needs="min_days (2) purchase days"),
    _out("next_purchase.high", "date", _NEXT, "latest likely date of the next purchase (upper quantile)", True,
         needs="min_days (2) purchase days"),
    _out("category.preference", "int", "preference", "0..5 preference for the top category (frequency, spend "
         "share, due-ness)", True, "category", "a purchase day in the category"),
    _out("category.next_purchase.date", "date", _NEXT_CATEGORY, "expected date of the next purchase in the "
         "category", True, "category", "min_days (2) purchase days in the category"),
    _out("category.next_purchase.low", "date", _NEXT_CATEGORY, "earliest likely date of the next purchase in "
         "the category", True, "category", "min_days (2) purchase days in the category"),
    _out("category.next_purchase.high", "date", _NEXT_CATEGORY, "latest likely date of the next purchase in "
         "the category", True, "category", "min_days (2) purchase days in the category"),
    _out("recommended", "list[str]", "recommend", "top 10 products to show (ranked at the training watermark)",
         False, needs="a state (customers unseen at fit get the popular products)"),
    _out("explore", "list[str]", "recommend", "top 10 products the customer never bought", False,
         needs="a state (customers unseen at fit get the popular products)"),
    _out("recommended_categories", "list[str]", "recommend_category", "top 10 categories to show", False,
         needs="a state (customers unseen at fit get the popular categories)"),
    _out("cross_sell", "list[str]", "rules", "up to 10 products association rules suggest for the products the "
         "customer holds (empty when no rule fires)", True, needs="a state"),
)

BY_NAME: dict[str, Output] = {o.name: o for o in VOCABULARY}


def outputs_of(model: str) -> tuple[Output, ...]:
    """The outputs `model` declares, in vocabulary order."""
    found = tuple(o for o in VOCABULARY if o.model == model)
    if not found:
        raise NudgeError(f"no outputs for model {model!r} in the vocabulary "
                         f"(models: {sorted({o.model for o in VOCABULARY})})")
    return found


def output(name: str) -> Output:
    """The output called `name`."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise NudgeError(f"no output {name!r} in the scores vocabulary (outputs: {sorted(BY_NAME)})") from None
