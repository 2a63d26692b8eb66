"""Preference score 0–5 per customer × top category, from the engine's state.

Scoring (a sum of points, capped to 0..5):
- frequency: 0, 1 or 2 points as the category's purchase days fall below, between or above the
  `quantiles` (terciles by default) of all customer × category pairs at fit time;
- share: 0, 1 or 2 points likewise for the category's share of the customer's spend;
- due-ness: 1 point when days since the category's last purchase is at most `due_ratio` times its
  mean interval (the customer is still in rhythm, or due); pairs bought on one day only get 0.
The cut points are learned in `fit`, so scores compare across customers at one watermark.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Self

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from engine.clock import day_number
from engine.errors import ConfigError, NudgeError
from engine.models.base import Estimator, scores_frame
from engine.models.data import TrainingData, bought_mask
from engine.models.outputs import Output, outputs_of
from engine.state import CustomerState

MAX_SCORE = 5


def pair_frame(states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
    """Per customer × top category: purchase days, spend share and due-ness (days since last / mean interval)."""
    rows = []
    for cid in sorted(states):
        state = states[cid]
        today = day_number(now, state.zone)  # days since are counted in the customer's zone, as recency is
        total = sum(max(s.spend, 0) for s in state.categories.values())
        for top in sorted(state.categories):
            stats = state.categories[top]
            if not stats.days:
                continue
            gap = stats.gap_mean
            since = today - stats.days[-1]
            rows.append((cid, top, len(stats.days), max(stats.spend, 0) / total if total > 0 else 0.0,
                         since / gap if gap else np.nan))
    return pd.DataFrame(rows, columns=["customer_id", "category", "purchase_days", "share", "due"])


class PreferenceScore(Estimator):
    """Points for frequency, spend share and due-ness, summed to a 0–5 preference per customer × category."""

    name: ClassVar[str] = "preference"
    outputs: ClassVar[tuple[Output, ...]] = outputs_of("preference")

    def __init__(self, quantiles: tuple[float, float] = (1 / 3, 2 / 3), due_ratio: float = 1.5) -> None:
        self.quantiles = quantiles
        self.due_ratio = due_ratio

    def fit(self, data: TrainingData) -> Self:
        """Learn the frequency and share cut points from the pairs at the training watermark."""
        lo, hi = self.quantiles
        if not 0 < lo < hi < 1 or self.due_ratio <= 0:
            raise ConfigError(f"preference needs 0 < quantiles[0] < quantiles[1] < 1 and due_ratio > 0; got "
                              f"{self.quantiles}, {self.due_ratio}")
        if data.until is None:
            raise NudgeError("preference needs training data with a watermark (until); got until=None")
        pairs = pair_frame(data.states, data.until)
        if pairs.empty:
            raise NudgeError("preference found no customer × category purchases in the training states")
        self.frequency_cuts_ = [float(v) for v in pairs["purchase_days"].quantile(list(self.quantiles))]
        self.share_cuts_ = [float(v) for v in pairs["share"].quantile(list(self.quantiles))]
        self.until_ = data.until
        scores = self.points(pairs)
        self.metrics_ = {"pairs": float(len(pairs)), "mean_score": float(scores.mean())}
        return self

    def points(self, pairs: pd.DataFrame) -> pd.Series:
        """The 0–5 score of each row of a `pair_frame`."""
        if not hasattr(self, "frequency_cuts_"):
            raise NudgeError("preference is not fitted: call fit(data) before points")
        # side="left": a value equal to a cut point earns that point (ties at small integers are common).
        frequency = np.searchsorted(self.frequency_cuts_, pairs["purchase_days"].to_numpy(), side="left")
        share = np.searchsorted(self.share_cuts_, pairs["share"].to_numpy(), side="left")
        due = (pairs["due"].to_numpy() <= self.due_ratio).astype(int)  # NaN (one day only) compares False
        return pd.Series(np.clip(frequency + share + due, 0, MAX_SCORE), index=pairs.index, name="score")

    def predict(self, states: Mapping[str, CustomerState], now: datetime | None = None) -> pd.DataFrame:
        """customer_id, category and score (0–5) for every pair the customer has bought, as of `now`."""
        pairs = pair_frame(states, now or self.until_)
        return pairs.assign(score=self.points(pairs))

    def score(self, states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
        """`category.preference` of every customer × top category bought, at `now` (the scoring protocol)."""
        return scores_frame(self.predict(states, now), {"score": "category.preference"}, self.outputs)


def evaluate(train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
    """Share of customer × category pairs re-bought after the split, per score band, whether it rises, and AUC."""
    model = PreferenceScore().fit(train)
    scored = model.predict(train.states, train.until)
    bought = test_lines[bought_mask(test_lines)]
    rebought = set(zip(bought["customer_id"].astype(str), bought["category"].astype(str), strict=True))
    scored["rebought"] = [(c, k) in rebought for c, k in zip(scored["customer_id"], scored["category"],
                                                              strict=True)]
    figures: dict[str, float] = {"n_preference_pairs": float(len(scored))}
    shares = []
    for band in range(MAX_SCORE + 1):
        in_band = scored[scored["score"] == band]
        share = float(in_band["rebought"].mean()) if len(in_band) else float("nan")
        figures[f"rebuy_share_score_{band}"] = share
        figures[f"n_preference_score_{band}"] = float(len(in_band))
        shares.append(share)
    present = [s for s in shares if not np.isnan(s)]
    figures["preference_monotone"] = float(all(a < b for a, b in itertools.pairwise(present)))
    # Baseline: the share re-bought over all pairs, what a score that knows nothing would give every band.
    figures["rebuy_share_all"] = float(scored["rebought"].mean())
    # ROC AUC of the score (6 bands, ties count half) against each of its parts alone.
    rebought = scored["rebought"].to_numpy()
    if rebought.any() and not rebought.all():
        figures["rebuy_auc"] = float(roc_auc_score(rebought, scored["score"]))
        figures["rebuy_auc_purchase_days"] = float(roc_auc_score(rebought, scored["purchase_days"]))
        figures["rebuy_auc_share"] = float(roc_auc_score(rebought, scored["share"]))
    return figures
