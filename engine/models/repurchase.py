"""Next-purchase dates per customer and per customer × top category, each with a range.

The model learns from the engine's own states: a state's sorted purchase days (overall and per top
category) truncated at a cut day are exactly what the state held on that day, so training rows are
snapshots at weekly cuts inside the training period, labelled with the days from the cut to the next
purchase day on or after it. Only cuts with a full `horizon_days` of training data after them are
used, and a row counts only when its next purchase falls inside that horizon — the same condition the
evaluation puts on the test period (a purchase after the split, within the data).

Point predictions come from a HistGradientBoostingRegressor with the absolute-error loss (MAE is
minimised by the median, and the days-to-next-purchase distribution is very skewed); the range from
two quantile regressors (10 % and 90 % by default).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from engine.errors import ConfigError, NudgeError
from engine.models.data import TrainingData
from engine.state import EPOCH, CustomerState

LEVELS = ("customer", "category")
GAP_FEATURES = ["gap_mean", "gap_var", "recency", "n"]  # what the plain GB baseline sees


def day_number(when: datetime | date) -> int:
    """The state's day number (days since 1970-01-01) of a date or of a datetime's date."""
    if isinstance(when, datetime):
        when = when.date()
    return when.toordinal() - EPOCH


def day_frame(states: Mapping[str, CustomerState], level: str) -> pd.DataFrame:
    """One row per purchase day of each key (customer, or customer × top category), sorted by key and day.

    `attrs["keys"]` names the keys (customer_id, category); at category level `attrs["customers"]` is the
    customer-level frame and `attrs["owner"]` maps each key to its row in it.
    """
    keys: list[tuple[str, str]] = []
    chunks: list[array] = []
    owner: list[int] = []
    for i, cid in enumerate(sorted(states)):
        state = states[cid]
        if level == "customer":
            keys.append((cid, ""))
            chunks.append(state.days)
        else:
            for top in sorted(state.categories):
                keys.append((cid, top))
                chunks.append(state.categories[top].days)
                owner.append(i)
    frame = _frame_of(chunks)
    frame.attrs["keys"] = pd.DataFrame(keys, columns=["customer_id", "category"])
    if level == "category":
        frame.attrs["customers"] = _frame_of([states[cid].days for cid in sorted(states)])
        frame.attrs["owner"] = np.asarray(owner, dtype=np.int64)
    return frame


def _frame_of(chunks: list[array]) -> pd.DataFrame:
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    day = np.concatenate([np.frombuffer(c, dtype=np.uint16) for c in chunks]).astype(np.int64) if chunks else (
        np.empty(0, dtype=np.int64))
    key = np.repeat(np.arange(len(chunks)), lengths)
    gap = np.diff(day, prepend=0).astype(float)
    starts = np.cumsum(lengths) - lengths
    gap[starts[lengths > 0]] = np.nan  # a key's first day has no gap before it
    return pd.DataFrame({"key": key, "day": day, "gap": gap})


def _day_stats(frame: pd.DataFrame, cut: int) -> pd.DataFrame:
    """Per key, figures of the purchase days before `cut` (the key's state on that day)."""
    past = frame["day"].to_numpy() < cut
    key = frame["key"].to_numpy()[past]
    day = frame["day"].to_numpy()[past]
    gap = np.nan_to_num(frame["gap"].to_numpy()[past])
    index, starts, n = np.unique(key, return_index=True, return_counts=True)
    ends = starts + n - 1
    first, last = day[starts], day[ends]
    k = n - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_mean = np.where(k > 0, (last - first) / k, np.nan)
        gap_sq = np.add.reduceat(gap * gap, starts) if len(starts) else np.empty(0)
        gap_var = np.where(k > 1, (gap_sq - (last - first) ** 2 / k) / (k - 1), np.nan)
        recency = cut - last
        # 1970-01-01 was a Thursday: (day + 3) % 7 is the weekday with Monday = 0.
        slot = np.repeat(np.arange(len(index)), n) * 7 + (day + 3) % 7
        counts = np.bincount(slot, minlength=7 * len(index)).reshape(-1, 7)
        stats = pd.DataFrame({
            "n": n,
            "last": last,
            "gap_mean": gap_mean,
            "gap_var": gap_var,
            "gap_last": np.where(n > 1, gap[ends], np.nan),
            "gap_prev": np.where(n > 2, gap[np.maximum(ends - 1, 0)], np.nan),
            "recency": recency,
            "tenure": cut - first,
            "n30": np.add.reduceat((day >= cut - 30).astype(np.int64), starts) if len(starts) else 0,
            "n90": np.add.reduceat((day >= cut - 90).astype(np.int64), starts) if len(starts) else 0,
            "due": recency / gap_mean,
            "expected": gap_mean - recency,
            "mode_share": counts.max(axis=1) / n,
            "to_mode_day": (counts.argmax(axis=1) - (cut + 3) % 7) % 7,  # days from the cut to the usual weekday
            "last_weekday": (last + 3) % 7,
        }, index=pd.Index(index, name="key"))
    # Robust gap figures: a median buyer's rhythm, and the longest lull seen.
    gaps = pd.Series(frame["gap"].to_numpy()[past]).groupby(key)
    stats["gap_median"] = gaps.median()
    stats["gap_max"] = gaps.max()
    stats["over_max"] = stats["recency"] / stats["gap_max"]
    return stats


def _next_day(frame: pd.DataFrame, cut: int) -> pd.Series:
    """Per key, days from `cut` to the first purchase day on or after it (keys with none are absent)."""
    ahead = frame[frame["day"] >= cut]
    return ahead.groupby("key", sort=True)["day"].min() - cut


class NextPurchase:
    """Next purchase day per customer (level="customer") or per customer × top category (level="category")."""

    name: ClassVar[str] = "next_purchase"

    def __init__(self, level: str = "customer", horizon_days: int = 60, cut_step_days: int = 7, n_cuts: int = 16,
                 min_days: int = 2, quantiles: tuple[float, float] = (0.1, 0.9), max_iter: int = 100,
                 learning_rate: float = 0.1, max_leaf_nodes: int = 15, min_samples_leaf: int = 40,
                 random_state: int = 0) -> None:
        self.level = level
        self.horizon_days = horizon_days
        self.cut_step_days = cut_step_days
        self.n_cuts = n_cuts
        self.min_days = min_days
        self.quantiles = quantiles
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, for the registry."""
        return {k: getattr(self, k) for k in ("level", "horizon_days", "cut_step_days", "n_cuts", "min_days",
                                              "quantiles", "max_iter", "learning_rate", "max_leaf_nodes",
                                              "min_samples_leaf", "random_state")}

    # -- features --------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"next_purchase level {self.level!r} is not one of {LEVELS}")
        lo, hi = self.quantiles
        if not 0 < lo < 0.5 < hi < 1:
            raise ConfigError(f"next_purchase quantiles {self.quantiles} must be (low < 0.5 < high) inside (0, 1)")
        if self.min_days < 1 or self.horizon_days < 1 or self.cut_step_days < 1 or self.n_cuts < 1:
            raise ConfigError("next_purchase min_days, horizon_days, cut_step_days and n_cuts must be positive")

    def features(self, frame: pd.DataFrame, cut: int) -> pd.DataFrame:
        """Feature rows at `cut` for the keys of `frame` with at least `min_days` purchase days before it."""
        stats = _day_stats(frame, cut)
        if self.level == "category":
            keys = frame.attrs["keys"]
            # The customer's own shopping rhythm: a category is bought on some shopping trip.
            customer = _day_stats(frame.attrs["customers"], cut).add_prefix("c_")
            owner = frame.attrs["owner"][stats.index]
            stats = pd.concat([stats, customer.reindex(owner).set_axis(stats.index)], axis=1)
            stats["category"] = pd.Categorical(keys["category"].to_numpy()[stats.index],
                                               categories=getattr(self, "categories_", None))
            stats["share_days"] = stats["n"] / stats["c_n"]
        stats = stats[stats["n"] >= self.min_days]
        return stats

    def _columns(self, stats: pd.DataFrame) -> list[str]:
        return [c for c in stats.columns if c not in ("last", "c_last")]

    def training_rows(self, data: TrainingData) -> pd.DataFrame:
        """Snapshot rows at weekly cuts with a full horizon before the watermark, with their `label`."""
        if data.until is None:
            raise NudgeError("next_purchase needs training data with a watermark (until); got until=None")
        frame = day_frame(data.states, self.level)
        if self.level == "category" and not hasattr(self, "categories_"):
            self.categories_ = sorted(set(frame.attrs["keys"]["category"]))
        # Cuts fall on the watermark's weekday: when in the week the clock stops shapes the next gap.
        last_cut = day_number(data.until) - 7 * -(-self.horizon_days // 7)
        rows = []
        for i in range(self.n_cuts):
            cut = last_cut - i * self.cut_step_days
            stats = self.features(frame, cut)
            label = _next_day(frame, cut).reindex(stats.index)
            stats = stats.assign(label=label, cut=cut)
            rows.append(stats[stats["label"] < self.horizon_days])
        table = pd.concat(rows)
        if table.empty:
            raise NudgeError(f"next_purchase found no training snapshots before {data.until:%Y-%m-%d}: "
                             f"too little history for {self.n_cuts} cuts and a {self.horizon_days}-day horizon")
        return table

    # -- fit / predict ---------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> Self:
        """Fit the median and quantile regressors on snapshot rows of the training period."""
        self._check()
        if hasattr(self, "categories_"):
            del self.categories_
        table = self.training_rows(data)
        self.columns_ = self._columns(table.drop(columns=["label", "cut"]))
        x, y = table[self.columns_], table["label"].to_numpy(dtype=float)
        lo, hi = self.quantiles
        with threadpool_limits(1):
            self.point_ = self._regressor("absolute_error").fit(x, y)
            self.low_ = self._regressor("quantile", lo).fit(x, y)
            self.high_ = self._regressor("quantile", hi).fit(x, y)
        self.median_label_ = float(np.median(y))
        self.until_ = data.until
        self.metrics_ = {"train_rows": float(len(table)), "train_mae": float(np.mean(np.abs(
            self.point_.predict(x) - y))), "median_label": self.median_label_}
        return self

    def _regressor(self, loss: str, quantile: float | None = None) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(
            loss=loss, quantile=quantile, max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf, early_stopping=False,
            categorical_features="from_dtype", random_state=self.random_state)

    def predict(self, states: Mapping[str, CustomerState], now: datetime | None = None) -> pd.DataFrame:
        """Next purchase date with a range per key that has `min_days` purchase days before `now`'s date.

        Columns: customer_id, category ("" at customer level), days (from `now`'s date), date, low, high
        (dates; low ≤ date ≤ high).
        """
        if not hasattr(self, "point_"):
            raise NudgeError("next_purchase is not fitted: call fit(data) before predict")
        now = now or self.until_
        cut = day_number(now)
        frame = day_frame(states, self.level)
        stats = self.features(frame, cut)
        x = stats[self.columns_]
        with threadpool_limits(1):
            point = np.maximum(np.rint(self.point_.predict(x)), 0)
            low = np.minimum(np.floor(self.low_.predict(x)), point).clip(min=0)
            high = np.maximum(np.ceil(self.high_.predict(x)), point)
        keys = frame.attrs["keys"].iloc[stats.index].reset_index(drop=True)
        start = np.datetime64(now.date() if isinstance(now, datetime) else now, "D")
        return keys.assign(
            days=point.astype(int),
            date=start + point.astype("timedelta64[D]"),
            low=start + low.astype("timedelta64[D]"),
            high=start + high.astype("timedelta64[D]"),
        )


# -- evaluation ----------------------------------------------------------------------------------

def truth(test_lines: pd.DataFrame, split: datetime, level: str) -> pd.Series:
    """Days from the split date to the first purchase day on or after it, per key (customer or customer, category)."""
    bought = test_lines[(test_lines["quantity"] > 0) | (test_lines["amount"] > 0)]
    day = bought["event_time"].dt.tz_convert("UTC").dt.normalize()
    keys = ["customer_id"] if level == "customer" else ["customer_id", "category"]
    first = day.groupby([bought[k].astype(str) for k in keys]).min()
    return (first - pd.Timestamp(split.date(), tz="UTC")).dt.days


def _plain_gb(table: pd.DataFrame, random_state: int) -> HistGradientBoostingRegressor:
    with threadpool_limits(1):
        return HistGradientBoostingRegressor(random_state=random_state, early_stopping=False).fit(
            table[GAP_FEATURES], table["label"])


def evaluate_level(train: TrainingData, test_lines: pd.DataFrame, level: str,
                   model: NextPurchase | None = None) -> dict[str, float]:
    """MAE of the model and its baselines on keys with ≥ 2 purchase days before the split and one after."""
    model = model or NextPurchase(level=level)
    model.fit(train)
    prefix = "next_purchase" if level == "customer" else "next_purchase_category"
    cut = day_number(train.until)
    frame = day_frame(train.states, level)
    stats = model.features(frame, cut)
    keys = frame.attrs["keys"].iloc[stats.index]
    index = pd.MultiIndex.from_frame(keys) if level == "category" else pd.Index(keys["customer_id"])
    y_true = truth(test_lines, train.until, level).reindex(index).to_numpy(dtype=float)
    seen = ~np.isnan(y_true)
    stats, y = stats[seen], y_true[seen]
    pred = model.predict(train.states, train.until).iloc[np.flatnonzero(seen)]
    table = model.training_rows(train)
    plain = _plain_gb(table, model.random_state)
    with threadpool_limits(1):
        plain_pred = np.maximum(np.rint(plain.predict(stats[GAP_FEATURES])), 0)
    mean_gap = np.maximum(np.rint(stats["expected"].to_numpy()), 0)
    start = np.datetime64(train.until.date(), "D")
    low = (pred["low"].to_numpy() - start) // np.timedelta64(1, "D")
    high = (pred["high"].to_numpy() - start) // np.timedelta64(1, "D")
    point = pred["days"].to_numpy()
    return {
        f"n_{prefix}": float(seen.sum()),
        f"{prefix}_mae": float(np.mean(np.abs(point - y))),
        f"{prefix}_median_ae": float(np.median(np.abs(point - y))),
        f"{prefix}_mae_mean_gap": float(np.mean(np.abs(mean_gap - y))),
        f"{prefix}_mae_constant4": float(np.mean(np.abs(4 - y))),
        f"{prefix}_mae_best_constant": float(np.mean(np.abs(model.median_label_ - y))),
        f"{prefix}_best_constant_days": model.median_label_,
        f"{prefix}_mae_plain_gb": float(np.mean(np.abs(plain_pred - y))),
        f"{prefix}_interval_coverage": float(np.mean((low <= y) & (y <= high))),
        f"{prefix}_interval_width": float(np.mean(high - low)),
    }


def evaluate(train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
    """Next-purchase MAE per customer and per customer × top category, with their baselines."""
    figures = evaluate_level(train, test_lines, "customer")
    # Eight cuts suffice at category level (≈12 rows a customer each) and keep the fit to seconds.
    figures.update(evaluate_level(train, test_lines, "category", NextPurchase(level="category", n_cuts=8)))
    return figures


__all__ = ["NextPurchase", "day_frame", "day_number", "evaluate", "evaluate_level", "truth"]
