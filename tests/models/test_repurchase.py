"""Next-purchase dates: real households, dates with a range, deterministic, better than the mean gap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from engine.clock import day_number
from engine.errors import ConfigError, NudgeError
from engine.models.catalogue import BY_NAME
from engine.models.data import TrainingData, collect
from engine.models.repurchase import CATEGORY_LEFT_OUT, NextPurchase, NextPurchaseCategory, evaluate
from engine.sources.completejourney import CompleteJourneySource

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def subset(cj_split: Callable) -> tuple[TrainingData, pd.DataFrame]:
    """The first 250 households by id, split at 2017-10-01."""
    return cj_split(250)


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
    with pytest.raises(ConfigError, match="point_scale 3"):
        NextPurchase(point_scale=3).fit(train)
    with pytest.raises(ConfigError, match=r"hazard_weight 1\.5"):
        NextPurchase(hazard_weight=1.5).fit(train)
    with pytest.raises(ConfigError, match="hazard_rows"):
        NextPurchase(hazard_rows=0).fit(train)
    for share in (0, 1.5):
        with pytest.raises(ConfigError, match="hazard_negatives"):
            NextPurchase(hazard_negatives=share).fit(train)


def test_point_scale_stretches_the_median_days(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    plain = NextPurchase(n_cuts=6, point_scale=1.0, hazard_weight=0).fit(train).predict(train.states)
    scaled = NextPurchase(n_cuts=6, point_scale=1.5, hazard_weight=0).fit(train).predict(train.states)
    # Same trees (the scale touches only the point), so each key's days grow by about half, ranges untouched.
    assert (scaled["days"] >= plain["days"]).all()
    far = plain["days"] >= 8  # short enough that rounding keeps the ratio within 1.5 ± 0.16
    assert far.sum() >= 3
    ratio = scaled["days"][far] / plain["days"][far]
    assert ratio.between(1.3, 1.7).all()
    assert (scaled[["low", "high"]] == plain[["low", "high"]]).all().all()
    assert (scaled["low"] <= scaled["date"]).all() and (scaled["date"] <= scaled["high"]).all()


def test_hazard_median_blends_into_the_point_and_leaves_the_range(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    fits = {w: NextPurchase(n_cuts=12, hazard_weight=w).fit(train) for w in (0.0, 0.5, 1.0)}
    pred = {w: m.predict(train.states) for w, m in fits.items()}
    assert fits[0.0].hazard_ is None and fits[1.0].hazard_ is not None
    # Same quantile regressors whatever the weight: a range moves only to take in a point outside it.
    for w in (0.5, 1.0):
        assert (pred[w]["low"] <= pred[w]["date"]).all() and (pred[w]["date"] <= pred[w]["high"]).all()
        low, date, high = pred[0.0]["low"], pred[0.0]["date"], pred[0.0]["high"]
        inside = pred[w]["date"].between(low, high) & (low < date) & (date < high)
        assert inside.mean() > 0.5
        assert (pred[w][["low", "high"]][inside] == pred[0.0][["low", "high"]][inside]).all().all()
    hazard, regressor = pred[1.0]["days"], pred[0.0]["days"]
    assert (hazard < fits[1.0].horizon_days).all() and (hazard != regressor).any()
    lo, hi = np.minimum(hazard, regressor), np.maximum(hazard, regressor)
    assert pred[0.5]["days"].between(lo - 1, hi + 1).all()


def test_hazard_fitted_on_a_share_of_the_no_purchase_days_keeps_its_rate(
        subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    fits = {share: NextPurchaseCategory(n_cuts=12, hazard_negatives=share).fit(train) for share in (1.0, 0.1)}
    _, stats = fits[1.0].snapshot(train.states, SPLIT)
    curves = {share: m._hazard_curve(stats) for share, m in fits.items()}
    # The odds are scaled back: without that, a tenth of the no-purchase days would make buying look ~10x likelier.
    for curve in curves.values():
        assert (np.diff(curve, axis=1) >= 0).all() and ((curve >= 0) & (curve <= 1)).all()
    by_day = {share: curve.mean(axis=0) for share, curve in curves.items()}
    assert np.abs(by_day[0.1] - by_day[1.0]).max() < 0.05
    assert np.abs(np.median(curves[0.1], axis=0) - np.median(curves[1.0], axis=0))[[6, 13, 27, 55]].max() < 0.08
    pred = fits[0.1].predict(train.states, SPLIT)
    assert (pred["low"] <= pred["date"]).all() and (pred["date"] <= pred["high"]).all()


def test_training_rows_keep_long_gaps_inside_the_censoring_window(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    model = NextPurchase(n_cuts=40)
    table = model.training_rows(train)
    until = day_number(SPLIT)
    assert table["cut"].max() <= until - model.min_window_days
    # A row is kept only when its next purchase is seen before the watermark and inside the horizon.
    assert (table["window"] == np.minimum(model.horizon_days, until - table["cut"])).all()
    assert (table["label"] < table["window"]).all() and (table["cut"] + table["label"] < until).all()
    assert (table["label"] >= 60).any()  # long gaps are kept, not cut at a short horizon
    assert (table["window"] == model.horizon_days).any() and table["cut"].nunique() > 20
    assert table["cut_weekday"].nunique() == 7


def test_snapshot_features_are_what_the_state_knew_at_the_cut(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    model = NextPurchase()
    when = datetime(2017, 6, 14, tzinfo=UTC)  # a Wednesday
    cut = day_number(when)
    keys, stats = model.snapshot(train.states, when)
    checked = 0
    for cid, (_, row) in zip(keys["customer_id"][:40], stats.iloc[:40].iterrows(), strict=True):
        days = np.asarray(train.states[cid].days)
        days = days[days < cut]
        gaps = pd.Series(np.diff(days), dtype=float)
        assert row["n"] == len(days) and row["recency"] == cut - days[-1]
        assert row["gap_mean"] == pytest.approx(gaps.mean()) and row["gap_last"] == gaps.iloc[-1]
        if len(gaps) >= 2:
            assert row["gap_var"] == pytest.approx(gaps.var())
        assert row["gap_ewm"] == pytest.approx(gaps.ewm(alpha=model.ewm_alpha, adjust=False).mean().iloc[-1])
        assert row["n28"] == (days >= cut - 28).sum()
        assert row["share_d0"] == pytest.approx(np.mean((days + 3) % 7 == 2))  # Wednesday is weekday 2
        checked += 1
    assert checked == 40


def test_category_features_count_the_customers_trips(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    when = datetime(2017, 6, 14, tzinfo=UTC)
    cut = day_number(when)
    keys, stats = NextPurchaseCategory().snapshot(train.states, when)
    for i in range(0, len(stats), max(1, len(stats) // 30)):
        cid, top = keys.iloc[i]
        trips = np.asarray(train.states[cid].days)
        bought = np.asarray(train.states[cid].categories[top].days)
        last = bought[bought < cut][-1]
        assert stats["trips_since"].iloc[i] == ((trips > last) & (trips < cut)).sum()
        assert stats["share_days"].iloc[i] == pytest.approx((bought < cut).sum() / (trips < cut).sum())


def test_category_model_leaves_out_history_length(subset: tuple[TrainingData, pd.DataFrame]) -> None:
    train, _ = subset
    model = NextPurchaseCategory(n_cuts=4).fit(train)
    assert not set(CATEGORY_LEFT_OUT) & set(model.columns_)
    assert {"gap_mean", "c_gap_ewm", "share_days", "window"} <= set(model.columns_)
    assert set(CATEGORY_LEFT_OUT) <= set(model.training_rows(train).columns)  # the plain GB baseline reads n
    assert {"n", "tenure"} <= set(NextPurchase(n_cuts=4).fit(train).columns_)  # customer level keeps them


def test_both_levels_are_models_with_their_own_names() -> None:
    assert BY_NAME["next_purchase"].factory is NextPurchase
    assert BY_NAME["next_purchase_category"].factory is NextPurchaseCategory
    assert NextPurchaseCategory().level == "category" and NextPurchaseCategory().get_params()["level"] == "category"


@pytest.fixture(scope="module")
def split_figures() -> dict[str, float]:
    """evaluate() on the full 2017-10-01 split."""
    train, test = collect(CompleteJourneySource(), until=SPLIT)
    return evaluate(train, test)


@pytest.mark.slow
def test_model_beats_its_baselines_on_the_split(split_figures: dict[str, float]) -> None:
    figures = split_figures
    assert figures["n_next_purchase"] == 2285
    for level in ("next_purchase", "next_purchase_category"):
        assert figures[f"{level}_mae"] < figures[f"{level}_mae_mean_gap"]
        assert figures[f"{level}_mae"] < figures[f"{level}_mae_best_constant"]
        assert figures[f"{level}_mae"] < figures[f"{level}_mae_plain_gb"]
        assert 0.7 < figures[f"{level}_interval_coverage"] < 0.95
    assert figures["next_purchase_mae"] < 8.25  # the unscaled model this one replaced
