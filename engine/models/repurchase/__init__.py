"""Next-purchase dates per customer and per customer × top category, each with a range.

The model learns from the engine's own states: a state's sorted purchase days (overall and per top
category) truncated at a cut day are exactly what the state held on that day, so training rows are
snapshots at cuts every few days (all weekdays; the features are counted from the cut's weekday) inside the
training period, labelled with the days from the cut to the next purchase day on or after it. Features are
gap statistics (mean, variance, the last three gaps, an exponentially weighted mean, the longest), recency,
purchase days in the last 7/14/28/56 days and the share of purchase days on each weekday from the cut's; at
category level also the customer's own trip rhythm and the category's share of trips. `predict` needs only
the states.

Censoring: a prediction is judged on keys that buy again inside a window after the cut-off (the test
period, `horizon_days` long). A training row is kept when its next purchase falls before
min(cut + horizon_days, watermark); cuts closer to the watermark than `min_window_days` are dropped, and the
row's `window` (min(horizon, watermark - cut)) is a feature, set to `horizon_days` at prediction, so the
recent, short-window cuts teach the features' effects without pulling long gaps low.

Point predictions come from a HistGradientBoostingRegressor with the absolute-error loss (MAE is
minimised by the median, and the days-to-next-purchase distribution is very skewed); the range from
two quantile regressors (10 % and 90 % by default). At customer level the median is scaled by
`point_scale`: the kept rows are censored (label < window), so the fitted median runs a little short.
The censored rows are used, not dropped, by a discrete-time hazard model (`hazard_weight` > 0): every
snapshot row becomes one row per day ahead up to its purchase or its window, a small boosted classifier
learns P(first purchase on day d | none before), and the point blends the median of that distribution
(given a purchase inside the horizon) with the scaled regressor median.

Why these choices, what else was tried and its validation figures: docs/experiments/repurchase.md.
Modules: `history` (purchase-day frames and prefix figures), `model`, `evaluation`.
"""

from __future__ import annotations

from engine.models.repurchase.evaluation import evaluate, evaluate_level, truth
from engine.models.repurchase.history import day_frame
from engine.models.repurchase.model import (
    CATEGORY_HAZARD_TREES,
    CATEGORY_LEFT_OUT,
    HAZARD_TREES,
    LEVELS,
    NextPurchase,
    NextPurchaseCategory,
)

MODELS = [NextPurchase, NextPurchaseCategory]

__all__ = ["CATEGORY_HAZARD_TREES", "CATEGORY_LEFT_OUT", "HAZARD_TREES", "LEVELS", "MODELS", "NextPurchase",
           "NextPurchaseCategory", "day_frame", "evaluate", "evaluate_level", "truth"]
