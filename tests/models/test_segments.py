"""Segments and grades on real Complete Journey households: k by silhouette, names kept across a monthly refit."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from engine.errors import ConfigError
from engine.models.data import TrainingData, collect
from engine.models.segments import ACTIVE, GRADES, LAPSED, PROTOTYPES, SegmentModel, evaluate, grades, name_segments
from engine.sources.completejourney import CompleteJourneySource

NOVEMBER = datetime(2017, 11, 1, tzinfo=UTC)
DECEMBER = datetime(2017, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def source(cj_tables: dict) -> CompleteJourneySource:
    """Four hundred real households (every fifth by id, so not only the oldest ids)."""
    ids = sorted(cj_tables["transactions"]["household_id"].unique().tolist())
    return CompleteJourneySource(households=set(ids[::5][:400]), tables=cj_tables)


@pytest.fixture(scope="module")
def november(source: CompleteJourneySource) -> tuple[TrainingData, pd.DataFrame]:
    return collect(source, until=NOVEMBER)


@pytest.fixture(scope="module")
def december(source: CompleteJourneySource) -> TrainingData:
    return collect(source, until=DECEMBER)[0]


@pytest.mark.parametrize("method", ["kmeans", "kmedoids"])
def test_segments_keep_their_names_when_refitted_a_month_later(
        method: str, november: tuple, december: TrainingData) -> None:
    first = SegmentModel(method=method).fit(november[0])
    refit = SegmentModel(method=method).fit(december, previous=first)
    assert refit.k_ == first.k_
    assert set(refit.segment_names_) == set(first.segment_names_)
    assert dict(zip(refit.segment_names_, refit.segment_ids_, strict=True)) == dict(
        zip(first.segment_names_, first.segment_ids_, strict=True))
    common = first.labels_.index.intersection(refit.labels_.index)
    kept = (first.labels_[common] == refit.labels_[common]).mean()
    assert kept >= 0.8, f"only {kept:.0%} of customers kept their segment"


def test_k_is_chosen_by_silhouette_and_names_are_unique(november: tuple) -> None:
    model = SegmentModel().fit(november[0])
    assert 2 <= model.k_ <= 8
    assert set(model.silhouettes_) == set(range(2, 9))
    assert model.silhouettes_[model.k_] == max(model.silhouettes_.values())
    assert len(set(model.segment_names_)) == model.k_
    assert set(model.segment_names_) <= set(PROTOTYPES)
    assert model.labels_.value_counts().min() > 0
    assert model.metrics_["n_customers"] == sum(1 for s in november[0].states.values() if s.days)


def test_names_follow_the_centroid_profile() -> None:
    # (recency, frequency, monetary, tenure) z-scores: recent big spenders vs long-silent small ones.
    names = name_segments(np.array([[-0.6, 1.2, 1.1, 0.5], [1.2, -1.0, -1.1, -0.4], [0.0, 0.1, -0.1, 0.0]]))
    assert names == ["loyal", "low-value lapsing", "regular"]
    # A name already held by a matched segment is not handed out again.
    assert name_segments(np.array([[-0.6, 1.2, 1.1, 0.5]]), taken={"loyal"}) != ["loyal"]


@pytest.mark.parametrize("k", [3, 4, 6, 8])
def test_lapsed_segments_have_been_silent_longer_than_the_active_ones(k: int, november: tuple) -> None:
    model = SegmentModel(k=k).fit(november[0])
    recency = model.features_["recency"].groupby(model.labels_).median()
    lapsed = [n for n in recency.index if n in LAPSED]
    active = [n for n in recency.index if n in ACTIVE]
    assert lapsed and active, model.segment_names_
    assert recency[lapsed].min() > recency[active].max()


def test_grades_cover_all_buyers_and_order_them(november: tuple) -> None:
    model = SegmentModel().fit(november[0])
    buyers = {c for c, s in november[0].states.items() if s.days}
    assert set(model.grades_.index) == buyers
    assert set(model.grades_.unique()) == set(GRADES)
    spend = model.features_["monetary"].groupby(model.grades_).median()
    assert spend["VIP"] > spend["Gold"] > spend["Silver"] > spend["Bronze"]
    silent = model.features_["recency"].groupby(model.grades_).median()
    assert silent["At risk"] == silent.max()


def test_grades_take_clv_into_account(november: tuple) -> None:
    frame = SegmentModel().fit(november[0]).features_
    plain = grades(frame)
    # A CLV that reverses spend should move some customers out of VIP.
    with_clv = grades(frame, clv=-frame["monetary"])
    assert (with_clv == "VIP").sum() < (plain == "VIP").sum()
    assert with_clv.index.equals(plain.index)


def test_fit_is_deterministic(november: tuple) -> None:
    a = SegmentModel(method="kmedoids").fit(november[0])
    b = SegmentModel(method="kmedoids").fit(november[0])
    pd.testing.assert_series_equal(a.labels_, b.labels_)
    assert a.metrics_ == b.metrics_
    c, d = SegmentModel().fit(november[0]), SegmentModel().fit(november[0])
    pd.testing.assert_series_equal(c.labels_, d.labels_)
    np.testing.assert_array_equal(c.centroids_log_, d.centroids_log_)


def test_predict_puts_training_customers_in_their_segment(november: tuple) -> None:
    model = SegmentModel().fit(november[0])
    predicted = model.predict(november[0].states, NOVEMBER)
    assert (predicted == model.labels_).mean() > 0.99


def test_evaluate_reports_sizes_and_rebuy_shares(november: tuple) -> None:
    train, test = november
    figures = evaluate(train, test)
    n = figures["n_segment_customers"]
    sizes = sum(v for k, v in figures.items() if k.startswith("segment_size_"))
    assert sizes == n
    assert sum(v for k, v in figures.items() if k.startswith("grade_size_")) == n
    assert all(0 <= v <= 1 for k, v in figures.items() if "rebuy_share" in k)
    # Customers graded "At risk" come back less often than VIPs.
    assert figures["grade_rebuy_share_at_risk"] < figures["grade_rebuy_share_vip"]


def test_bad_parameters_are_refused(november: tuple) -> None:
    with pytest.raises(ConfigError, match="method"):
        SegmentModel(method="dbscan").fit(november[0])
    with pytest.raises(ConfigError, match="k_range"):
        SegmentModel(k_range=(1, 8)).fit(november[0])
