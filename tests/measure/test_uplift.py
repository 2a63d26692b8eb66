"""The uplift estimator: Newcombe's hybrid score interval, "not measurable", and its coverage on real baselines."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import NudgeError
from engine.measure.uplift import newcombe, uplift, wilson


def test_the_interval_of_the_issue_check() -> None:
    low, high = newcombe(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    result = uplift(70, 56, 80, 48)
    assert result.measurable and result.difference == pytest.approx(0.2) and not result.contains_zero


def test_an_empty_or_tiny_holdout_is_not_measurable() -> None:
    empty = uplift(500, 40, 0, 0)
    assert not empty.measurable and empty.not_measurable == "no held-out customers" and empty.low is None
    tiny = uplift(500, 40, 3, 1)
    assert not tiny.measurable and "3 held-out customer(s)" in tiny.not_measurable
    assert tiny.contains_zero is None
    with pytest.raises(NudgeError, match="treated: 9 converted of 5"):
        uplift(5, 9, 50, 1)


@given(x1=st.integers(0, 200), extra1=st.integers(0, 200), x2=st.integers(0, 200), extra2=st.integers(0, 200))
def test_the_interval_holds_the_difference_and_stays_within_minus_one_and_one(x1, extra1, x2, extra2) -> None:
    n1, n2 = x1 + extra1, x2 + extra2
    if n1 == 0 or n2 == 0:
        return
    low, high = newcombe(x1, n1, x2, n2)
    assert -1 - 1e-12 <= low <= x1 / n1 - x2 / n2 <= high <= 1 + 1e-12
    wl, wh = wilson(x1, n1)
    assert 0 <= wl <= x1 / n1 <= wh <= 1


def test_the_95_interval_covers_an_injected_effect_in_93_to_97_percent_of_1000_draws(cj_tables) -> None:
    # Real baseline outcomes: did each Complete Journey household buy in the 14 days from 2017-10-01?
    tx = cj_tables["transactions"]
    when = pd.to_datetime(tx["transaction_timestamp"])
    start = datetime(2017, 10, 1)
    active = set(tx.loc[when < start, "household_id"])
    bought = set(tx.loc[(when >= start) & (when < start + pd.Timedelta(days=14)), "household_id"])
    outcomes = np.array([h in bought for h in sorted(active)], dtype=bool)
    p0 = outcomes.mean()
    assert 0.3 < p0 < 0.95  # a real, non-degenerate baseline
    lift = 0.25  # each treated non-converter converts with this probability: the injected effect
    truth = lift * (1 - p0)
    rng = np.random.default_rng(20171001)
    n1, n2, draws, covered = 400, 80, 1000, 0
    for _ in range(draws):
        treated = rng.choice(outcomes, n1)
        treated = treated | (~treated & (rng.random(n1) < lift))
        held = rng.choice(outcomes, n2)
        low, high = newcombe(int(treated.sum()), n1, int(held.sum()), n2)
        covered += low <= truth <= high
    assert 0.93 <= covered / draws <= 0.97, covered / draws
