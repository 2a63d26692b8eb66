"""Each model's default guard: what its fit metrics must show before a refit may publish it, with the parameters.

The refit applies `GUARDS[name]` unless told otherwise; a refused fit is recorded and the last version keeps
serving. Every guard first refuses a metric that is not finite (the registry stores NaN and infinity as null).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MetricsGuard:
    """Every metric finite; each of `floors` at least its floor; each of `ranges` within [low, high]."""

    floors: Mapping[str, float] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def __call__(self, metrics: Mapping[str, float | None]) -> str | None:
        """Why the metrics fail the guard, or None when they pass."""
        short = [f"{key} is not finite" for key, value in metrics.items()
                 if value is None or not math.isfinite(value)]
        for key, floor in self.floors.items():
            value = metrics.get(key)
            if key not in metrics:
                short.append(f"{key} missing (guard >= {floor})")
            elif value is not None and value < floor:
                short.append(f"{key}={value:.4g} < {floor}")
        for key, (low, high) in self.ranges.items():
            value = metrics.get(key)
            if key not in metrics:
                short.append(f"{key} missing (guard in {low}..{high})")
            elif value is not None and not low <= value <= high:
                short.append(f"{key}={value:.4g} outside {low}..{high}")
        return "; ".join(short) or None


GUARDS: dict[str, MetricsGuard] = {
    # A silhouette this low means the segments barely separate (the year to October gives 0.41); k stays in the
    # model's k_range (2..8) even when a refit keeps the previous k.
    "segments": MetricsGuard(floors={"silhouette": 0.1, "n_customers": 20}, ranges={"k": (2, 8)}),
    # P(alive) averaging near 0 or exactly 1 is a degenerate BG/NBD fit.
    "clv": MetricsGuard(floors={"n_repeat_customers": 10}, ranges={"mean_p_alive": (0.01, 0.999)}),
    # A ranker learned from one label class cannot rank; the fit already refuses none or all positive.
    "recommend": MetricsGuard(floors={"customers": 1, "ranker_train_rows": 1, "explore_train_rows": 1}),
    "recommend_category": MetricsGuard(floors={"customers": 1, "categories": 2}),
    "next_purchase": MetricsGuard(floors={"train_rows": 1}),
    "next_purchase_category": MetricsGuard(floors={"train_rows": 1}),
    "rules": MetricsGuard(floors={"baskets": 1}),
    "preference": MetricsGuard(floors={"pairs": 1}, ranges={"mean_score": (0.0, 5.0)}),
}
