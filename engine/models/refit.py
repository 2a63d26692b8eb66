"""The refit job: a plain callable the scheduler and the CLI share.

`refit_all` collects the training data once, fits every catalogue model (or the ones named), times each fit,
and publishes each through the registry with its guard (`engine.models.guards`). A model that keeps identity
is fitted with its serving version; a model that takes another's output (segments' grades, clv_12m) is fitted
once that model is done and reads its serving version. One model failing (an exception, a guard) is recorded
and does not stop the others; the last good version of that model keeps serving. Given a score store, every
model's outputs are then written from its serving version for every customer.
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from time import perf_counter
from typing import Any

import pandas as pd
import structlog
from threadpoolctl import threadpool_limits

from engine.errors import NudgeError
from engine.models.catalogue import Entry, ModelFactory, entries
from engine.models.data import TrainingData, collect
from engine.models.guards import GUARDS
from engine.models.registry import Guard, Registry
from engine.models.serving import scores_of, write_scores
from engine.sources import Source
from engine.store.scores import ScoreStore

log = structlog.get_logger(__name__)


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
    inputs: dict[str, str] = field(default_factory=dict)  # fit keyword -> the model version it came from
    scored: int | None = None  # score rows written from the serving version (None: not written)
    score_error: str | None = None


@dataclass
class RefitReport:
    """One refit run: the data it saw, the time it took, and each model's outcome."""

    until: datetime | None
    customers: int
    lines: int
    collect_seconds: float
    total_seconds: float = 0.0
    score_seconds: float = 0.0
    outcomes: list[ModelOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every model was published, and scored when scores were asked for."""
        return all(o.status == "published" and o.score_error is None for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready values."""
        out = asdict(self)
        out["until"] = self.until.isoformat() if self.until else None
        out["ok"] = self.ok
        return out


def refit_all(source: Source | TrainingData, registry: Registry, until: datetime | None = None,
              models: Sequence[str | ModelFactory] | None = None, guards: Mapping[str, Guard | None] | None = None,
              workers: int = 1, scores: ScoreStore | None = None) -> RefitReport:
    """Collect training data once, fit and publish every model; a failure is recorded, never fatal.

    `models` names catalogue models (an unknown name is a ConfigError naming the known ones), or gives
    factories of models outside it. `guards` override the default guards by model name (None: no guard).
    Without `until` the watermark is midnight UTC after the last event, so models that count days from
    the watermark (recency, next-purchase dates) have one. With `workers` > 1 models are fitted in that
    many forked processes (each single-threaded, so results do not change); outcomes keep the models' order.
    """
    started = perf_counter()
    chosen = entries(models)
    data = source if isinstance(source, TrainingData) else collect(source, until)[0]
    if data.until is None:
        data = replace(data, until=end_of_data(data))
    collect_seconds = perf_counter() - started
    data_hash = _data_hash(data)
    report = RefitReport(until=data.until, customers=len(data.states), lines=_length(data.lines),
                         collect_seconds=collect_seconds)
    log.info("refit_started", models=len(chosen), customers=report.customers, lines=report.lines,
             collect_seconds=round(collect_seconds, 3))
    chosen_guards = {e.name: _guard(e.name, guards) for e in chosen}
    if workers > 1 and len(chosen) > 1:
        # Workers also score what they publish, so the scoring runs two at a time beside the other fits.
        scored = _refit_forked(chosen, data, registry, chosen_guards, data_hash, workers, scores is not None)
    else:
        done = {i: refit_one(chosen[i], data, registry, chosen_guards[chosen[i].name], data_hash=data_hash)
                for i in _dependency_order(chosen)}
        scored = [(done[i], None) for i in range(len(chosen))]
    began = perf_counter()
    for outcome, frame in scored:
        if scores is not None:
            _score(scores, registry, outcome, data, frame)
        report.outcomes.append(outcome)
        log.info("refit_model", model=outcome.name, status=outcome.status, version=outcome.version,
                 serving=outcome.serving, fit_seconds=outcome.fit_seconds, reason=outcome.reason,
                 scored=outcome.scored, score_error=outcome.score_error)
    report.score_seconds = perf_counter() - began
    report.total_seconds = perf_counter() - started
    return report


def refit_one(entry: Entry | ModelFactory, data: TrainingData, registry: Registry, guard: Guard | None = None,
              data_hash: str | None = None) -> ModelOutcome:
    """Build, fit (with the serving versions it takes) and publish one model; an exception is a 'failed' outcome."""
    entry = entry if isinstance(entry, Entry) else entries([entry])[0]
    name = entry.name
    began = perf_counter()
    inputs: dict[str, str] = {}
    try:
        model = entry.factory()
        name = getattr(model, "name", name)
        kwargs, inputs = _fit_inputs(entry, data, registry)
        began = perf_counter()
        # Single-threaded BLAS: fits are deterministic, and the refit shares the machine with serving.
        with threadpool_limits(1):
            fitted = model.fit(data, **kwargs)
        model = fitted if fitted is not None else model
    except Exception as exc:
        return replace(_failed(registry, name, exc, data, perf_counter() - began), inputs=inputs)
    fit_seconds = perf_counter() - began
    began = perf_counter()
    try:
        version = registry.publish(model, data, guard=guard, fit_seconds=fit_seconds, data_hash=data_hash)
    except Exception as exc:
        return replace(_failed(registry, name, exc, data, fit_seconds), inputs=inputs)
    publish_seconds = perf_counter() - began
    serving = _serving(registry, name)
    if version.rejected:
        return ModelOutcome(name, "rejected", serving=serving, fit_seconds=fit_seconds, publish_seconds=publish_seconds,
                            reason=version.rejected, metrics=version.metrics, inputs=inputs)
    return ModelOutcome(name, "published", version=version.version, serving=serving, fit_seconds=fit_seconds,
                        publish_seconds=publish_seconds, metrics=version.metrics, inputs=inputs)


def _dependency_order(chosen: Sequence[Entry]) -> list[int]:
    """Indices of `chosen` in their order, except that a model runs after the chosen models it reads."""
    index = {e.name: i for i, e in enumerate(chosen)}
    order: list[int] = []

    def visit(i: int, path: tuple[str, ...]) -> None:
        if i in order:
            return
        if chosen[i].name in path:
            raise NudgeError(f"refit: models {' -> '.join((*path, chosen[i].name))} read each other's outputs")
        for name in sorted(chosen[i].after - {chosen[i].name}):
            if name in index:
                visit(index[name], (*path, chosen[i].name))
        order.append(i)

    for i in range(len(chosen)):
        visit(i, ())
    return order


def _guard(name: str, guards: Mapping[str, Guard | None] | None) -> Guard | None:
    if guards is not None and name in guards:
        return guards[name]
    return GUARDS.get(name)


def _fit_inputs(entry: Entry, data: TrainingData, registry: Registry) -> tuple[dict[str, Any], dict[str, str]]:
    """The keyword arguments the fit takes from serving versions, and which version each came from."""
    kwargs: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if entry.keeps_identity:
        kwargs["previous"], sources["previous"] = _serving_model(registry, entry.name)
    for keyword, (model_name, output) in entry.inputs.items():
        model, sources[keyword] = _serving_model(registry, model_name)
        if model is not None:
            # The output at this refit's watermark, from the states: what the scores table serves.
            frame = model.score(data.states, data.until)
            rows = frame[frame["output"] == output]
            kwargs[keyword] = pd.Series(rows["value"].astype(float).to_numpy(), index=rows["customer_id"].to_numpy())
        else:
            kwargs[keyword] = None
    return kwargs, sources


def _serving_model(registry: Registry, name: str) -> tuple[Any, str]:
    """The serving model of `name` and its label ('clv v0003'), or None and why there is none."""
    try:
        version = registry.active_version(name).version
    except NudgeError:
        return None, f"none ({name} has no serving version)"
    return registry.load(name, version), f"{name} {version}"


def _score(store: ScoreStore, registry: Registry, outcome: ModelOutcome, data: TrainingData,
           frame: pd.DataFrame | None = None) -> None:
    """Write the serving version's outputs (`frame` when a worker scored it) when the table does not hold them yet
    (a publish always)."""
    if outcome.serving is None:
        return
    if outcome.score_error is not None:  # the worker that published it could not score it
        log.error("refit_scores_failed", model=outcome.name, version=outcome.serving, reason=outcome.score_error)
        return
    held = store.versions().get(outcome.name)
    if held is not None and held.version == outcome.serving and outcome.status != "published":
        return
    try:
        if frame is not None:
            outcome.scored = store.publish(outcome.name, outcome.serving, frame, data.until)
            return
        model = registry.load(outcome.name, outcome.serving)
        outcome.scored = write_scores(store, outcome.name, outcome.serving, model, data.states, data.until)
    except Exception as exc:  # the version serves; its scores are missing, and the report says why
        outcome.score_error = f"{type(exc).__name__}: {exc}"
        log.error("refit_scores_failed", model=outcome.name, version=outcome.serving, reason=outcome.score_error)


# What forked refit workers read: set just before the pool forks, so children inherit the training data
# (copy-on-write) instead of receiving it pickled.
_FORKED: tuple[TrainingData, Sequence[Entry], Registry, Mapping[str, Guard | None], str | None, bool] | None = None


def _refit_forked(chosen: Sequence[Entry], data: TrainingData, registry: Registry,
                  guards: Mapping[str, Guard | None], data_hash: str | None, workers: int,
                  score: bool) -> list[tuple[ModelOutcome, pd.DataFrame | None]]:
    """Fit in forked workers (each scoring what it published when `score`); a model that reads another's serving
    version starts once that one is done."""
    global _FORKED
    _FORKED = (data, chosen, registry, guards, data_hash, score)
    index = {e.name: i for i, e in enumerate(chosen)}
    waits = {i: {index[m] for m in e.after if m in index and m != e.name} for i, e in enumerate(chosen)}
    # Longest fits first (by the serving version's fit time), so one long fit is not left for last.
    pending = sorted(range(len(chosen)), key=lambda i: -_last_fit_seconds(registry, chosen[i].name))
    futures: dict[int, Future] = {}
    outcomes: dict[int, tuple[ModelOutcome, pd.DataFrame | None]] = {}
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=min(workers, len(chosen)), mp_context=context) as pool:
            while pending or len(outcomes) < len(futures):
                for i in [i for i in pending if waits[i] <= outcomes.keys()]:
                    pending.remove(i)
                    futures[i] = pool.submit(_refit_index, i)
                running = [f for i, f in futures.items() if i not in outcomes]
                if not running:
                    raise NudgeError(f"refit: models {[chosen[i].name for i in pending]} wait on each other")
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for i, future in futures.items():
                    if future in done:
                        outcomes[i] = _result(future, chosen[i].name, registry, data)
    finally:
        _FORKED = None
    return [outcomes[i] for i in range(len(chosen))]


def _result(future: Future, name: str, registry: Registry,
            data: TrainingData) -> tuple[ModelOutcome, pd.DataFrame | None]:
    try:
        return future.result()
    except Exception as exc:  # the worker died (e.g. out of memory): the model did not refit
        return _failed(registry, name, exc, data, None), None


def _last_fit_seconds(registry: Registry, name: str) -> float:
    try:
        return registry.active_version(name).fit_seconds or math.inf
    except Exception:  # never fitted: unknown cost, start it early
        return math.inf


def _refit_index(index: int) -> tuple[ModelOutcome, pd.DataFrame | None]:
    if _FORKED is None:
        raise NudgeError("refit worker started without its data (the pool must fork after _FORKED is set)")
    data, chosen, registry, guards, data_hash, score = _FORKED
    outcome = refit_one(chosen[index], data, registry, guards[chosen[index].name], data_hash=data_hash)
    if not score or outcome.status != "published":
        return outcome, None  # the parent scores what still serves, if the table lacks it
    try:
        return outcome, scores_of(outcome.name, registry.load(outcome.name, outcome.version), data.states, data.until)
    except Exception as exc:  # published, not scored: the parent records why
        outcome.score_error = f"{type(exc).__name__}: {exc}"
        return outcome, None


def end_of_data(data: TrainingData) -> datetime | None:
    """The watermark of data collected without one (`TrainingData.watermark`); None for data without lines."""
    lines = data.lines
    if not isinstance(lines, pd.DataFrame) or "event_time" not in lines.columns or lines.empty:
        return None
    return data.watermark


def _data_hash(data: TrainingData) -> str | None:
    # Corrupted lines may not hash; each model's publish then fails and records why.
    try:
        return data.data_hash
    except Exception:
        return None


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
