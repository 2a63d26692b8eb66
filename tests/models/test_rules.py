"""Association rules on real baskets: the figures match the baskets, and cross-sell suggests what is not held."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest

from engine.errors import ConfigError, NudgeError
from engine.models.data import TrainingData, bought_mask
from engine.models.rules import AssociationRules, basket_matrix, evaluate_level

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def subset(cj_split: Callable) -> tuple[TrainingData, pd.DataFrame]:
    """The first 300 households by id, split at 2017-10-01."""
    return cj_split(300)


def bought(lines: pd.DataFrame) -> pd.DataFrame:
    """Lines that buy something: baskets of only zero-quantity, zero-amount lines are not baskets."""
    return lines[bought_mask(lines)]


@pytest.fixture(scope="module")
def product_rules(subset: tuple[TrainingData, pd.DataFrame]) -> AssociationRules:
    return AssociationRules(top_n=300, min_support=0.003, min_confidence=0.1).fit(subset[0])


def test_rule_figures_match_the_baskets(subset: tuple[TrainingData, pd.DataFrame],
                                        product_rules: AssociationRules) -> None:
    rules = product_rules.rules_
    assert len(rules) > 5
    assert (rules["confidence"] >= 0.1).all() and (rules["lift"] >= 1.2).all()
    assert rules["confidence"].is_monotonic_decreasing
    lines = bought(subset[0].lines)
    baskets = lines.groupby("event_id", observed=True)["product_id"].agg(lambda p: set(map(str, p)))
    top = rules.iloc[0]
    with_a = baskets[baskets.map(lambda b: top["antecedents"] <= b)]
    both = with_a.map(lambda b: top["consequents"] <= b).sum()
    assert top["support"] == pytest.approx(both / len(baskets))
    assert top["confidence"] == pytest.approx(both / len(with_a))


def test_cross_sell_suggests_consequents_the_customer_lacks(product_rules: AssociationRules) -> None:
    rule = product_rules.rules_.iloc[0]
    held = set(rule["antecedents"])
    suggested = product_rules.cross_sell(held, n=3)
    assert suggested and len(suggested) <= 3
    assert not held & set(suggested)
    assert set(rule["consequents"]) <= set(suggested) or len(suggested) == 3
    fired = product_rules.rules_for(held)
    assert all(a <= held for a in fired["antecedents"])
    assert product_rules.cross_sell({"no-such-product"}, n=3) == []


def test_category_rules_beat_the_base_rate_on_later_baskets(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    figures = evaluate_level(*subset, "category", AssociationRules(level="category", top_n=40, min_support=0.01,
                                                                  min_confidence=0.3))
    assert figures["rules_category_n_rules"] > 0
    assert figures["n_rules_category_test_baskets"] == bought(subset[1])["event_id"].nunique()
    assert figures["rules_category_hit_rate"] > figures["rules_category_hit_rate_base"]


def test_basket_matrix_holds_each_basket_once(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    matrix, items = basket_matrix(subset[0].lines, "category")
    assert matrix.shape == (bought(subset[0].lines)["event_id"].nunique(), len(items))
    assert matrix.max() == 1


def test_bad_settings_and_unfitted_use_are_refused(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    with pytest.raises(ConfigError, match="level 'aisle'"):
        AssociationRules(level="aisle").fit(subset[0])
    with pytest.raises(ConfigError, match="min_support"):
        AssociationRules(min_support=0).fit(subset[0])
    with pytest.raises(NudgeError, match="not fitted"):
        AssociationRules().rules_for({"1"})
