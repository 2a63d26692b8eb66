"""Read models: what the engine answers about itself, as pydantic models the CLI renders now and an API will.

Each function reads the engine's stores (or the model registry) and returns plain validated data; none
writes. One customer's scores are `customer_view` (a `CustomerView`, read from the scores table). Times
serialize as ISO 8601 with their offset (`2017-10-01T00:00:00+00:00`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine

from engine.deadletters import list_dead_letters
from engine.errors import NudgeError
from engine.models.registry import Registry, Version
from engine.models.serving import CustomerView, customer_view
from engine.moments import Moment
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore
from engine.summary import population_summary

__all__ = ["CustomerView", "DeadLetterView", "ModelVersion", "PopulationSummary", "ReplayStatus", "customer_view",
           "dead_letters", "model_versions", "population", "replay_status"]


class FigureDistribution(BaseModel):
    """Mean and quantiles of one LRFMV figure over the buyers."""

    mean: float
    p0: float
    p25: float
    p50: float
    p75: float
    p90: float
    p100: float


class PopulationSummary(BaseModel):
    """Customers, baskets, revenue, and the LRFMV distribution at the watermark."""

    customers: int
    buyers: int
    baskets: int
    events: int
    lines: int  # bought lines net of returned ones
    revenue: float
    units: int
    watermark: Moment | None
    lrfmv: dict[str, FigureDistribution]


class ModelVersion(BaseModel):
    """One fitted version of a model, as the registry records it."""

    name: str
    version: str
    active: bool
    created: Moment
    watermark: Moment | None
    data_hash: str
    metrics: dict[str, float | None]
    params: dict[str, Any]
    fit_seconds: float | None


class DeadLetterView(BaseModel):
    """A record that could not become an event, with the reason and the record as read."""

    source: str
    position: int
    where: str
    reason: str
    raw: Any
    recorded_at: Moment | None


class SourceStatus(BaseModel):
    """Where one source's replay stands: its checkpoint."""

    source: str
    position: int
    watermark: Moment | None
    complete: bool
    counters: dict[str, int]


class LineStoreStatus(BaseModel):
    """What the line store keeps."""

    parts: int
    purchases: int
    lines: int
    first_time: Moment | None
    last_time: Moment | None
    dropped_until: Moment | None  # retention dropped the parts up to here


class ReplayStatus(BaseModel):
    """Every source's checkpoint, the customers in state, and the line store."""

    sources: list[SourceStatus]
    customers: int
    watermark: Moment | None
    line_store: LineStoreStatus


def population(checkpoints: CheckpointStore) -> PopulationSummary:
    """The population summary of the current state at the watermark."""
    figures = population_summary(checkpoints.load_states(), checkpoints.watermark())
    return PopulationSummary.model_validate({**figures, "watermark": checkpoints.watermark()})


def model_versions(registry: Registry, name: str | None = None) -> list[ModelVersion]:
    """Every version of every model (or of `name`), oldest first; `NudgeError` for an unknown name."""
    names = registry.names()
    if name is not None and name not in names:
        raise NudgeError(f"no model {name!r} in {registry.root} (models: {', '.join(names) or 'none'})")
    return [_version(v) for n in ([name] if name else names) for v in registry.list(n)]


def dead_letters(engine: Engine, source: str | None = None, limit: int | None = None) -> list[DeadLetterView]:
    """Dead letters in the order recorded, optionally of one source."""
    return [DeadLetterView(source=d.source, position=d.position, where=d.where, reason=d.reason, raw=d.raw,
                           recorded_at=d.recorded_at) for d in list_dead_letters(engine, source, limit)]


def replay_status(checkpoints: CheckpointStore, lines: LineStore) -> ReplayStatus:
    """Where every replay stands and what the line store holds."""
    parts = lines.parts()
    store = LineStoreStatus(parts=len(parts), purchases=sum(p.purchases for p in parts),
                            lines=sum(p.lines for p in parts),
                            first_time=min((p.first_time for p in parts), default=None),
                            last_time=max((p.last_time for p in parts), default=None),
                            dropped_until=lines.dropped_until())
    sources = [SourceStatus(source=cp.source, position=cp.position, watermark=cp.watermark, complete=cp.complete,
                            counters=vars(cp.counters)) for cp in checkpoints.load_all()]
    return ReplayStatus(sources=sources, customers=checkpoints.customers(), watermark=checkpoints.watermark(),
                        line_store=store)


def _version(v: Version) -> ModelVersion:
    return ModelVersion(name=v.name, version=v.version, active=v.active, created=v.created, watermark=v.watermark,
                        data_hash=v.data_hash, metrics=v.metrics, params=v.params, fit_seconds=v.fit_seconds)
