"""Preference score 0–5: bounded, rises with frequency, share and due-ness, and its bands are monotone in re-buys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pandas as pd
import pytest

from engine.errors import ConfigError, NudgeError
from engine.models.data import TrainingData, collect
from engine.models.preference import PreferenceScore, evaluate, pair_frame
from engine.sources.completejourney import CompleteJourneySource

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def subset(cj_split: Callable) -> tuple[TrainingData, pd.DataFrame]:
    """The first 200 households by id, fitted on months 1–9."""
    return cj_split(200)


def test_scores_are_whole_numbers_from_0_to_5(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    scored = PreferenceScore().fit(subset[0]).predict(subset[0].states)
    assert set(scored["score"]) == set(range(6))
    assert len(scored) == sum(len(s.categories) for s in subset[0].states.values())


def test_more_frequent_larger_and_due_categories_score_higher(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    model = PreferenceScore().fit(subset[0])
    pairs = pd.DataFrame({"purchase_days": [1, 5, 60, 60], "share": [0.001, 0.05, 0.4, 0.4],
                          "due": [float("nan"), 3.0, 0.5, 9.0]})
    assert list(model.points(pairs)) == [*sorted(model.points(pairs)[:3]), 4]
    assert model.points(pairs).iloc[2] == 5


def test_spend_shares_of_a_customer_sum_to_one(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    pairs = pair_frame(subset[0].states, SPLIT)
    assert pairs.groupby("customer_id")["share"].sum().round(6).eq(1).all()


def test_bad_settings_and_unfitted_use_are_refused(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    with pytest.raises(ConfigError, match="quantiles"):
        PreferenceScore(quantiles=(0.7, 0.3)).fit(subset[0])
    with pytest.raises(NudgeError, match="not fitted"):
        PreferenceScore().predict(subset[0].states, SPLIT)


@pytest.mark.slow
def test_bands_are_monotone_in_rebuy_share_on_months_10_to_12() -> None:
    train, test = collect(CompleteJourneySource(), until=SPLIT)
    figures = evaluate(train, test)
    shares = [figures[f"rebuy_share_score_{band}"] for band in range(6)]
    assert shares == sorted(shares) and figures["preference_monotone"] == 1.0
    assert shares[5] - shares[0] > 0.5  # the score separates, not just orders
    assert 0.75 < figures["rebuy_auc"] < 1 and 0.5 < figures["rebuy_auc_share"] < 1
