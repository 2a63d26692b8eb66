"""Next-purchase dates: real households, dates with a range, deterministic, better than the mean gap."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from engine.errors import ConfigError, NudgeError
from engine.models.data import TrainingData, collect
from engine.models.repurchase import NextPurchase, evaluate_level
from engine.sources.completejourney import CompleteJourneySource

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def subset(cj_tables: dict) -> tuple[TrainingData, pd.DataFrame]:
    """The first 250 households by id, split at 2017-10-01."""
    households = set(sorted(cj_tables["transactions"]["household_id"].unique())[:250])
    return collect(CompleteJourneySource(households=households, tables=cj_tables), until=SPLIT)


def test_predictions_are_dates_inside_their_range(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    model = NextPurchase(n_cuts=6).fit(train)
    pred = model.predict(train.states)
    eligible = [cid for cid, s in train.states.items() if s.purchase_days >= 2]
    assert sorted(pred["customer_id"]) == sorted(eligible)
    start = np.datetime64(SPLIT.date(), "D")
    assert (pred["low"] >= start).all()
    assert (pred["low"] <= pred["date"]).all() and (pred["date"] <= pred["high"]).all()
    assert (pred["high"] > pred["low"]).mean() > 0.9  # a range, not a point
    assert ((pred["date"] - start) // np.timedelta64(1, "D") == pred["days"]).all()


def test_category_level_predicts_per_customer_and_category(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    pred = NextPurchase(level="category", n_cuts=4).fit(train).predict(train.states)
    some = pred.iloc[0]
    assert train.states[some["customer_id"]].categories[some["category"]].purchase_days >= 2
    assert (pred["low"] <= pred["date"]).all() and (pred["date"] <= pred["high"]).all()
    assert pred.groupby("customer_id")["category"].nunique().max() > 3


def test_fit_is_deterministic(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    first = NextPurchase(n_cuts=6).fit(train).predict(train.states)
    second = NextPurchase(n_cuts=6).fit(train).predict(train.states)
    pd.testing.assert_frame_equal(first, second)


def test_training_labels_are_days_to_the_next_purchase_day(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    table = NextPurchase(n_cuts=3).training_rows(train)
    customers = table.index.to_numpy()
    for key, cut, label in zip(customers[:50], table["cut"][:50], table["label"][:50], strict=True):
        days = np.asarray(train.states[sorted(train.states)[key]].days)
        assert days[days >= cut][0] - cut == label
        assert (days < cut).sum() >= 2


def test_bad_settings_and_unfitted_use_are_refused(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    with pytest.raises(ConfigError, match="level 'basket'"):
        NextPurchase(level="basket").fit(train)
    with pytest.raises(ConfigError, match="quantiles"):
        NextPurchase(quantiles=(0.6, 0.9)).fit(train)
    with pytest.raises(NudgeError, match="not fitted"):
        NextPurchase().predict(train.states, SPLIT)


@pytest.mark.slow
def test_model_beats_the_mean_gap_baseline_on_the_split() -> None:
    train, test = collect(CompleteJourneySource(), until=SPLIT)
    figures = evaluate_level(train, test, "customer")
    assert figures["n_next_purchase"] == 2285
    assert figures["next_purchase_mae"] < figures["next_purchase_mae_mean_gap"]
    assert figures["next_purchase_mae"] < figures["next_purchase_mae_best_constant"]
    assert 0.7 < figures["next_purchase_interval_coverage"] < 0.95
