"""The models nudge fits, versions and serves, in refit order, and the evaluations `nudge evaluate` runs.

One explicit list: a model is refitted because it is named here, and a name not here is an error.
`keeps_identity` models are fitted with the serving version (`fit(data, previous=...)`); `inputs` are other
models' outputs a fit takes (segments' grades use the CLV model's clv_12m), so those models run first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from engine.errors import ConfigError
from engine.models import clv, preference, recommend, repurchase, rules, segments
from engine.models.base import Model
from engine.models.data import TrainingData

ModelFactory = Callable[[], Model]


@dataclass(frozen=True)
class Entry:
    """One model the refit builds: its name, how to build it, and what its fit takes besides the data."""

    name: str
    factory: ModelFactory
    keeps_identity: bool = False  # fit(data, previous=<the serving version>)
    inputs: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # fit keyword -> (model, output)

    @property
    def after(self) -> set[str]:
        """The models whose serving version this fit reads."""
        return {model for model, _ in self.inputs.values()}


CATALOGUE: tuple[Entry, ...] = (
    Entry("clv", clv.CLVModel),
    Entry("segments", segments.SegmentModel, keeps_identity=True, inputs={"clv": ("clv", "clv_12m")}),
    Entry("recommend", recommend.RankedRecommender),
    Entry("recommend_category", recommend.CategoryRecommender),
    Entry("next_purchase", repurchase.NextPurchase),
    Entry("next_purchase_category", repurchase.NextPurchaseCategory),
    Entry("rules", rules.AssociationRules),
    Entry("preference", preference.PreferenceScore),
)

BY_NAME: dict[str, Entry] = {e.name: e for e in CATALOGUE}

# Module figures `nudge evaluate` prints, in this order.
EVALUATIONS: dict[str, Callable[[TrainingData, pd.DataFrame], Mapping[str, float]]] = {
    "segments": segments.evaluate, "clv": clv.evaluate, "recommend": recommend.evaluate,
    "repurchase": repurchase.evaluate, "rules": rules.evaluate, "preference": preference.evaluate,
}


def entries(models: Sequence[str | ModelFactory] | None = None) -> list[Entry]:
    """The catalogue entries for `models` (names, or factories for models outside it); all of them by default."""
    if models is None:
        return list(CATALOGUE)
    found = []
    for model in models:
        if isinstance(model, str):
            if model not in BY_NAME:
                raise ConfigError(f"no model {model!r} (models: {', '.join(BY_NAME)})")
            found.append(BY_NAME[model])
        else:
            found.append(Entry(factory_name(model), model))
    names = [e.name for e in found]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"models {repeated} are named more than once")
    return found


def factory_name(factory: ModelFactory) -> str:
    """The model name a factory builds (its class's `name`), or the factory's own name."""
    name = getattr(factory, "name", None)
    return name if isinstance(name, str) else getattr(factory, "__name__", repr(factory))
