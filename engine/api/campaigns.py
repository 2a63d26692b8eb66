"""Campaigns: the running set, each one's report, a dry run, validation of a file, and the kill switch."""

from __future__ import annotations

import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from engine import queries
from engine.api.deps import AUTH_RESPONSES, HomeDep, Problem
from engine.api.home import Home
from engine.api.security import require_read, require_write
from engine.campaigns.candidates import Candidate
from engine.campaigns.files import check_campaign, load_campaign
from engine.campaigns.schema import Campaign
from engine.errors import CampaignError, NudgeError
from engine.runtime.campaigns import RECONFIRM, preview_message

router = APIRouter(tags=["campaigns"])
NOT_FOUND = {404: {"model": Problem, "description": "no such campaign"}}
EARLIEST, LATEST = datetime(1970, 1, 2, tzinfo=UTC), datetime(2149, 6, 1, tzinfo=UTC)


def _known(home: Home, name: str) -> dict[str, Campaign]:
    """The running set; 404 unless `name` runs or the ledger holds rows of it."""
    running = home.running()
    if name not in running and name not in {e.campaign for e in home.entries()}:
        raise HTTPException(404, f"no campaign {name!r} (campaigns: {', '.join(sorted(running)) or 'none'})")
    return running


@router.get("/campaigns", response_model=list[queries.CampaignSummary])
def campaigns(home: HomeDep) -> list[queries.CampaignSummary]:
    """Every campaign of the running set (and the consent notice, and any retired one the ledger remembers): what
    it is, whether it is paused, what it sent and held out."""
    return queries.campaign_list(home.engine, home.running(), home.campaign_set().paused())


@router.get("/campaigns/{name}/report", response_model=queries.CampaignReport, responses=NOT_FOUND)
def campaign_report(name: str, home: HomeDep) -> queries.CampaignReport:
    """One campaign's report: sent and held out, conversions by day, uplift with its 95 % interval (an A/A check
    in a backtest), net incremental revenue (null when the uplift is not measurable)."""
    running = _known(home, name)
    return queries.campaign_report(home.report(), name, running.get(name))


class CustomerPreview(BaseModel):
    """One customer's message as `nudge preview` renders it, and what each rule says of sending it."""

    customer_id: str
    checks: dict[str, str]
    title: str
    body: str


class PreviewAnswer(queries.CampaignDryRun):
    """The dry run, and with `customer_id` that customer's rendered message."""

    customer: CustomerPreview | None = None


@router.get("/campaigns/{name}/preview", response_model=PreviewAnswer, dependencies=[Depends(require_read)],
            responses={**AUTH_RESPONSES, **NOT_FOUND, 422: {"model": Problem}})
def campaign_preview(name: str, home: HomeDep,
                     at: Annotated[datetime | None, Query(description="Event time (default: the watermark); "
                                                                      "without an offset, UTC.")] = None,
                     customer_id: Annotated[str | None, Query(description="Also render this customer's message.")]
                     = None,
                     limit: Annotated[int, Query(ge=0, le=500, description="Decisions shown in the sample.")] = 50,
                     ) -> PreviewAnswer:
    """A dry run at `at`: who the campaign would message now and what, and why the others are left out (audience,
    consent, quiet hours and the night, caps, budget, holdout, control group, pause, erasure). Nothing is
    recorded or sent. Needs the read token."""
    now = at or home.watermark()
    if now is None:
        raise HTTPException(409, "nothing was replayed into this engine home: give `at`")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if not EARLIEST <= now <= LATEST:
        raise HTTPException(422, f"at {now.isoformat()}: outside the days a state holds (1970 to 2149)")
    running = home.running()
    campaign = running.get(name) or _from_file(home, name)
    home.suppression.refresh()
    consent = home.consent.book(now)
    states = home.states()
    found = None
    if name == RECONFIRM:  # the notice's trigger is only its schedule: who is owed it is the consent book's to say
        found = [Candidate(name, r.customer_id, r.occurrence, r.due_at, "two-yearly consent notice")
                 for r in consent.reconfirmations_due(now) if r.customer_id in states]
    dry = queries.campaign_dry_run(
        campaign, running, states, home.profiles(), home.score_frame(), home.entries(), consent, home.offers(), now,
        paused=home.campaign_set().paused(), control_percent=home.settings.control_percent,
        suppressed=home.suppression, limit=limit, found=found)
    shown = None
    if customer_id is not None:
        try:
            one = preview_message(home.settings, home.runtime, name, customer_id, now, home.campaign_folder())
        except CampaignError as exc:
            raise HTTPException(422, str(exc)) from None
        except NudgeError as exc:
            raise HTTPException(404 if "no customer" in str(exc) else 422, str(exc)) from None
        shown = CustomerPreview(customer_id=customer_id, checks=dict(one.checks), title=one.message.title,
                                body=one.message.body)
    return PreviewAnswer(**dry.model_dump(), customer=shown)


def _from_file(home: Home, name: str) -> Campaign:
    """A campaign not running yet, from its file in the folder; 404 without one, 422 when it is invalid."""
    path = home.campaign_folder() / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name) or not path.is_file():
        raise HTTPException(404, f"no campaign {name!r} running or in {home.campaign_folder()}")
    try:
        return load_campaign(path)
    except CampaignError as exc:
        raise HTTPException(422, str(exc)) from None


class Validated(BaseModel):
    """A valid campaign file: what it declares."""

    valid: bool
    name: str
    kind: str
    trigger: str
    channel: str
    offer: str | None
    template: str


class Invalid(BaseModel):
    """An invalid campaign file: each problem with its line, field location and message."""

    detail: list[dict[str, Any]]


_PROBLEM = re.compile(r"^(?P<file>[^:]*):(?P<line>\d+): (?P<field>[^:]+): (?P<msg>.*)$", re.S)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$")


@router.post("/campaigns/validate", response_model=Validated, dependencies=[Depends(require_write)],
             responses={**AUTH_RESPONSES, 422: {"model": Invalid, "description": "the problems, each with its line "
                                                                                 "and field"}},
             openapi_extra={"requestBody": {"required": True, "description": "A campaign file (YAML).", "content": {
                 "text/plain": {"schema": {"type": "string"}},
                 "application/yaml": {"schema": {"type": "string"}}}}})
async def validate(request: Request, home: HomeDep) -> Any:
    """Check a campaign file as `nudge campaigns check` does (schema, then its template in the templates folder):
    200 with what it declares, or 422 listing every problem as {loc, line, msg}. Needs the write token."""
    text = (await request.body()).decode("utf-8", errors="replace")
    try:
        declared = yaml.safe_load(text)
    except yaml.YAMLError:
        declared = None
    name = declared.get("name") if isinstance(declared, dict) else None
    stem = name if isinstance(name, str) and _NAME.match(name) else "campaign"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{stem}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            campaign = check_campaign(path, home.settings.templates_dir)
        except CampaignError as exc:
            return JSONResponse({"detail": [_problem(line, f"{folder}/") for line in exc.lines]}, status_code=422)
    return Validated(valid=True, name=campaign.name, kind=campaign.kind, trigger=campaign.trigger.type,
                     channel=campaign.channel, offer=campaign.offer.type if campaign.offer else None,
                     template=campaign.template)


def _problem(line: str, folder: str) -> dict[str, Any]:
    """One "<file>:<line>: <field.path>: <problem>" line as {loc, line, msg, text} (the file's folder left out)."""
    shown = line.replace(folder, "")
    found = _PROBLEM.match(shown)
    if found is None:
        return {"loc": [], "line": None, "msg": shown, "text": shown}
    loc: list[str | int] = [int(p[1:-1]) if p.startswith("[") else p
                            for p in re.findall(r"\[\d+\]|[^.\[\]]+", found["field"])]
    return {"loc": loc, "line": int(found["line"]), "msg": found["msg"], "text": shown}


class PauseRequest(BaseModel):
    """Why the campaign stops (kept in the audit), and who stops it."""

    reason: str = Field(min_length=1, examples=["creative under review"])
    by: str | None = Field(default=None, description="who pauses (default: api)")


class Switched(BaseModel):
    """The kill switch's position after the request, and whether the request moved it."""

    name: str
    paused: bool
    changed: bool


@router.post("/campaigns/{name}/pause", response_model=Switched, dependencies=[Depends(require_write)],
             responses={**AUTH_RESPONSES, **NOT_FOUND})
def pause(name: str, request: PauseRequest, home: HomeDep) -> Switched:
    """Kill switch: the campaign sends nothing more from now on, queued messages included (the engine reads the
    switch at its next decision). Needs the write token."""
    try:
        changed = home.campaign_set().pause(name, request.by or "api", request.reason, datetime.now(UTC))
    except CampaignError as exc:
        raise HTTPException(404, str(exc)) from None
    return Switched(name=name, paused=True, changed=changed)


@router.post("/campaigns/{name}/resume", response_model=Switched, dependencies=[Depends(require_write)],
             responses={**AUTH_RESPONSES, **NOT_FOUND})
def resume(name: str, home: HomeDep, by: Annotated[str | None, Query(description="who resumes")] = None) -> Switched:
    """Undo a pause; what the campaign already sent is never sent again. Needs the write token."""
    try:
        changed = home.campaign_set().resume(name, by or "api", datetime.now(UTC))
    except CampaignError as exc:
        raise HTTPException(404, str(exc)) from None
    return Switched(name=name, paused=False, changed=changed)
