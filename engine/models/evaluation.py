"""The evaluation run: every catalogue evaluation on one temporal split, each figure next to its baselines."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter
from typing import Any

import pandas as pd
import structlog
from threadpoolctl import threadpool_limits

from engine.models.data import TrainingData

log = structlog.get_logger(__name__)

Evaluation = Callable[[TrainingData, pd.DataFrame], Mapping[str, float]]


@dataclass
class EvaluationReport:
    """Figures of every evaluation on one split, with each one's time and failure."""

    split: datetime | None
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # module -> figure -> value
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # module -> why it has no figures

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        # JSON has no NaN: a figure a module could not compute is null.
        figures = {m: {k: v if math.isfinite(v) else None for k, v in f.items()} for m, f in self.figures.items()}
        return {"split": self.split.isoformat() if self.split else None, "figures": figures,
                "seconds": self.seconds, "errors": self.errors}


def evaluate_all(train: TrainingData, test_lines: pd.DataFrame, evaluations: Mapping[str, Evaluation] | None = None,
                 split: datetime | None = None, on_module: Callable[[str], None] | None = None) -> EvaluationReport:
    """Call each evaluation (the catalogue's by default) on the split; one failing is recorded, not fatal."""
    if evaluations is None:
        from engine.models.catalogue import EVALUATIONS

        evaluations = EVALUATIONS
    report = EvaluationReport(split=split if split is not None else train.until)
    for short, evaluate in evaluations.items():
        if on_module is not None:
            on_module(short)
        began = perf_counter()
        try:
            with threadpool_limits(1):
                figures = evaluate(train, test_lines)
            report.figures[short] = {str(k): float(v) for k, v in dict(figures).items()}
        except Exception as exc:  # one module failing leaves the others' figures standing
            report.errors[short] = f"{type(exc).__name__}: {exc}"
            log.error("evaluate_failed", module=short, reason=report.errors[short])
        report.seconds[short] = round(perf_counter() - began, 3)
    return report


def group_baselines(figures: Mapping[str, float]) -> list[tuple[str, float, list[tuple[str, float]]]]:
    """Pair each figure with its baselines: `<figure>_<baseline>` keys go next to `<figure>`.

    A key extended by others is a figure even if it extends a shorter key (e.g. `recall10_product_new`
    with `recall10_product_new_popularity`); counts (`n_...`) are always figures.
    """
    keys = list(figures)
    parent: dict[str, str] = {}
    for key in keys:
        if key.startswith("n_") or any(other.startswith(key + "_") for other in keys):
            continue
        stems = [other for other in keys if key.startswith(other + "_") and not other.startswith("n_")]
        if stems:
            parent[key] = max(stems, key=len)
    rows = []
    for key in keys:
        if key in parent:
            continue
        baselines = [(k[len(key) + 1:], figures[k]) for k in keys if parent.get(k) == key]
        rows.append((key, figures[key], baselines))
    return rows
