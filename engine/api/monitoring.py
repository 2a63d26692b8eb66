"""The engine at a glance: the overview, dead letters, model versions, and the Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from engine import queries
from engine.api.deps import HomeDep, Problem
from engine.errors import NudgeError
from engine.moments import Moment

router = APIRouter(tags=["engine"])
metrics_router = APIRouter(tags=["engine"])


@router.get("/overview", response_model=queries.Overview)
def overview(home: HomeDep,
             hours: Annotated[int, Query(ge=1, le=24 * 31, description="Hours of purchases up to the watermark.")]
             = 48) -> queries.Overview:
    """Customers, revenue, purchases per hour up to the watermark, dead letters, and sends by verdict."""
    return home.cached(f"overview:{hours}", lambda: queries.overview(home.states(), home.watermark(), home.lines,
                                                                      home.engine, hours))


class DeadLetterRow(BaseModel):
    """A record that could not become an event, and why (the record itself stays in the engine: it may hold what
    a source should never have sent)."""

    source: str
    position: int
    where: str
    reason: str
    recorded_at: Moment | None


@router.get("/deadletters", response_model=list[DeadLetterRow])
def dead_letters(home: HomeDep,
                 source: Annotated[str | None, Query(description="Only this source (cj, api, jsonl:/path, ...).")]
                 = None,
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[DeadLetterRow]:
    """Dead letters in the order recorded: source, position, where, and the reason."""
    return [DeadLetterRow(**d.model_dump(exclude={"raw"})) for d in queries.dead_letters(home.engine, source, limit)]


class ModelRow(queries.ModelVersion):
    """A fitted model version; `created_at` repeats `created` under the name the dashboard reads."""

    created_at: Moment


@router.get("/models", response_model=list[ModelRow], responses={404: {"model": Problem}})
def models(home: HomeDep, name: Annotated[str | None, Query(description="Only this model.")] = None
           ) -> list[ModelRow]:
    """Every version of every model (or of `name`): which serves, when fitted, on data up to when, its metrics."""
    try:
        versions = queries.model_versions(home.registry, name)
    except NudgeError as exc:
        raise HTTPException(404, str(exc)) from None
    return [ModelRow(**v.model_dump(), created_at=v.created) for v in versions]


@metrics_router.get("/metrics", response_class=Response,
                    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(request: Request) -> Response:
    """Records read per source and outcome, dead letters, messages by campaign and verdict, watermark lag,
    checkpoint age, customers, erasures, and the serving models' fit times: read from the stores now."""
    return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)
