"""The learned ranker: gradient boosting over candidates, trained on a time-shifted split inside the training
period; a second one ranks products the customer never bought (explore)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from engine.errors import ConfigError, NudgeError
from engine.events import UNKNOWN_CATEGORY
from engine.models.base import scores_frame
from engine.models.data import TrainingData, bought_mask, indexer
from engine.models.outputs import Output, outputs_of
from engine.models.recommend.baselines import TopN, fit_als, rank_by_score
from engine.models.recommend.candidates import candidates
from engine.models.recommend.features import EXPLORE_FEATURES, FEATURES, features
from engine.models.recommend.interactions import Interactions, interactions, watermark
from engine.models.recommend.scores import CoBought, Neighbours
from engine.state import CustomerState


class RankedRecommender(TopN):
    """A gradient-boosting ranker over own, ALS and popular candidates, trained on a time-shifted split.

    `explore(customer_id, n)` ranks only products the customer never bought, with a second ranker.
    """

    name: ClassVar[str] = "recommend"
    outputs: ClassVar[tuple[Output, ...]] = outputs_of("recommend")

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0, iterations: int = 15,
                 half_life_days: float = 90.0, label_days: int = 92, own_candidates: int = 60,
                 als_candidates: int = 30, popular_candidates: int = 20, knn_candidates: int = 30,
                 knn_products: int = 6000, neighbours: int = 200, max_iter: int = 200,
                 learning_rate: float = 0.05, explore_max_iter: int = 60, explore_learning_rate: float = 0.1,
                 explore_cuts: int = 1, explore_cut_days: int = 28, cobought_candidates: int = 30,
                 cobought_power: float = 0.3, random_state: int = 0,
                 exclude_categories: tuple[str, ...] = (UNKNOWN_CATEGORY,)) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.half_life_days = half_life_days
        self.label_days = label_days
        self.own_candidates = own_candidates
        self.als_candidates = als_candidates
        self.popular_candidates = popular_candidates
        self.knn_candidates = knn_candidates
        self.knn_products = knn_products
        self.neighbours = neighbours
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.explore_max_iter = explore_max_iter
        self.explore_learning_rate = explore_learning_rate
        self.explore_cuts = explore_cuts
        self.explore_cut_days = explore_cut_days
        self.cobought_candidates = cobought_candidates
        self.cobought_power = cobought_power
        self.random_state = random_state
        self.exclude_categories = exclude_categories


    def _frames(self, lines: pd.DataFrame, now: pd.Timestamp,
                repeat: bool = True) -> tuple[Interactions, pd.DataFrame | None, pd.DataFrame]:
        """Interactions at `now`, and the featured candidates of the repeat (when `repeat`) and explore rankers."""
        inter = interactions(lines, now, self.half_life_days)
        als = fit_als(inter.counts, self.factors, self.regularization, self.alpha, self.iterations,
                      self.random_state)
        knn = Neighbours.fit(inter, self.knn_products, self.neighbours)
        ranked = features(inter, als, knn, candidates(inter, als, knn, self.own_candidates, self.als_candidates,
                                                      self.popular_candidates, self.knn_candidates)) if repeat else None
        # Only explore uses co-bought scores: the repeat ranker's features are left as they were chosen.
        cobought = CoBought.fit(inter, lines, self.knn_products, self.cobought_power)
        explore = features(inter, als, knn, candidates(inter, als, knn, self.own_candidates, self.als_candidates,
                                                       self.popular_candidates, self.knn_candidates, True, cobought,
                                                       self.cobought_candidates), cobought)
        return inter, ranked, explore

    def _learn(self, lines: pd.DataFrame, now: pd.Timestamp) -> tuple[Any, Any]:
        """Fit the repeat and explore rankers on features before `now - label_days`, labels after.

        Explore also learns from `explore_cuts - 1` earlier cuts, `explore_cut_days` apart, each with its
        `label_days` of labels (cuts with no lines before them are skipped).
        """
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        cut = now - pd.Timedelta(days=self.label_days)
        inter, ranked, explore = self._frames(lines, cut)
        assert ranked is not None
        bought = bought_codes(inter, lines, cut, now)
        training = {False: [labelled(inter, ranked, bought)], True: [labelled(inter, explore, bought)]}
        for k in range(1, self.explore_cuts):
            earlier = cut - pd.Timedelta(days=k * self.explore_cut_days)
            if not (lines["event_time"] < earlier).any():
                break
            inter_k, _, explore_k = self._frames(lines, earlier, repeat=False)
            bought_k = bought_codes(inter_k, lines, earlier, earlier + pd.Timedelta(days=self.label_days))
            training[True].append(labelled(inter_k, explore_k, bought_k))
        models = []
        for unseen in (False, True):
            columns = list(EXPLORE_FEATURES if unseen else FEATURES)
            x = np.vstack([frame[columns].to_numpy(float) for frame, _ in training[unseen]])
            label = np.concatenate([y for _, y in training[unseen]])
            if label.sum() == 0 or label.all():
                raise NudgeError(f"recommend: no positive and negative labels between {cut.date()} and {now.date()}"
                                 " to train the ranker; fit on a longer period or lower label_days")
            with threadpool_limits(1):
                model = HistGradientBoostingClassifier(
                    max_iter=self.explore_max_iter if unseen else self.max_iter,
                    learning_rate=self.explore_learning_rate if unseen else self.learning_rate,
                    early_stopping=False, random_state=self.random_state)
                model.fit(x, label)
            models.append(model)
            kind = "explore" if unseen else "ranker"
            self.metrics_[f"{kind}_train_rows"] = float(len(label))
            self.metrics_[f"{kind}_train_positive_rate"] = float(label.mean())
        self.metrics_["explore_train_cuts"] = float(len(training[True]))
        return models[0], models[1]

    def fit(self, data: TrainingData) -> Self:
        """Train the rankers on the time-shifted split, then rank candidates at the watermark."""
        from threadpoolctl import threadpool_limits

        if self.neighbours < 1 or self.knn_products < 1 or self.knn_candidates < 1:
            raise ConfigError(f"{self.name}: neighbours, knn_products and knn_candidates must be at least 1, got "
                              f"{self.neighbours}, {self.knn_products} and {self.knn_candidates}")
        if self.explore_cuts < 1 or self.explore_cut_days < 1:
            raise ConfigError(f"{self.name}: explore_cuts and explore_cut_days must be at least 1, got "
                              f"{self.explore_cuts} and {self.explore_cut_days}")
        now = pd.Timestamp(watermark(data))
        self.metrics_ = {}
        self.ranker_, self.explorer_ = self._learn(data.lines, now)
        inter, *frames = self._frames(data.lines, now)
        self._serving(data, inter, self.exclude_categories)
        rankings = []
        for model, unseen, frame in zip((self.ranker_, self.explorer_), (False, True), frames, strict=True):
            with threadpool_limits(1):
                columns = list(EXPLORE_FEATURES if unseen else FEATURES)
                score = model.predict_proba(frame[columns].to_numpy(float))[:, 1]
            rankings.append(rank_by_score(inter.customers, inter.products, frame["c"].to_numpy(), frame["p"].to_numpy(),
                                      score, depth=50))
        self.ranked_, self.explore_ = rankings
        self.metrics_["customers"] = float(len(self.ranked_))
        return self

    def explore(self, customer_id: str, n: int = 10) -> list[str]:
        """The top `n` products `customer_id` has never bought."""
        self._check_fitted()
        stored = self.ranked_
        try:
            self.ranked_ = self.explore_
            return self.recommend(customer_id, n)
        finally:
            self.ranked_ = stored

    def score(self, states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
        """`recommended` and `explore` of every customer, as ranked at fit (popular ones for a customer unseen then)."""
        ids = sorted(states)
        wide = pd.DataFrame({"customer_id": ids, "recommended": [self.recommend(c, self.served) for c in ids],
                             "explore": [self.explore(c, self.served) for c in ids]})
        return scores_frame(wide, {"recommended": "recommended", "explore": "explore"}, self.outputs)


def bought_codes(inter: Interactions, lines: pd.DataFrame, start: pd.Timestamp,
            end: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Codes (c * products + p) of what was bought in [start, end), and the customers (c) buying then."""
    later = lines[(lines["event_time"] >= start) & (lines["event_time"] < end) & bought_mask(lines)]
    c = indexer(inter.customers, later["customer_id"])
    p = indexer(inter.products, later["product_id"])
    known = (c >= 0) & (p >= 0)
    return np.unique(c[known].astype(np.int64) * len(inter.products) + p[known]), np.unique(c[c >= 0])


def labelled(inter: Interactions, frame: pd.DataFrame,
              bought: tuple[np.ndarray, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of `frame` (candidates at the cut) of customers buying after it, and whether each was bought."""
    codes, active = bought  # active: customers seen on both sides of the cut
    frame = frame[np.isin(frame["c"].to_numpy(), active)]
    label = np.isin(frame["c"].to_numpy().astype(np.int64) * len(inter.products) + frame["p"].to_numpy(), codes)
    return frame, label
