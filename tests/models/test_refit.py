"""The refit job fits every model once per run; one failing or poor model keeps its last good version serving."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.db import connect
from engine.errors import ConfigError, NudgeError
from engine.models.catalogue import CATALOGUE
from engine.models.data import TrainingData, collect
from engine.models.evaluation import evaluate_all, group_baselines
from engine.models.guards import GUARDS
from engine.models.refit import refit_all
from engine.models.registry import Registry
from engine.models.segments import SegmentModel
from engine.sources.completejourney import CompleteJourneySource
from engine.store.scores import ScoreStore

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


class ProductCounts:
    """Line counts per product before the watermark: the popularity a recommender starts from."""

    name: ClassVar[str] = "product_counts"

    def __init__(self, top: int = 10) -> None:
        self.top = top

    def fit(self, data: TrainingData) -> Self:
        """Count lines per product."""
        self.counts_ = data.lines["product_id"].astype(str).value_counts()
        self.metrics_ = {"share_top": float(self.counts_.iloc[: self.top].sum() / self.counts_.sum())}
        return self

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {"top": self.top}


class CategorySpend:
    """Each customer's spend share per top category, from the engine's states."""

    name: ClassVar[str] = "category_spend"

    def __init__(self, min_baskets: int = 1) -> None:
        self.min_baskets = min_baskets

    def fit(self, data: TrainingData) -> Self:
        """Share of spend per customer and category."""
        self.shares_ = {
            cid: {cat: c.spend / max(1e-9, sum(x.spend for x in s.categories.values()))
                  for cat, c in s.categories.items()}
            for cid, s in data.states.items() if s.baskets >= self.min_baskets}
        self.metrics_ = {"n_customers": float(len(self.shares_))}
        return self

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {"min_baskets": self.min_baskets}


@pytest.fixture(scope="module")
def split(cj_tables: dict, cj_households: set[int]) -> tuple[TrainingData, pd.DataFrame]:
    """A dozen real households on the evaluation split."""
    return collect(CompleteJourneySource(households=cj_households, tables=cj_tables), until=SPLIT)


def test_refit_publishes_every_model_with_its_fit_time(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    registry = Registry(tmp_path)
    report = refit_all(train, registry, models=[ProductCounts, CategorySpend])
    assert report.ok and report.customers == len(train.states) == 12 and report.lines == len(train.lines)
    assert [(o.name, o.status, o.version, o.serving) for o in report.outcomes] == [
        ("product_counts", "published", "v0001", "v0001"), ("category_spend", "published", "v0001", "v0001")]
    assert all(o.fit_seconds is not None and 0 <= o.fit_seconds < report.total_seconds for o in report.outcomes)
    assert registry.active("category_spend").metrics_ == {"n_customers": 12.0}
    assert registry.active_version("product_counts").fit_seconds == pytest.approx(report.outcomes[0].fit_seconds)


def test_refit_on_corrupted_lines_keeps_the_last_good_version(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    registry = Registry(tmp_path)
    assert refit_all(train, registry, models=[ProductCounts, CategorySpend]).ok
    good = registry.active("product_counts").counts_
    # The lines lost their product column (a broken export); the states are still whole.
    corrupted = TrainingData(train.states, train.lines.drop(columns=["product_id"]), train.until, train.profiles)
    report = refit_all(corrupted, registry, models=[ProductCounts, CategorySpend])
    outcome = {o.name: o for o in report.outcomes}
    assert not report.ok
    assert outcome["product_counts"].status == "failed" and "product_id" in outcome["product_counts"].reason
    assert outcome["product_counts"].serving == "v0001"
    # One failure does not stop the others.
    assert outcome["category_spend"].status == "published" and outcome["category_spend"].version == "v0002"
    assert registry.active("product_counts").counts_.equals(good)
    failed = [h for h in registry.history("product_counts") if h["event"] == "failed"]
    assert len(failed) == 1 and "KeyError" in failed[0]["reason"] and failed[0]["active"] == "v0001"
    assert failed[0]["watermark"] == SPLIT.isoformat()


def test_refit_below_the_guard_keeps_the_last_good_version(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    registry = Registry(tmp_path)
    refit_all(train, registry, models=[ProductCounts])
    floor = registry.active_version("product_counts").metrics["share_top"] + 0.01
    report = refit_all(train, registry, models=[ProductCounts], guards={"product_counts": {"share_top": floor}})
    (outcome,) = report.outcomes
    assert outcome.status == "rejected" and outcome.serving == "v0001" and outcome.version is None
    assert outcome.reason.startswith("share_top=") and f"< {floor}" in outcome.reason
    assert [v.version for v in registry.list("product_counts")] == ["v0001"]
    assert registry.history("product_counts")[-1]["event"] == "rejected"


def test_first_refit_that_fails_leaves_no_active_version_and_says_so(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    registry = Registry(tmp_path)
    empty = TrainingData(train.states, train.lines.iloc[0:0][["customer_id"]], train.until)
    report = refit_all(empty, registry, models=[ProductCounts])
    assert report.outcomes[0].status == "failed" and report.outcomes[0].serving is None
    with pytest.raises(NudgeError, match=r"no active version .*every refit so far failed or was rejected"):
        registry.active("product_counts")
    assert registry.names() == ["product_counts"] and registry.list("product_counts") == []


def test_evaluate_all_collects_each_modules_figures_and_failures(split: tuple) -> None:
    train, test_lines = split

    def seen(train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
        known = set(train.lines["product_id"].astype(str))
        after = test_lines["product_id"].astype(str)
        return {"share_seen": after.isin(known).mean(), "share_seen_none": 0.0, "n_lines": len(after),
                "share_unknown": float("nan")}

    report = evaluate_all(train, test_lines, {"seen": seen, "failing": lambda train, test: {"x": 1 / 0}})
    figures = report.figures["seen"]
    assert figures["n_lines"] == len(test_lines) > 0 and 0.3 < figures["share_seen"] < 1
    assert report.errors == {"failing": "ZeroDivisionError: division by zero"}
    as_json = json.loads(json.dumps(report.to_dict(), allow_nan=False))  # strict JSON: NaN becomes null
    assert as_json["split"] == SPLIT.isoformat() and as_json["figures"]["seen"]["share_unknown"] is None


def test_group_baselines_puts_each_baseline_next_to_its_figure() -> None:
    figures = {"recall10_product": 0.52, "recall10_product_popularity": 0.25, "recall10_product_als": 0.31,
               "recall10_product_new": 0.12, "recall10_product_new_popularity": 0.08, "mae_days": 8.0,
               "n_households": 2305.0, "n_households_mae": 2285.0}
    assert group_baselines(figures) == [
        ("recall10_product", 0.52, [("popularity", 0.25), ("als", 0.31)]),
        ("recall10_product_new", 0.12, [("popularity", 0.08)]),
        ("mae_days", 8.0, []), ("n_households", 2305.0, []), ("n_households_mae", 2285.0, [])]


def test_refit_without_a_watermark_uses_midnight_after_the_last_event(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    registry = Registry(tmp_path)
    report = refit_all(replace(train, until=None), registry, models=[CategorySpend])
    last = train.lines["event_time"].max()
    watermark = registry.active_version("category_spend").watermark
    assert report.until == watermark and watermark > last and watermark - last <= timedelta(days=1)
    assert (watermark.hour, watermark.minute, watermark.utcoffset()) == (0, 0, timedelta(0))


def test_forked_workers_give_the_same_versions_and_record_failures(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    corrupted = TrainingData(train.states, train.lines.drop(columns=["product_id"]), train.until, train.profiles)
    sequential, forked = Registry(tmp_path / "one"), Registry(tmp_path / "two")
    refit_all(train, sequential, models=[ProductCounts, CategorySpend])
    report = refit_all(train, forked, models=[ProductCounts, CategorySpend], workers=2)
    assert [(o.name, o.status, o.version) for o in report.outcomes] == [
        ("product_counts", "published", "v0001"), ("category_spend", "published", "v0001")]
    assert forked.active("product_counts").counts_.equals(sequential.active("product_counts").counts_)
    assert forked.active("category_spend").shares_ == sequential.active("category_spend").shares_
    again = refit_all(corrupted, forked, models=[ProductCounts, CategorySpend], workers=2)
    assert [(o.status, o.serving) for o in again.outcomes] == [("failed", "v0001"), ("published", "v0002")]
    assert forked.history("product_counts")[-1]["event"] == "failed"


@pytest.fixture(scope="module")
def two_months(cj_tables: dict) -> tuple[TrainingData, TrainingData]:
    """200 real households collected to 2017-09-01 and, a month later, to 2017-10-01."""
    households = set(sorted(cj_tables["transactions"]["household_id"].unique())[:200])
    source = CompleteJourneySource(households=households, tables=cj_tables)
    return collect(source, until=SPLIT - timedelta(days=30))[0], collect(source, until=SPLIT)[0]


def test_two_refits_a_month_apart_keep_every_matched_segments_name(tmp_path: Path, two_months: tuple) -> None:
    september, october = two_months
    registry = Registry(tmp_path)
    first = refit_all(september, registry, models=["clv", "segments"])
    second = refit_all(october, registry, models=["clv", "segments"])
    assert first.ok and second.ok
    assert {o.name: o.inputs for o in second.outcomes}["segments"] == {"previous": "segments v0001",
                                                                       "clv": "clv v0002"}
    old, new = registry.load("segments", "v0001"), registry.load("segments", "v0002")
    assert new.k_ == old.k_
    # Matched segments keep their name and id (new centroids matched to the old ones), so a campaign that
    # targets a name reaches the same kind of customer after the refit.
    assert dict(zip(new.segment_names_, new.segment_ids_, strict=True)) == dict(
        zip(old.segment_names_, old.segment_ids_, strict=True))
    moved = (new.profiles_.loc[old.segment_names_] - old.profiles_).abs().to_numpy().max()
    assert moved < 0.5  # each name sits on nearly the same centroid profile a month later


def test_grades_use_the_clv_model_fitted_in_the_same_refit(tmp_path: Path, two_months: tuple) -> None:
    _, october = two_months
    for workers in (1, 2):
        registry = Registry(tmp_path / str(workers))
        report = refit_all(october, registry, models=["segments", "clv"], workers=workers)
        # segments is listed first but reads clv's output, so it runs once clv is published.
        assert report.ok and {o.name: o.inputs for o in report.outcomes}["segments"]["clv"] == "clv v0001"
        model = registry.active("segments")
        clv = registry.active("clv").customers_["clv_12m"]
        expected = SegmentModel().fit(october, clv=clv).grades_
        assert model.grades_.equals(expected) and not model.grades_.equals(SegmentModel().fit(october).grades_)


def test_a_default_guard_refusal_keeps_the_last_version_serving(tmp_path: Path, two_months: tuple,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    september, october = two_months
    registry = Registry(tmp_path)
    scores = ScoreStore(connect(f"sqlite:///{tmp_path / 'engine.db'}"))
    assert refit_all(september, registry, models=["segments"], scores=scores).ok
    served = scores.frame("segments")
    # The default guard table with a silhouette floor no clustering of these customers reaches.
    silhouette = registry.active_version("segments").metrics["silhouette"]
    monkeypatch.setitem(GUARDS, "segments", replace(GUARDS["segments"], floors={"silhouette": 0.99}))
    report = refit_all(october, registry, models=["segments"], scores=scores)
    (outcome,) = report.outcomes
    assert outcome.status == "rejected" and outcome.serving == "v0001" and not report.ok
    assert outcome.reason.startswith("silhouette=") and "< 0.99" in outcome.reason and silhouette < 0.99
    assert [v.version for v in registry.list("segments")] == ["v0001"]
    assert scores.frame("segments").equals(served) and scores.versions()["segments"].version == "v0001"


def test_default_guards_refuse_metrics_that_are_not_finite_or_out_of_range() -> None:
    guard = GUARDS["segments"]
    assert guard({"k": 3.0, "silhouette": 0.4, "n_customers": 200.0}) is None
    assert guard({"k": 3.0, "silhouette": None, "n_customers": 200.0}) == "silhouette is not finite"
    assert guard({"k": 9.0, "silhouette": 0.05}) == ("silhouette=0.05 < 0.1; n_customers missing (guard >= 20); "
                                                     "k=9 outside 2..8")
    assert set(GUARDS) == {e.name for e in CATALOGUE}  # every catalogue model has a default guard


def test_a_typo_in_a_model_name_is_an_error_naming_the_known_models(tmp_path: Path, split: tuple) -> None:
    train, _ = split
    with pytest.raises(ConfigError, match=r"no model 'segmnts' \(models: clv, segments, recommend"):
        refit_all(train, Registry(tmp_path), models=["segmnts"])
    assert not (tmp_path / "segmnts").exists()
    result = CliRunner().invoke(app, ["refit", "--models", "segmnts", "--models-dir", str(tmp_path)],
                                env={"NUDGE_HOME": str(tmp_path / "home"), "COLUMNS": "200"})
    assert result.exit_code == 2 and "no model 'segmnts'" in result.output


def test_forked_workers_write_the_same_scores_as_one_process(tmp_path: Path, two_months: tuple) -> None:
    _, october = two_months
    models = ["clv", "segments", "preference", "rules"]
    tables = {}
    for workers in (1, 2):
        scores = ScoreStore(connect(f"sqlite:///{tmp_path / f'engine{workers}.db'}"))
        report = refit_all(october, Registry(tmp_path / f"models{workers}"), models=models, workers=workers,
                           scores=scores)
        assert report.ok and all(o.scored for o in report.outcomes), [(o.name, o.score_error) for o in report.outcomes]
        tables[workers] = {m: scores.frame(m) for m in models}
    for m in models:  # scored in the workers that fitted them or in the parent, the table is the same
        pd.testing.assert_frame_equal(tables[1][m], tables[2][m])
