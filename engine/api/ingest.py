"""POST /api/events: one event in the wire format (docs/wire-format.md), through the path every source takes.

The posted events are a replayable source of their own, "api": each posted event is the record at the position
after the last one, replayed by the embedded runtime with the wire decoder, so decoding, validation, the clock,
the state, the line store, the checkpoint and the dead letters are exactly a replay's. A record that cannot
become an event is a dead letter with the reason, and the answer is 422 with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from engine.api.deps import AUTH_RESPONSES, HomeDep
from engine.api.home import Home
from engine.api.security import require_write
from engine.db import dead_letter
from engine.live.wire import SCHEMA, WireDecoder
from engine.sources import Record

SOURCE = "api"
log = structlog.get_logger("nudge.api")

EXAMPLE = {"schema": SCHEMA, "type": "purchase", "event_id": "api-example-1", "customer_id": "api-example",
           "event_time": "2017-12-30T12:00:00+00:00", "store_id": "1",
           "lines": [["1004906", ["PRODUCE", "POTATOES"], 1, 3.49]]}


class PostedEvents:
    """Posted records as a replayable source: positions continue from the source's last checkpoint."""

    key = SOURCE

    def __init__(self, start: int, raws: list[str]) -> None:
        self.start, self.raws = start, raws
        self.decoder = WireDecoder()

    def __len__(self) -> int:
        return self.start + len(self.raws)

    def records(self, start: int = 0) -> Iterator[Record]:
        """The posted records from position `start` on."""
        for i, raw in enumerate(self.raws):
            position = self.start + i
            if position >= start:
                yield Record(position, raw, f"{SOURCE} event {position}")


class Ingested(BaseModel):
    """What became of a posted event."""

    source: str
    position: int
    outcome: str  # applied, late, duplicate, profile or response
    type: str
    event_id: str | None
    customer_id: str


class Rejected(BaseModel):
    """A posted record that is a dead letter now."""

    source: str
    position: int
    where: str
    reason: str


def ingest(home: Home, body: bytes) -> Ingested | Rejected:
    """Replay one posted record into the engine home; what it became, or its dead letter."""
    # Bytes that are not UTF-8 keep their escapes, which no JSON parser takes: the dead letter says "not JSON".
    raw = body.decode("utf-8", errors="backslashreplace")
    with home.writes:
        checkpoint = home.checkpoints.load(SOURCE)
        start = checkpoint.position if checkpoint is not None else 0
        summary = home.runtime.replay(PostedEvents(start, [raw]))
    run = summary.run
    if run.dead_letters:
        with home.engine.connect() as conn:
            row = conn.execute(select(dead_letter).where(dead_letter.c.source == SOURCE,
                                                         dead_letter.c.position == start)).one()
        return Rejected(source=SOURCE, position=start, where=row.where, reason=row.reason)
    obj: dict[str, Any] = json.loads(raw)
    outcome = ("duplicate" if run.duplicates else "profile" if run.profiles else "response" if run.responses
               else "late" if run.late else "applied")
    return Ingested(source=SOURCE, position=start, outcome=outcome, type=obj.get("type", "purchase"),
                    event_id=obj.get("event_id"), customer_id=obj["customer_id"])


router = APIRouter(tags=["events"])


@router.post("/events", response_model=Ingested, dependencies=[Depends(require_write)],
             responses={**AUTH_RESPONSES, 422: {"model": Rejected, "description": "a dead letter now, and why"}},
             openapi_extra={"requestBody": {"required": True, "description": "One event in the wire format "
                                            "(docs/wire-format.md): a purchase, a profile or an offer response.",
                                            "content": {"application/json": {
                                                "schema": {"type": "object"}, "example": EXAMPLE}}}})
async def post_event(request: Request, home: HomeDep) -> Any:
    """Ingest one event through the path every source takes (decode, validate, apply, line store, checkpoint):
    200 with what became of it, or 422 with the reason it is a dead letter now. Needs the write token."""
    answer = await run_in_threadpool(ingest, home, await request.body())
    if isinstance(answer, Rejected):
        return JSONResponse(answer.model_dump(), status_code=422)
    log.info("api.event", event_id=answer.event_id, customer_id=answer.customer_id, outcome=answer.outcome)
    return answer
