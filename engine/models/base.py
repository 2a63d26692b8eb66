"""The one small protocol every model shares, so the registry and the refit job treat them alike.

Like a scikit-learn estimator: parameters in `__init__` (no work there), learning in `fit`,
learned attributes end in `_`, and `metrics_` holds what the fit measured.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from engine.models.data import TrainingData


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
