"""The next-purchase model: boosted median and quantile regressors on snapshots at past cuts, blended with a
discrete-time hazard classifier; per customer (`NextPurchase`) and per customer × top category."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import date, datetime
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from engine.clock import day_number
from engine.errors import ConfigError, NudgeError
from engine.models.base import SCORE_COLUMNS, Estimator, scores_frame
from engine.models.data import TrainingData
from engine.models.outputs import Output, outputs_of
from engine.models.repurchase.history import History, day_frame, next_day
from engine.state import CustomerState

LEVELS = ("customer", "category")
# Category level: features counting history length stay in the snapshots (the plain GB baseline reads n) but the
# model leaves them out: with them the median ran short (docs/experiments/repurchase.md).
CATEGORY_LEFT_OUT = ("n", "c_n", "tenure", "c_tenure")
# The hazard classifier is kept small: 15- and 31-leaf trees scored worse on July–September
# (docs/experiments/repurchase.md).
HAZARD_TREES = {"max_iter": 150, "learning_rate": 0.1, "max_leaf_nodes": 4, "min_samples_leaf": 200}
# Category level: its gaps are long, so a row expands to ~27 days ahead (customer: a few); with a tenth of the
# no-purchase days kept, half the trees at twice the rate keep its fit within ~4 s (docs/experiments/repurchase.md).
CATEGORY_HAZARD_TREES = {**HAZARD_TREES, "max_iter": 75, "learning_rate": 0.2}


def _expand(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row i repeated days[i] times, and the days ahead 0 .. days[i] - 1 of those copies."""
    row = np.repeat(np.arange(len(days)), days)
    return row, np.arange(len(row)) - np.repeat(np.cumsum(days) - days, days)


def _days_ahead(stats: pd.DataFrame, days: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Row i of `stats` repeated for days ahead 0 .. days[i] - 1, with features of that day; and the days ahead."""
    row, ahead = _expand(days)
    return _ahead_rows(stats, row, ahead), ahead


def _ahead_rows(stats: pd.DataFrame, row: np.ndarray, ahead: np.ndarray) -> pd.DataFrame:
    """Rows `row` of `stats`, each `ahead` days after its cut, with features of that day."""
    x = stats.iloc[row].reset_index(drop=True)
    shares = x[[f"share_d{d}" for d in range(7)]].to_numpy()
    since = x["recency"].to_numpy() + ahead
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x.assign(ahead=ahead, ahead_share=shares[np.arange(len(x)), ahead % 7],
                     due_at=since / x["gap_mean"].to_numpy(), due_ewm_at=since / x["gap_ewm"].to_numpy())
    return x


class NextPurchase(Estimator):
    """Next purchase day per customer (level="customer") or per customer × top category (level="category")."""

    name: ClassVar[str] = "next_purchase"
    outputs: ClassVar[tuple[Output, ...]] = outputs_of("next_purchase")

    def __init__(self, level: str = "customer", horizon_days: int = 92, min_window_days: int = 14,
                 cut_step_days: int = 3, n_cuts: int = 70, min_days: int = 2,
                 quantiles: tuple[float, float] = (0.1, 0.9), max_iter: int = 100, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 7, min_samples_leaf: int = 100, ewm_alpha: float = 0.3,
                 max_rows: int = 60_000, random_state: int = 0, point_scale: float = 1.15,
                 hazard_weight: float = 0.7, hazard_rows: int = 30_000, hazard_negatives: float = 1.0) -> None:
        self.level = level
        self.horizon_days = horizon_days
        self.min_window_days = min_window_days
        self.cut_step_days = cut_step_days
        self.n_cuts = n_cuts
        self.min_days = min_days
        self.quantiles = quantiles
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.ewm_alpha = ewm_alpha
        self.max_rows = max_rows
        self.random_state = random_state
        self.point_scale = point_scale
        self.hazard_weight = hazard_weight
        self.hazard_rows = hazard_rows
        self.hazard_negatives = hazard_negatives

    # -- features --------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"next_purchase level {self.level!r} is not one of {LEVELS}")
        lo, hi = self.quantiles
        if not 0 < lo < 0.5 < hi < 1:
            raise ConfigError(f"next_purchase quantiles {self.quantiles} must be (low < 0.5 < high) inside (0, 1)")
        if min(self.min_days, self.horizon_days, self.cut_step_days, self.n_cuts, self.min_window_days,
               self.max_rows, self.hazard_rows) < 1:
            raise ConfigError("next_purchase min_days, horizon_days, min_window_days, cut_step_days, n_cuts, "
                              "max_rows and hazard_rows must be positive")
        if self.min_window_days > self.horizon_days:
            raise ConfigError(f"next_purchase min_window_days {self.min_window_days} exceeds horizon_days "
                              f"{self.horizon_days}")
        if not 0 < self.ewm_alpha < 1:
            raise ConfigError(f"next_purchase ewm_alpha {self.ewm_alpha} must be inside (0, 1)")
        if not 0.5 <= self.point_scale <= 2:
            raise ConfigError(f"next_purchase point_scale {self.point_scale} must be inside [0.5, 2]")
        if not 0 <= self.hazard_weight <= 1:
            raise ConfigError(f"next_purchase hazard_weight {self.hazard_weight} must be inside [0, 1]")
        if not 0 < self.hazard_negatives <= 1:
            raise ConfigError(f"next_purchase hazard_negatives {self.hazard_negatives} must be inside (0, 1]")

    def _histories(self, states: Mapping[str, CustomerState]) -> dict[str, Any]:
        frame = day_frame(states, self.level)
        customers = frame if self.level == "customer" else frame.attrs["customers"]
        out = {"frame": frame, "customers": History(customers, self.ewm_alpha)}
        if self.level == "category":
            out["keys"] = History(frame, self.ewm_alpha)
        return out

    def _features_at(self, histories: dict[str, Any], cut: int) -> pd.DataFrame:
        if self.level == "customer":
            return histories["customers"].at(cut, self.min_days)
        frame = histories["frame"]
        stats = histories["keys"].at(cut, self.min_days)
        # The customer's own shopping rhythm: a category is bought on some shopping trip.
        customer = histories["customers"].at(cut, 1).add_prefix("c_")
        owner = frame.attrs["owner"][stats.index]
        stats = pd.concat([stats, customer.reindex(owner).set_axis(stats.index)], axis=1)
        stats = stats.drop(columns=["c_cut_weekday"])
        stats["category"] = pd.Categorical(frame.attrs["keys"]["category"].to_numpy()[stats.index],
                                           categories=getattr(self, "categories_", None))
        # A category is bought on some of the customer's trips: its share of trips, overall and lately, the
        # customer's trips since the category was last bought, and the days that rhythm implies.
        trips = histories["customers"]
        stats["share_days"] = stats["n"] / stats["c_n"]
        stats["share56"] = stats["n56"] / stats["c_n56"].where(stats["c_n56"] > 0)
        stats["trips_since"] = (trips.count_before(owner, cut) - trips.count_before(owner, cut - stats["recency"]
                                                                                     .to_numpy() + 1))
        stats["trips_due"] = stats["trips_since"] * stats["share_days"]
        stats["rhythm_days"] = stats["c_gap_ewm"] / stats["share_days"]
        stats["rhythm_left"] = stats["rhythm_days"] - stats["recency"]
        stats["since_trip"] = stats["recency"] - stats["c_recency"]
        return stats

    def training_rows(self, data: TrainingData) -> pd.DataFrame:
        """Snapshot rows at cuts before the watermark, with their `label`, `cut` and censoring `window`."""
        return self._sample(self._snapshots(data), self.max_rows, censored=False)

    def _snapshots(self, data: TrainingData) -> pd.DataFrame:
        """Every key's row at every cut before the watermark, censored ones too (label NaN or ≥ window)."""
        if data.until is None:
            raise NudgeError("next_purchase needs training data with a watermark (until); got until=None")
        until = day_number(data.until)
        histories = self._histories(data.states)
        frame = histories["frame"]
        if self.level == "category" and not hasattr(self, "categories_"):
            self.categories_ = sorted(set(frame.attrs["keys"]["category"]))
        rows = []
        for i in range(self.n_cuts):
            cut = until - self.min_window_days - i * self.cut_step_days
            window = min(self.horizon_days, until - cut)
            stats = self._features_at(histories, cut)
            label = next_day(frame, cut).reindex(stats.index)
            rows.append(stats.assign(window=float(window), label=label, cut=cut))
        return pd.concat(rows) if rows else pd.DataFrame(columns=["label", "window"])

    def _sample(self, table: pd.DataFrame, max_rows: int, censored: bool) -> pd.DataFrame:
        if not censored:
            table = table[table["label"] < table["window"]]
        if table.empty:
            raise NudgeError(f"next_purchase found no training snapshots: too little history for {self.n_cuts} "
                             f"cuts {self.cut_step_days} days apart")
        if len(table) > max_rows:
            # A seeded sample keeps many cuts (seasons, weekdays) while the fit stays within seconds.
            pick = np.random.default_rng(self.random_state).choice(len(table), max_rows, replace=False)
            table = table.iloc[np.sort(pick)]
        return table

    # -- fit / predict ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> Self:
        """Fit the median and quantile regressors and the hazard classifier on the training period's snapshots."""
        self._check()
        if hasattr(self, "categories_"):
            del self.categories_
        snapshots = self._snapshots(data)
        table = self._sample(snapshots, self.max_rows, censored=False)
        left_out = {"label", "cut", *(CATEGORY_LEFT_OUT if self.level == "category" else ())}
        self.columns_ = [c for c in table.columns if c not in left_out]
        x, y = table[self.columns_], table["label"].to_numpy(dtype=float)
        lo, hi = self.quantiles
        with threadpool_limits(1):
            self.point_ = self._regressor("absolute_error").fit(x, y)
            self.low_ = self._regressor("quantile", lo).fit(x, y)
            self.high_ = self._regressor("quantile", hi).fit(x, y)
        self.hazard_ = self._fit_hazard(self._sample(snapshots, self.hazard_rows, censored=True)) if (
            self.hazard_weight > 0) else None
        full = table["window"] >= self.horizon_days
        self.median_label_ = float(np.median(y[full])) if full.any() else float(np.median(y))
        self.until_ = data.until
        # Every 10th row (40th of the category level's 100k: ~1 s): the hazard's median costs horizon_days
        # predictions a row.
        step = 10 if self.level == "customer" else 40
        self.metrics_ = {"train_rows": float(len(table)), "train_mae": float(np.mean(np.abs(
            self._point(table.iloc[::step]) - y[::step]))), "median_label": self.median_label_}
        return self

    def _fit_hazard(self, table: pd.DataFrame) -> HistGradientBoostingClassifier:
        """P(first purchase on day d after the cut | none before), from every row up to its label or window."""
        label, window = table["label"].to_numpy(dtype=float), table["window"].to_numpy()
        bought = label < window  # NaN (no purchase seen) is censored too
        days = np.where(bought, label + 1, window).astype(np.int64)
        row, ahead = _expand(days)
        y = ahead == np.repeat(np.where(bought, label, -1), days)
        if self.hazard_negatives < 1:
            # Keep every purchase day and a seeded share of the no-purchase days; `_hazard_curve` scales the odds
            # back (sample weights instead would make the trees' binning use weighted percentiles: ~10 s more).
            keep = y | (np.random.default_rng(self.random_state).random(len(y)) < self.hazard_negatives)
            row, ahead, y = row[keep], ahead[keep], y[keep]
        x = _ahead_rows(table[self._hazard_inputs()], row, ahead)
        trees = HAZARD_TREES if self.level == "customer" else CATEGORY_HAZARD_TREES
        with threadpool_limits(1):
            return HistGradientBoostingClassifier(**trees, early_stopping=False, categorical_features="from_dtype",
                                                  random_state=self.random_state).fit(x, y)

    def _hazard_inputs(self) -> list[str]:
        # The window only censors the hazard rows; it is not a feature of them.
        return [c for c in self.columns_ if c != "window"]

    def _hazard_curve(self, stats: pd.DataFrame) -> np.ndarray:
        """P(first purchase on or before day d after the cut), d = 0 .. horizon_days - 1, one row per key."""
        days = np.full(len(stats), self.horizon_days)
        x, _ = _days_ahead(stats[self._hazard_inputs()], days)
        with threadpool_limits(1):
            hazard = self.hazard_.predict_proba(x)[:, 1].reshape(len(stats), self.horizon_days)
        share = getattr(self, "hazard_negatives", 1.0)  # versions saved before it kept every day
        if share < 1:  # fitted on a share of the no-purchase days: their odds were 1 / share too high
            odds = share * hazard / np.maximum(1 - hazard, 1e-12)
            hazard = odds / (1 + odds)
        return 1 - np.cumprod(1 - hazard, axis=1)

    def _hazard_median(self, stats: pd.DataFrame) -> np.ndarray:
        """Days to the median of each key's next-purchase distribution, given a purchase inside the horizon."""
        bought = self._hazard_curve(stats)
        return (bought < 0.5 * bought[:, -1:]).sum(axis=1).astype(float)

    def _point(self, stats: pd.DataFrame) -> np.ndarray:
        point = self.point_.predict(stats[self.columns_]) * self.point_scale
        if getattr(self, "hazard_", None) is not None:  # versions saved before the hazard have none
            point = self.hazard_weight * self._hazard_median(stats) + (1 - self.hazard_weight) * point
        return np.maximum(np.rint(point), 0)

    def _regressor(self, loss: str, quantile: float | None = None) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss=loss, quantile=quantile, max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf, early_stopping=False,
            categorical_features="from_dtype", random_state=self.random_state)

    def snapshot(self, states: Mapping[str, CustomerState], now: datetime | date) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The keys with `min_days` purchase days before `now`'s date and their feature rows (window = horizon)."""
        histories = self._histories(states)
        stats = self._features_at(histories, day_number(now)).assign(window=float(self.horizon_days))
        keys = histories["frame"].attrs["keys"].iloc[stats.index].reset_index(drop=True)
        return keys, stats

    def predict(self, states: Mapping[str, CustomerState], now: datetime | None = None,
                categories: Mapping[str, Collection[str]] | None = None) -> pd.DataFrame:
        """Next purchase date with a range per key that has `min_days` purchase days before `now`'s date.

        Columns: customer_id, category ("" at customer level), days (from `now`'s date), date, low, high
        (dates; low ≤ date ≤ high). At category level, `categories` keeps only those of each customer.
        """
        if not hasattr(self, "point_"):
            raise NudgeError("next_purchase is not fitted: call fit(data) before predict")
        now = now or self.until_
        keys, stats = self.snapshot(states, now)
        if categories is not None and self.level == "category":
            keep = np.fromiter((c in categories.get(cid, ()) for cid, c in zip(keys["customer_id"], keys["category"],
                                                                               strict=True)), bool, len(keys))
            keys, stats = keys[keep].reset_index(drop=True), stats[keep].reset_index(drop=True)
        x = stats[self.columns_]
        with threadpool_limits(1):
            point = self._point(stats)
            low = np.minimum(np.floor(self.low_.predict(x)), point).clip(min=0)
            high = np.maximum(np.ceil(self.high_.predict(x)), point)
        start = np.datetime64(now.date() if isinstance(now, datetime) else now, "D")
        return keys.assign(
            days=point.astype(int),
            date=start + point.astype("timedelta64[D]"),
            low=start + low.astype("timedelta64[D]"),
            high=start + high.astype("timedelta64[D]"),
        )

    def score(self, states: Mapping[str, CustomerState], now: datetime,
              categories: Mapping[str, Collection[str]] | None = None) -> pd.DataFrame:
        """Next purchase date, low and high of each key with `min_days` purchase days before `now`'s date (at
        category level only the `categories` given per customer, when given)."""
        if not states:
            return pd.DataFrame(columns=list(SCORE_COLUMNS))
        prefix = "next_purchase" if self.level == "customer" else "category.next_purchase"
        return scores_frame(self.predict(states, now, categories),
                            {k: f"{prefix}.{k}" for k in ("date", "low", "high")}, self.outputs)


class NextPurchaseCategory(NextPurchase):
    """Next purchase day per customer × top category, registered under its own name."""

    name: ClassVar[str] = "next_purchase_category"
    outputs: ClassVar[tuple[Output, ...]] = outputs_of("next_purchase_category")
    # `score(..., categories=...)` re-scores only the categories a purchase touched: a category's date is set
    # when its cycle opens (or at a refit), and the hazard curve over 92 days is most of a re-score's cost.
    scores_by_category: ClassVar[bool] = True

    def __init__(self, level: str = "category", horizon_days: int = 92, min_window_days: int = 14,
                 cut_step_days: int = 3, n_cuts: int = 70, min_days: int = 2,
                 quantiles: tuple[float, float] = (0.1, 0.9), max_iter: int = 100, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 15, min_samples_leaf: int = 40, ewm_alpha: float = 0.3,
                 max_rows: int = 100_000, random_state: int = 0, point_scale: float = 1.0,
                 hazard_weight: float = 0.5, hazard_rows: int = 30_000, hazard_negatives: float = 0.1) -> None:
        super().__init__(level, horizon_days, min_window_days, cut_step_days, n_cuts, min_days, quantiles, max_iter,
                         learning_rate, max_leaf_nodes, min_samples_leaf, ewm_alpha, max_rows, random_state,
                         point_scale, hazard_weight, hazard_rows, hazard_negatives)
