"""The refit job and the evaluation run: plain callables the scheduler and the CLI share.

`refit_all` collects the training data once, fits every model, times each fit, and publishes each through
the registry with its guard. One model failing (an exception, a guard) is recorded and does not stop the
others; the last good version of that model keeps serving.

Models are discovered at run time from the model modules that exist (`engine.models.segments`, `clv`, ...):
a module may list its models in a module-level `MODELS` sequence; otherwise every public class defined in
it that has a string `name`, `fit` and `get_params` and can be built without arguments is one.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import multiprocessing
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from time import perf_counter
from types import ModuleType
from typing import Any

import pandas as pd
import structlog
from threadpoolctl import threadpool_limits

from engine.models.base import Model
from engine.models.data import TrainingData, collect
from engine.models.registry import Guard, Registry
from engine.sources import Source

log = structlog.get_logger(__name__)

MODEL_MODULES = ("segments", "clv", "recommend", "repurchase", "rules", "preference")

ModelFactory = Callable[[], Model]


@dataclass
class ModelOutcome:
    """What a refit did with one model."""

    name: str
    status: str  # "published", "rejected" (guard refused the metrics) or "failed" (an exception)
    version: str | None = None  # the version published by this refit
    serving: str | None = None  # the version serving after this refit (the old one when rejected or failed)
    fit_seconds: float | None = None
    publish_seconds: float | None = None
    reason: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class RefitReport:
    """One refit run: the data it saw, the time it took, and each model's outcome."""

    until: datetime | None
    customers: int
    lines: int
    collect_seconds: float
    total_seconds: float = 0.0
    outcomes: list[ModelOutcome] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # model module -> why it could not be imported

    @property
    def ok(self) -> bool:
        """True when every model was published and every model module imported."""
        return not self.problems and all(o.status == "published" for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        out = asdict(self)
        out["until"] = self.until.isoformat() if self.until else None
        out["ok"] = self.ok
        return out


@dataclass
class EvaluationReport:
    """Figures of every model module's `evaluate` on one split, with each module's time and failure."""

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


def load_modules(modules: Iterable[str | ModuleType] | None = None) -> tuple[list[ModuleType], dict[str, str]]:
    """Import the model modules that exist; return them, and why each one that exists failed to import.

    Names without a dot are looked up under `engine.models`; a module that does not exist is skipped.
    """
    found: list[ModuleType] = []
    problems: dict[str, str] = {}
    for entry in MODEL_MODULES if modules is None else modules:
        if isinstance(entry, ModuleType):
            found.append(entry)
            continue
        qualified = entry if "." in entry else f"engine.models.{entry}"
        try:
            if importlib.util.find_spec(qualified) is None:
                continue
            found.append(importlib.import_module(qualified))
        except Exception as exc:  # a broken module must not stop the other models' refit
            problems[entry] = f"{type(exc).__name__}: {exc}"
            log.error("model_module_import_failed", module=qualified, reason=problems[entry])
    return found, problems


def models_in(module: ModuleType) -> list[ModelFactory]:
    """The model factories a module offers: its `MODELS`, or the model classes it defines."""
    declared = getattr(module, "MODELS", None)
    if declared is not None:
        return list(declared)
    return [obj for _, obj in inspect.getmembers(module, inspect.isclass) if _is_model_class(obj, module)]


def discover_models(modules: Iterable[str | ModuleType] | None = None) -> tuple[list[ModelFactory], dict[str, str]]:
    """Every model factory in the model modules that exist, one per model name; and the import problems."""
    found, problems = load_modules(modules)
    factories: list[ModelFactory] = []
    seen: dict[str, str] = {}
    for module in found:
        for factory in models_in(module):
            name = _factory_name(factory)
            if name in seen:
                problems[f"{module.__name__}:{name}"] = f"model name {name!r} is also defined in {seen[name]}"
                continue
            seen[name] = module.__name__
            factories.append(factory)
    return factories, problems


def refit_all(source: Source | TrainingData, registry: Registry, until: datetime | None = None,
              models: Sequence[ModelFactory] | None = None,
              guards: Mapping[str, Guard] | None = None, workers: int = 1) -> RefitReport:
    """Collect training data once, fit and publish every model; a failure is recorded, never fatal.

    Without `until` the watermark is midnight UTC after the last event, so models that count days from
    the watermark (recency, next-purchase dates) have one. With `workers` > 1 models are fitted in that
    many forked processes (each single-threaded, so results do not change); outcomes keep the models' order.
    """
    started = perf_counter()
    problems: dict[str, str] = {}
    if models is None:
        models, problems = discover_models()
    data = source if isinstance(source, TrainingData) else collect(source, until)[0]
    if data.until is None:
        data = replace(data, until=end_of_data(data))
    collect_seconds = perf_counter() - started
    data_hash = _data_hash(data)
    report = RefitReport(until=data.until, customers=len(data.states), lines=_length(data.lines),
                         collect_seconds=collect_seconds, problems=problems)
    log.info("refit_started", models=len(models), customers=report.customers, lines=report.lines,
             collect_seconds=round(collect_seconds, 3))
    if workers > 1 and len(models) > 1:
        outcomes = _refit_forked(models, data, registry, guards, data_hash, workers)
    else:
        outcomes = (refit_one(factory, data, registry, guards, data_hash=data_hash) for factory in models)
    for outcome in outcomes:
        report.outcomes.append(outcome)
        log.info("refit_model", model=outcome.name, status=outcome.status, version=outcome.version,
                 serving=outcome.serving, fit_seconds=outcome.fit_seconds, reason=outcome.reason)
    report.total_seconds = perf_counter() - started
    return report


def refit_one(factory: ModelFactory, data: TrainingData, registry: Registry,
              guards: Mapping[str, Guard] | None = None, data_hash: str | None = None) -> ModelOutcome:
    """Build, fit and publish one model; any exception becomes a recorded 'failed' outcome."""
    name = _factory_name(factory)
    began = perf_counter()
    try:
        model = factory()
        name = getattr(model, "name", name)
        began = perf_counter()
        # Single-threaded BLAS: fits are deterministic, and the refit shares the machine with serving.
        with threadpool_limits(1):
            fitted = model.fit(data)
        model = fitted if fitted is not None else model
    except Exception as exc:
        return _failed(registry, name, exc, data, perf_counter() - began)
    fit_seconds = perf_counter() - began
    guard = (guards or {}).get(name, getattr(model, "guard", None))
    began = perf_counter()
    try:
        version = registry.publish(model, data, guard=guard, fit_seconds=fit_seconds, data_hash=data_hash)
    except Exception as exc:
        return _failed(registry, name, exc, data, fit_seconds)
    publish_seconds = perf_counter() - began
    serving = _serving(registry, name)
    if version.rejected:
        return ModelOutcome(name, "rejected", serving=serving, fit_seconds=fit_seconds,
                            publish_seconds=publish_seconds, reason=version.rejected, metrics=version.metrics)
    return ModelOutcome(name, "published", version=version.version, serving=serving, fit_seconds=fit_seconds,
                        publish_seconds=publish_seconds, metrics=version.metrics)


def evaluate_all(train: TrainingData, test_lines: pd.DataFrame,
                 modules: Iterable[str | ModuleType] | None = None, split: datetime | None = None,
                 on_module: Callable[[str], None] | None = None) -> EvaluationReport:
    """Call every model module's `evaluate(train, test_lines)`; one failing module is recorded, not fatal."""
    found, problems = load_modules(modules)
    report = EvaluationReport(split=split if split is not None else train.until, errors=dict(problems))
    for module in found:
        short = module.__name__.rsplit(".", 1)[-1]
        evaluate = getattr(module, "evaluate", None)
        if not callable(evaluate):
            report.errors[short] = f"{module.__name__} has no evaluate(train, test_lines)"
            continue
        if on_module is not None:
            on_module(short)
        began = perf_counter()
        try:
            with threadpool_limits(1):
                figures = evaluate(train, test_lines)
            report.figures[short] = {str(k): float(v) for k, v in dict(figures).items()}
        except Exception as exc:
            report.errors[short] = f"{type(exc).__name__}: {exc}"
            log.error("evaluate_failed", module=module.__name__, reason=report.errors[short])
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


# What forked refit workers read: set just before the pool forks, so children inherit the training data
# (copy-on-write) instead of receiving it pickled.
_FORKED: tuple[TrainingData, Sequence[ModelFactory], Registry, Mapping[str, Guard] | None, str | None] | None = None


def _refit_forked(models: Sequence[ModelFactory], data: TrainingData, registry: Registry,
                  guards: Mapping[str, Guard] | None, data_hash: str | None, workers: int) -> list[ModelOutcome]:
    global _FORKED
    _FORKED = (data, models, registry, guards, data_hash)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(models)), mp_context=context) as pool:
            # Longest fits first (by the serving version's fit time), so one long fit is not left for last.
            order = sorted(range(len(models)), key=lambda i: -_last_fit_seconds(registry, models[i]))
            by_index = {i: pool.submit(_refit_index, i) for i in order}
            futures = [by_index[i] for i in range(len(models))]
            outcomes = []
            for factory, future in zip(models, futures, strict=True):
                try:
                    outcomes.append(future.result())
                except Exception as exc:  # the worker died (e.g. out of memory): the model did not refit
                    outcomes.append(_failed(registry, _factory_name(factory), exc, data, None))
            return outcomes
    finally:
        _FORKED = None


def _last_fit_seconds(registry: Registry, factory: ModelFactory) -> float:
    try:
        return registry.active_version(_factory_name(factory)).fit_seconds or math.inf
    except Exception:  # never fitted: unknown cost, start it early
        return math.inf


def _refit_index(index: int) -> ModelOutcome:
    assert _FORKED is not None, "refit worker started without its data"
    data, models, registry, guards, data_hash = _FORKED
    return refit_one(models[index], data, registry, guards, data_hash=data_hash)


def end_of_data(data: TrainingData) -> datetime | None:
    """The watermark of data collected without one: midnight UTC after the last line's day."""
    lines = data.lines
    if not isinstance(lines, pd.DataFrame) or "event_time" not in lines.columns or lines.empty:
        return None
    last = pd.Timestamp(lines["event_time"].max())
    return (last.tz_convert("UTC").normalize() + pd.Timedelta(days=1)).to_pydatetime()


def _data_hash(data: TrainingData) -> str | None:
    # Corrupted lines may not hash; each model's publish then fails and records why.
    try:
        return data.data_hash
    except Exception:
        return None


def _is_model_class(obj: type, module: ModuleType) -> bool:
    if obj.__module__ != module.__name__ or obj.__name__.startswith("_") or inspect.isabstract(obj):
        return False
    if getattr(obj, "_is_protocol", False):
        return False
    if not isinstance(getattr(obj, "name", None), str) or not callable(getattr(obj, "fit", None)):
        return False
    if not callable(getattr(obj, "get_params", None)):
        return False
    try:
        parameters = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    # The refit builds each model with its defaults; a class that needs arguments is a part, not a model.
    return all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters)


def _factory_name(factory: ModelFactory) -> str:
    name = getattr(factory, "name", None)
    if isinstance(name, str):
        return name
    return getattr(factory, "__name__", repr(factory))


def _failed(registry: Registry, name: str, exc: Exception, data: TrainingData,
            fit_seconds: float | None) -> ModelOutcome:
    reason = f"{type(exc).__name__}: {exc}"
    try:
        registry.record_failure(name, reason, data)
    except Exception as record_exc:  # e.g. a name that cannot be a folder: the report still carries the reason
        reason = f"{reason} (not recorded in the registry: {record_exc})"
    return ModelOutcome(name, "failed", serving=_serving(registry, name), fit_seconds=fit_seconds, reason=reason)


def _serving(registry: Registry, name: str) -> str | None:
    try:
        return registry.active_version(name).version
    except Exception:
        return None


def _length(lines: object) -> int:
    try:
        return len(lines)  # type: ignore[arg-type]
    except TypeError:
        return 0
