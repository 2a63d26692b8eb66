"""The one small protocol every model shares, so the registry and the refit job treat them alike.

Like a scikit-learn estimator: parameters in `__init__` (no work there), learning in `fit`,
learned attributes end in `_`, and `metrics_` holds what the fit measured.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import pandas as pd

from engine.errors import NudgeError
from engine.models.data import TrainingData
from engine.models.outputs import Output
from engine.state import CustomerState

SCORE_COLUMNS = ("customer_id", "category", "output", "value")


@runtime_checkable
class Model(Protocol):
    """A model nudge can fit, version and serve."""

    name: ClassVar[str]
    metrics_: dict[str, float]

    def fit(self, data: TrainingData) -> Self:
        """Learn from the states and lines in `data`; return self."""
        ...

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, for the registry."""
        ...


@runtime_checkable
class Scorer(Protocol):
    """A model that answers by name: its declared `outputs`, scored for customers from their states at `now`.

    `score` returns one row per (customer_id, category — "" at customer level —, output) with its value, for the
    customers in `states` that have one (see each output's `needs`). Outputs marked `rescored` depend on the
    states, so scoring a few changed customers gives their new values; the others are fixed at fit.
    """

    outputs: ClassVar[tuple[Output, ...]]

    def score(self, states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
        """Long rows (customer_id, category, output, value) of every declared output at `now`."""
        ...


def scores_frame(wide: pd.DataFrame, columns: Mapping[str, str], outputs: tuple[Output, ...]) -> pd.DataFrame:
    """Long score rows from a frame with customer_id (and category) and one column per output.

    `columns` maps a column of `wide` to the output it holds; every name must be one of `outputs`.
    """
    declared = {o.name for o in outputs}
    unknown = sorted(set(columns.values()) - declared)
    if unknown:
        raise NudgeError(f"outputs {unknown} are not declared (declared: {sorted(declared)})")
    category = wide["category"].astype(str) if "category" in wide.columns else pd.Series("", index=wide.index)
    parts = [pd.DataFrame({"customer_id": wide["customer_id"].astype(str).to_numpy(),
                           "category": category.to_numpy(), "output": name,
                           "value": wide[column].to_numpy(dtype=object)})
             for column, name in columns.items()]
    if not parts:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    return pd.concat(parts, ignore_index=True)


class Estimator:
    """Shared plumbing for models: `get_params` reads the constructor's parameters back, as scikit-learn does.

    Subclasses keep every `__init__` parameter as an attribute of the same name (and do no work there).
    """

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters, for the registry."""
        params = inspect.signature(type(self).__init__).parameters.values()
        names = [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return {name: _plain(getattr(self, name)) for name in names}


def _plain(value: Any) -> Any:
    """Tuples and sets as lists, so parameters are JSON as written."""
    return list(value) if isinstance(value, tuple | set | frozenset) else value
