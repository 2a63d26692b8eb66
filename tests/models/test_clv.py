"""CLV on real Complete Journey households: BG/NBD purchase days, P(alive), Gamma-Gamma spend, discounted CLV."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from engine.errors import ConfigError, NudgeError
from engine.models.clv import CLVModel, _fit_bgnbd, _fit_first, buy_again_auc, daily_spend, evaluate, summarize
from engine.models.data import TrainingData, collect
from engine.sources.completejourney import CompleteJourneySource
from engine.state import EPOCH

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)
VALIDATION_START = datetime(2017, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def households(cj_tables: dict) -> set[int]:
    """A few hundred real households: enough for the fitters, fast enough for a unit test."""
    ids = sorted(cj_tables["transactions"]["household_id"].unique().tolist())
    return set(ids[:400])


@pytest.fixture(scope="module")
def split(cj_tables: dict, households: set[int]) -> tuple[TrainingData, pd.DataFrame]:
    """The households folded into states before 2017-10-01, and their lines after."""
    return collect(CompleteJourneySource(households=households, tables=cj_tables), until=SPLIT)


@pytest.fixture(scope="module")
def model(split: tuple[TrainingData, pd.DataFrame]) -> CLVModel:
    return CLVModel().fit(split[0])


def _rows(frequency: list[int], recency: list[int], age: list[int], monetary: float = 30.0) -> pd.DataFrame:
    return pd.DataFrame({"frequency": frequency, "recency": recency, "T": age, "monetary": monetary}, dtype=float)


def test_expected_purchases_and_clv_rise_with_frequency_at_recency_t(model: CLVModel) -> None:
    frequency = [1, 5, 10, 20, 40, 80]
    predicted = model.predict(_rows(frequency, [200] * 6, [200] * 6))
    for column in ("expected_purchases", "clv_3m", "clv_6m", "clv_12m"):
        assert np.all(np.diff(predicted[column].to_numpy()) > 0), column
    # A longer horizon is worth more: CLV over 12 months exceeds 6 exceeds 3, for every row.
    assert (predicted["clv_12m"] > predicted["clv_6m"]).all()
    assert (predicted["clv_6m"] > predicted["clv_3m"]).all()


def test_a_customer_silent_since_long_ago_is_less_alive(model: CLVModel) -> None:
    predicted = model.predict(_rows([20, 20], [200, 60], [200, 200]))
    assert predicted["p_alive"].iloc[1] < predicted["p_alive"].iloc[0]
    assert predicted["expected_purchases"].iloc[1] < predicted["expected_purchases"].iloc[0]


def test_p_alive_is_a_probability_and_every_customer_has_a_finite_clv(model: CLVModel, split: tuple) -> None:
    train = split[0]
    customers = model.customers_
    assert set(customers.index) == {c for c, s in train.states.items() if s.days}
    assert customers["p_alive"].between(0, 1).all()
    assert np.isfinite(customers.to_numpy()).all()
    assert (customers["clv_12m"] > 0).all()


def test_one_purchase_customers_get_the_population_mean_spend_and_a_finite_clv(model: CLVModel) -> None:
    p, q, v = (model.gamma_gamma_.params_[k] for k in ("p", "q", "v"))
    predicted = model.predict(_rows([0, 0, 0], [0, 0, 0], [5, 90, 250], monetary=0.0))
    assert np.allclose(predicted["spend_per_day"], p * v / (q - 1))
    assert np.isfinite(predicted.to_numpy()).all()
    assert (predicted["clv_12m"] > 0).all()
    # Seen once, long ago: fewer expected days than seen once, yesterday.
    assert predicted["expected_purchases"].iloc[2] < predicted["expected_purchases"].iloc[0]


def test_summary_matches_the_engine_state(model: CLVModel, split: tuple) -> None:
    train = split[0]
    watermark = SPLIT.date().toordinal() - EPOCH
    for cid, row in model.summary_.iloc[:50].iterrows():
        state = train.states[cid]
        assert row["frequency"] == state.purchase_days - 1
        assert row["recency"] == state.length_days
        assert row["T"] == watermark - state.days[0]
        if state.purchase_days > 1:
            first = train.lines[(train.lines["customer_id"] == cid)
                                & (train.lines["event_time"].dt.date == state.first_day)]["amount"].sum()
            assert row["monetary"] == pytest.approx((state.spend / 100 - first) / (state.purchase_days - 1))


def test_validation_summary_equals_the_summary_of_states_folded_to_the_validation_start(
        cj_tables: dict, households: set[int], split: tuple) -> None:
    # The penalizer search summarizes at 2017-07-01 from the October states and lines; it must see what
    # the engine would have held on that day.
    train = split[0]
    cut = VALIDATION_START.date().toordinal() - EPOCH
    from_later = summarize(train.states, cut, daily_spend(train.lines, train.profiles))
    earlier, _ = collect(CompleteJourneySource(households=households, tables=cj_tables), until=VALIDATION_START)
    from_then = summarize(earlier.states, cut, daily_spend(earlier.lines, earlier.profiles))
    pd.testing.assert_frame_equal(from_later.sort_index(), from_then.sort_index(), atol=1e-6)


def test_penalizers_are_chosen_on_the_validation_window(model: CLVModel) -> None:
    assert set(model.bgnbd_validation_mae_) == set(model.penalizers)
    best = min(model.bgnbd_validation_mae_.values())
    assert model.bgnbd_validation_mae_[model.bgnbd_penalizer_] == best
    assert np.isfinite(best)
    assert model.gamma_gamma_validation_mae_[model.gamma_gamma_penalizer_] == min(
        model.gamma_gamma_validation_mae_.values())


def test_a_penalizer_that_does_not_converge_gives_way_to_the_next_best(model: CLVModel) -> None:
    assert model.metrics_["bgnbd_penalizer_validated"] == model.bgnbd_penalizer_  # converged here: no fallback
    mae = {0.0: 1.0, 0.001: 3.0, 0.01: 2.0, 0.1: float("inf")}
    tried: list[float] = []

    def fit(summary: pd.DataFrame, penalizer: float) -> object:  # the real fit, refusing the first two tried
        tried.append(penalizer)
        if len(tried) <= 2:
            raise ValueError("did not converge")
        return _fit_bgnbd(summary, penalizer)

    fitted, used = _fit_first(fit, model.summary_, 0.0, (0.0, 0.001, 0.01, 0.1), mae, "BG/NBD")
    assert tried == [0.0, 0.01, 0.001] and used == 0.001 and fitted.penalizer_coef == 0.001
    with pytest.raises(NudgeError, match="did not converge with any penalizer"):
        _fit_first(lambda summary, pen: 1 / 0, model.summary_, 0.0, (0.0, 0.1), mae, "BG/NBD")


def test_fit_is_deterministic(split: tuple, model: CLVModel) -> None:
    again = CLVModel().fit(split[0])
    pd.testing.assert_frame_equal(again.customers_, model.customers_)
    assert again.metrics_ == model.metrics_


def test_evaluate_scores_households_of_the_training_period(split: tuple) -> None:
    train, test = split
    figures = evaluate(train, test)
    assert figures["n_bgnbd_households"] == sum(1 for s in train.states.values() if s.days)
    assert figures["holdout_horizon_days"] == 93  # 2017-10-01 .. 2018-01-01, inclusive
    assert 0 < figures["bgnbd_holdout_mae"] < 20
    assert 0 < figures["bgnbd_holdout_mae_naive"] < 20
    # Who buys again after the split: BG/NBD's expected purchase days rank them far better than chance.
    assert 0.7 < figures["buy_again_auc"] <= 1
    assert all(0 <= figures[f"buy_again_auc_{b}"] <= 1 for b in ("p_alive", "naive_rate", "recency"))


def test_buy_again_auc_follows_the_ranking_not_the_scale(model: CLVModel) -> None:
    summary = _rows([5, 5, 1, 0], [200, 60, 30, 0], [250, 250, 250, 250])
    again = np.array([True, False, True, False])
    expected = np.array([4.0, 1.0, 3.0, 2.0])
    figures = buy_again_auc(model, summary, again, expected, expected * 10)
    assert figures["buy_again_auc"] == figures["buy_again_auc_naive_rate"] == 1.0
    # Recency: days since the last purchase day are 50, 190, 220, 250 — the fresher rank first.
    assert figures["buy_again_auc_recency"] == 0.75
    nobody = buy_again_auc(model, summary, np.zeros(4, dtype=bool), expected, expected)
    assert all(np.isnan(v) for v in nobody.values())


def test_bad_parameters_are_refused(split: tuple) -> None:
    with pytest.raises(ConfigError, match="penalizers"):
        CLVModel(penalizers=(-0.1,)).fit(split[0])
    with pytest.raises(ConfigError, match="months"):
        CLVModel(months=()).fit(split[0])
