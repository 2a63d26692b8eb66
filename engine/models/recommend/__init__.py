"""Recommendations: popularity, personal repeat, implicit ALS, a learned ranker over them, and explore.

Every recommender is fitted on `TrainingData` and answers `recommend(customer_id, n) -> [product_id]`.
The ranker (`RankedRecommender`) is a pointwise gradient-boosting model over candidates (the
customer's own products, ALS's top products, the top products of the customer's nearest neighbours — customers
who bought alike — and the popular ones), trained on a time-shifted split
inside the training period: features up to `until - label_days`, labels = bought in the `label_days`
after. It is then applied to features up to `until`. Explore recommendations are the same idea
restricted to products the customer has never bought (its ranker can also learn from earlier cuts: `explore_cuts`).
`CategoryRecommender` ranks top categories per customer.
The refit job fits only those two (`MODELS`); the others are the baselines `evaluate` measures them against.

Returns: a product whose net line count in the customer's state is ≤ 0 (bought, then returned) is
never recommended to that customer, and a product whose net count over everyone is ≤ 0 is never
recommended at all. Products of `exclude_categories` (by default UNKNOWN: no catalog row to show) neither.

Modules: `interactions` (the customer × product input), `baselines` (shared serving and the baselines),
`scores` (neighbours, co-bought), `candidates`, `features`, `ranker`, `evaluation`.
"""

from __future__ import annotations

from engine.models.recommend.baselines import (
    ALSRecommender,
    CategoryRecommender,
    PopularityRecommender,
    RepeatRecommender,
    TopN,
    fit_als,
)
from engine.models.recommend.evaluation import evaluate, grouped_auc, recall_at_10
from engine.models.recommend.features import EXPLORE_FEATURES, FEATURES
from engine.models.recommend.interactions import DAY, Interactions
from engine.models.recommend.ranker import RankedRecommender
from engine.models.recommend.scores import CoBought, Neighbours, ProductScores, neighbour_scores

# What the refit job fits, versions and serves. Popularity, repeat and ALS are baselines (evaluate() refits
# them for comparison) and parts of the ranker: refitting them as models of their own only cost refit time.
MODELS: list[type[TopN]] = [RankedRecommender, CategoryRecommender]

__all__ = ["DAY", "EXPLORE_FEATURES", "FEATURES", "MODELS", "ALSRecommender", "CategoryRecommender", "CoBought",
           "Interactions", "Neighbours", "PopularityRecommender", "ProductScores", "RankedRecommender",
           "RepeatRecommender", "TopN", "evaluate", "fit_als", "grouped_auc", "neighbour_scores", "recall_at_10"]
