"""Customers: the 360 view, erasure on request, and the segments they fall in."""

from __future__ import annotations

import structlog
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from engine import queries
from engine.api.deps import AUTH_RESPONSES, HomeDep, Problem
from engine.api.security import require_read, require_write
from engine.erasure import erase_customer
from engine.errors import NudgeError

router = APIRouter(tags=["customers"])
log = structlog.get_logger("nudge.api")


@router.get("/customers/{customer_id}", response_model=queries.CustomerDetail,
            dependencies=[Depends(require_read)], responses={**AUTH_RESPONSES, 404: {"model": Problem}})
def customer(customer_id: str, home: HomeDep) -> queries.CustomerDetail:
    """One customer on one screen: LRFMV state at the watermark, segment and grade, CLV and P(alive), next
    purchase dates per category with their ranges, recommendations, preferences, offers held (stamp missions,
    subscription tier), consent in effect. Needs the read token."""
    state = home.checkpoints.load_state(customer_id)
    view = queries.customer_view(home.scores, customer_id)
    book = home.offers()
    held = book.of_customer(customer_id)
    if state is None and not view.versions and not held:
        raise HTTPException(404, f"no customer {customer_id!r} in the engine's state, scores or offers")
    now = home.watermark()
    return queries.customer_detail(view, state, held, book.steps(customer_id=customer_id),
                                   queries.consent_view(home.consent, customer_id, now), now)


class Erased(BaseModel):
    """What an erasure removed and re-keyed; the id itself is not repeated."""

    erased: bool
    token: str  # what the id became in the ledger, the offers and the consent history
    removed: dict[str, int]  # rows deleted per store (lines: purchases)
    tokenized: dict[str, int]  # rows kept under the token per store
    aborted: int  # queued messages that will not go


@router.delete("/customers/{customer_id}", response_model=Erased, dependencies=[Depends(require_write)],
               responses={**AUTH_RESPONSES, 404: {"model": Problem}})
def erase(customer_id: str, home: HomeDep) -> Erased:
    """Erase a customer on request: state, profile, scores, stored lines and dead letters go; the ledger, offers and
    consent history keep their rows under a one-way token; the token stays on the suppression list, so the
    customer is never messaged again. Needs the write token."""
    with home.writes:
        try:
            erasure = erase_customer(home.engine, home.lines, home.suppression, customer_id)
        except NudgeError as exc:
            raise HTTPException(404, str(exc)) from None
    log.info("api.erased", token=erasure.token, **{f"removed_{k}": v for k, v in erasure.removed.items()})
    return Erased(erased=True, **erasure.to_dict())


@router.get("/segments", response_model=queries.SegmentsView)
def segments(home: HomeDep) -> queries.SegmentsView:
    """Every segment's size, LRFMV profile and CLV distribution, and the cohort table of CLV by first-purchase
    month (sizes sum to the customers in state; customers without a segment score are "unsegmented")."""
    return home.cached("segments", lambda: queries.segments_view(home.states(), home.score_frame(),
                                                                 home.watermark()))
