"""The campaign runtime: refits, re-scoring, the due sweep, arbitration, the ledger and delivery as jobs on a clock.

Wiring only, like the embedded runtime it sits beside (as its `ReplayObserver`): the clock is the replay's
watermark, so replaying last year through these jobs is a backtest; live, the same jobs run on the wall clock.
Exactly-once comes from the ledger's idempotency key, not from this loop: a resumed run re-derives the same
candidates, finds their keys recorded, and sends nothing twice. The scheduler's cursors and the serving model
versions are kept with every checkpoint.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, delete

from engine.campaigns.arbitration import arbitrate
from engine.campaigns.audience import matches
from engine.campaigns.candidates import Candidate, CustomerContext, Decision, Verdict, idempotency_key
from engine.campaigns.caps import BudgetBook, CapBook
from engine.campaigns.consent import ConsentBook, ConsentStore
from engine.campaigns.running import CampaignSet, ReloadResult
from engine.campaigns.schema import Campaign, EventTrigger, Schedule, Subscription
from engine.campaigns.suppression import Suppression, erasure_key
from engine.campaigns.triggers import DueIndex, bought_categories, contexts, purchase_candidates
from engine.clock import Clock, zone_info
from engine.config import Settings
from engine.db import delivery_ledger, offer, offer_step, score, score_version, wallet_offer
from engine.delivery.channels import Channel, FileOutbox, channels_from_settings
from engine.delivery.deliver import Deliverer, RetryPolicy
from engine.delivery.ledger import Ledger
from engine.delivery.message import Message
from engine.delivery.render import Renderer
from engine.errors import NudgeError
from engine.events import CustomerProfile, Event, OfferResponse, Purchase
from engine.models.data import from_stores
from engine.models.refit import refit_all
from engine.models.registry import Registry
from engine.models.serving import rescore
from engine.offers.book import OfferBook, reminder_campaign, reminder_occurrence
from engine.pipeline import Outcome, future_dated
from engine.runtime.scheduler import EventTimeScheduler, engine_jobs
from engine.state import CustomerState
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore
from engine.store.scores import ScoreStore

log = structlog.get_logger("nudge.campaigns")

RUNNER_SCHEMA = 1
# The models whose outputs the campaign rules, triggers and templates read; `recommend` and `rules` feed the
# dashboard and cost most of a refit, so a backtest's monthly refit leaves them out unless asked.
CAMPAIGN_MODELS: tuple[str, ...] = ("clv", "segments", "next_purchase", "next_purchase_category", "preference")
REPLAY_GRACE = timedelta(days=366)
STAGES: tuple[str, ...] = ("reload", "refit", "rescore", "sweep", "arbitrate", "ledger", "deliver", "offers")


@dataclass
class RunReport:
    """What the campaign jobs did in one run: fires per job, missed fires, seconds per stage."""

    fires: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    missed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    candidates: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # per campaign, new keys judged
    outranked: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # judged, lost, not recorded
    refits: list[dict[str, Any]] = field(default_factory=list)
    reload_errors: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able values."""
        return {"fires": dict(self.fires), "missed": dict(self.missed),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "candidates": dict(self.candidates), "outranked": dict(self.outranked), "refits": self.refits,
                "reload_errors": self.reload_errors}


RECONFIRM = "consent_reconfirm"


def reconfirm_campaign(settings: Settings) -> Campaign:
    """The built-in two-yearly consent notice: transactional (never held out, needs no advertising consent), by
    email, above every campaign. Its schedule is the daily sweep's; the trigger field is only the contract's."""
    return Campaign(name=RECONFIRM, description="Article 50: every two years, tell customers what they agreed to",
                    kind="transactional", trigger=Schedule(type="schedule", cron=settings.sweep_cron),
                    channel="email", template="consent_reconfirm", language=settings.notice_language,
                    sender=settings.sender_name, priority=1_000_000, holdout=0)


def stored_campaigns(settings: Settings, engine: Engine, directory: Path | None = None) -> dict[str, Campaign]:
    """The set the last run of `directory`'s campaigns (default: settings) left in the database, with the consent
    notice: what the ledger's rows were judged with, though the folder's files may have moved on since."""
    stored = CampaignSet(directory or settings.campaigns_dir, settings.templates_dir, engine).campaigns
    return {**stored, RECONFIRM: reconfirm_campaign(settings)}


class CampaignRuntime:
    """The campaign jobs beside a replay (or a live feed): give it to `EmbeddedRuntime.replay(observer=...)`.

    Nothing happens before `start` but the state being built; at `start` the models are refitted (when they
    have no scores yet), then the jobs run: `refit` (cron, default monthly), `sweep` (cron, default daily:
    re-score the customers whose state changed, reload the campaign files, find what is due, judge it,
    record it, deliver) and `deliver` (cron, default hourly: purchase-triggered candidates and deferred
    messages whose time came).
    """

    def __init__(self, settings: Settings, campaigns: CampaignSet, deliverer: Deliverer, *,
                 start: datetime | None = None, end: datetime | None = None,
                 models: Sequence[str] = CAMPAIGN_MODELS, refit: bool = True,
                 refit_workers: int = 2, control_percent: float | None = None, clock: Clock | None = None) -> None:
        self.settings = settings
        # None: the clock is the events' watermark (a replay); a live clock (WallClock) is advanced by `advance`.
        self.clock = clock
        self.campaign_set = campaigns
        self.deliverer = deliverer
        self.ledger: Ledger = deliverer.ledger
        self.engine = self.ledger.engine
        self.scores = ScoreStore(self.engine)
        self.registry = Registry(settings.models_dir)
        self.consent = ConsentStore(self.engine)
        self.suppression = Suppression(self.engine, lambda: erasure_key(settings))  # customers erased on request
        self.start = start
        self.end = end  # no job runs at or after it (the events still build state)
        self.models = tuple(models)
        self.refit_workers = refit_workers
        self.control_percent = settings.control_percent if control_percent is None else control_percent
        jobs = [job for job in engine_jobs(settings) if (refit and self.models) or job.name != "refit"]
        if clock is None:
            # On the events' clock a fire is seen late only when no purchase came (a shop shut at Christmas), and a
            # resumed replay starts where it stopped: nothing is overdue, so nothing is skipped. Live, the grace
            # stands, so a restore after downtime never fires late.
            jobs = [replace(job, misfire_grace=REPLAY_GRACE) for job in jobs]
        self.scheduler = EventTimeScheduler(jobs, settings.jobs_zone, start)
        self.report = RunReport()
        self.now: datetime | None = None  # the campaign clock: the latest fire time run
        self.watermark: datetime | None = None
        self.started = False
        self.index = DueIndex()
        self.states: dict[str, CustomerState] = {}
        self.profiles: dict[str, CustomerProfile] = {}
        self.dirty: set[str] = set()
        self.touched: dict[str, set[str]] = {}  # customer -> top categories bought since the last re-score
        self.pending: list[Candidate] = []  # purchase-triggered, judged at the next deliver or sweep
        self.last_sweep: datetime | None = None
        self._checkpoint: Callable[[], None] = lambda: None
        self._done: dict[str, Any] = {}
        self._next_fire: datetime | None = None
        self._versions: dict[str, str] = {}
        self._first_basket: dict[str, bool] = {}
        self._event_campaigns: dict[str, Campaign] = {}
        self._consent_changes: list = []
        self._consent_times: list[datetime] = []
        self._consent_book: ConsentBook | None = None
        self._consent_known = -1
        if deliverer.offers is None:
            deliverer.offers = OfferBook(self.engine)
        self.offers: OfferBook = deliverer.offers
        self.caps = CapBook()
        self.budgets = BudgetBook(extra=self.offers.adjustment)
        self.offers.budget_ok = self._budget_room
        self.notice = reconfirm_campaign(settings)
        if deliverer.gate is None:
            deliverer.gate = self._still_consented
        if deliverer.extra is None:
            deliverer.extra = self._template_extra

    @property
    def contexts(self) -> Mapping[str, CustomerContext]:
        """Every known customer's context: the due index's."""
        return self.index.contexts

    # -- the observer protocol -----------------------------------------------------------------------------
    def begin(self, saved: dict | None, states: dict[str, CustomerState], profiles: dict[str, CustomerProfile],
              checkpoint: Callable[[], None]) -> None:
        """Start, or resume from what the last checkpoint kept."""
        self.states, self.profiles, self._checkpoint = states, profiles, checkpoint
        if saved:
            if saved.get("schema") != RUNNER_SCHEMA:
                log.warning("campaigns.runner_schema", saved=saved.get("schema"), expected=RUNNER_SCHEMA)
            self.scheduler.restore(saved["scheduler"])
            self.started = bool(saved.get("started"))
            self.now = _time(saved.get("now"))
            self.watermark = _time(saved.get("watermark"))
            self.last_sweep = _time(saved.get("last_sweep"))
            self.dirty = set(saved.get("dirty", []))
            self.touched = {cid: set(cats) for cid, cats in saved.get("touched", {}).items()}
            self.pending = [Candidate(p["campaign"], p["customer_id"], p["occurrence"], _time(p["at"]),
                                      p.get("reason", ""), p.get("category")) for p in saved.get("pending", [])]
            self._check_models(saved.get("models", {}))
        self._versions = self._serving_versions()
        self._done = self._state()
        self._reload(self.now or datetime.now(UTC))  # the clock is unknown yet: the audit's time
        self._consent_changes = sorted(self.consent.changes(), key=lambda c: c.at)
        self._consent_times = [c.at for c in self._consent_changes]
        if self.started:
            self._rebuild()
        elif self.clock is not None:  # live: what arrives from now on is judged, so the campaigns start now
            now = self.clock.now()
            if self.start is None or now >= self.start:
                self._begin_campaigns(now)

    def before(self, event: Event) -> None:
        """Move the campaign clock to the event's time (unless it will be dead-lettered as future-dated)."""
        if not isinstance(event, Purchase):
            return
        when = event.event_time
        if future_dated(when, self.watermark, self.settings.future_tolerance):
            return
        state = self.states.get(event.customer_id)
        self._first_basket[event.customer_id] = state is None or state.baskets == 0
        if self.clock is not None:  # live: the wall clock moves the jobs, not the events
            return
        if self.watermark is None or when > self.watermark:
            self.watermark = when
            self.advance(when)

    def applied(self, event: Purchase, outcome: Outcome, state: CustomerState) -> None:
        """Mark the customer changed; purchase-triggered campaigns make their candidates now."""
        cid = event.customer_id
        if not self.started:
            return
        self.dirty.add(cid)
        self.touched.setdefault(cid, set()).update(bought_categories(event))
        if cid not in self.contexts:
            self.index.update(cid, CustomerContext(cid, state, self.profiles.get(cid)))
        self.offers.purchase(event)
        if self._event_campaigns:
            self.pending += purchase_candidates(self._event_campaigns, event, state,
                                                self._first_basket.pop(cid, False))

    def responded(self, event: OfferResponse) -> None:
        """A customer's answer to an offer: an accept takes a subscription offer up (kept once by its event id)."""
        held = self.offers.offers.get(event.code)
        if held is None or held.customer_id != event.customer_id:
            log.warning("campaigns.unknown_offer", event_id=event.event_id, code=event.code,
                        customer_id=event.customer_id)
            return
        self.offers.accept(event.code, event.event_time, ref=f"accept:{event.event_id}")

    def saved(self) -> dict:
        """The cursors and clock as of the last completed jobs and the serving model versions, with what the
        events applied so far left for the next jobs (pending candidates, changed customers): the replay resumes
        after those events, so nothing else would make them again. The offer book is written first: what the
        saved events did to the offers is kept once by its step references, so events replayed after a crash
        change nothing twice."""
        self.offers.flush()
        return {**self._done, **self._events_state()}

    # -- the jobs ------------------------------------------------------------------------------------------
    def advance(self, now: datetime) -> None:
        """Run every job whose fire time has come by `now`, in time order; checkpoint after a sweep or refit."""
        if self.end is not None and now >= self.end:
            now = self.end - timedelta(microseconds=1)
        if not self.started:
            if self.start is not None and now < self.start:
                return
            self._begin_campaigns(self.start or now)
        if self.clock is None and self._next_fire is not None and now < self._next_fire:
            return  # nothing is due yet: most purchases of a replay land here, so the cron arithmetic is skipped
        fires = self.scheduler.advance(now)
        want_checkpoint = False
        for fire in fires:
            if fire.missed:
                self.report.missed[fire.job] += 1
                log.warning("campaigns.missed_fire", job=fire.job, at=fire.at.isoformat(), now=now.isoformat())
                continue
            self.report.fires[fire.job] += 1
            self.now = fire.at
            if fire.job == "refit":
                self._refit(fire.at)
                want_checkpoint = True
            elif fire.job == "sweep":
                self._sweep(fire.at)
                want_checkpoint = True
            else:
                self._judge(self._take_pending(), fire.at)
                self._deliver(fire.at)
        if self.clock is not None and not fires:
            # Live, a purchase-triggered message goes at the next poll, not at the next hourly delivery.
            self.now = now
            self._judge(self._take_pending(), now)
            self._deliver(now)
        if fires:
            self._done = self._state()
        self._next_fire = self.scheduler.next_fire()
        if want_checkpoint:
            self._checkpoint()

    def _begin_campaigns(self, at: datetime) -> None:
        self.started = True
        self.now = at
        if self.start is None:  # the jobs' first fires are the first after the campaigns began
            self.scheduler = EventTimeScheduler(self.scheduler.jobs, self.settings.jobs_zone, at)
        self._checkpoint()  # the line store must hold every purchase before `at` for the refit to read
        if self.models and any(s.days for s in self.states.values()):
            self._refit(at, checkpointed=True)  # scores from a later fit would leak the future into a backtest
        else:  # a live engine starting empty: nothing to fit yet, the monthly refit will
            self._rebuild()
        self._done = self._state()

    def _refit(self, at: datetime, checkpointed: bool = False) -> None:
        with self._stage("refit"):
            if not checkpointed:
                self._checkpoint()
            runtime_stores = CheckpointStore(self.engine), LineStore(self.settings.lines_dir, self.engine)
            data, _ = from_stores(*runtime_stores, at, self.settings.policy)
            report = refit_all(data, self.registry, until=at, models=list(self.models), workers=self.refit_workers,
                               scores=self.scores)
            self.report.refits.append({"at": at.isoformat(), "seconds": round(report.total_seconds, 2),
                                       "outcomes": {o.name: o.status for o in report.outcomes}})
            log.info("campaigns.refit", at=at.isoformat(), seconds=round(report.total_seconds, 2),
                     outcomes={o.name: o.status for o in report.outcomes})
        self._versions = self._serving_versions()
        self._rebuild()
        self.dirty, self.touched = set(), {}

    def _rebuild(self) -> None:
        """Index every customer from the scores table (after a refit, or on resume)."""
        with self._stage("rescore"):
            self.index = DueIndex.build(self.scores.frame(), self.states, self.profiles)
        self._books()

    def _books(self) -> None:
        """Caps and budgets as the ledger's decisions up to the campaign clock left them (every job at that moment
        has run): later ones, which a resumed or repeated run finds recorded, are made again when their moment
        comes, and count then."""
        now = self.now
        entries = [e for e in self.ledger.entries() if now is None or e.decided_at <= now]
        campaigns = self.campaign_set.campaigns
        self.caps = CapBook.from_entries(entries, campaigns, self._zone_of)
        self.budgets = BudgetBook.from_entries(entries, campaigns, self.offers.adjustment)

    def _budget_room(self, name: str, face: float) -> bool:
        """Whether the campaign's budget has room for an offer its earlier ones issue (a reward, monthly coupons)."""
        campaign = self.campaign_set.campaigns.get(name)
        return campaign is None or self.budgets.check(campaign, face) is None

    def _zone_of(self, customer_id: str) -> str:
        if customer_id in self.contexts:
            return self.contexts[customer_id].zone
        return CustomerContext(customer_id, self.states.get(customer_id), self.profiles.get(customer_id)).zone

    def _rescore(self, at: datetime) -> None:
        if not self.dirty:
            return
        changed = sorted(self.dirty)
        with self._stage("rescore"):
            rescore(self.scores, self.registry, self.states, changed, at, categories=self.touched)
            frame = self.scores.frame(customer_ids=changed)
            fresh = contexts(frame, {c: self.states[c] for c in changed if c in self.states},
                             {c: self.profiles[c] for c in changed if c in self.profiles})
            for cid, ctx in fresh.items():
                self.index.update(cid, ctx)
        self.dirty, self.touched = set(), {}

    def _sweep(self, at: datetime) -> None:
        with self._stage("reload"):
            result = self._reload(at)
            self.report.reload_errors.update(self.campaign_set.errors)
            if result.changes:  # a changed cap or tag counts the sends again
                self._books()
        self._rescore(at)
        with self._stage("sweep"):
            found = self.index.sweep(self.campaign_set.campaigns, at, since=self.last_sweep)
        self.last_sweep = at
        self._judge(self._take_pending() + found, at)
        self._offers_at(at)
        self._reconfirm(at)
        self._deliver(at)

    def _offers_at(self, at: datetime) -> None:
        """Time moves the offers (expiry, deadlines, subscription months); unused coupons near expiry get their
        reminder, judged like any message under the campaign's caps and consent (no audience, holdout or budget:
        only holders are reminded, and a reminder issues nothing)."""
        with self._stage("offers"):
            self.offers.tick(at)
            running = self.campaign_set.campaigns
            due = [h for h in self.offers.reminders_due(at) if h.campaign in running]
        if not due:
            return
        reminders = {h.campaign: reminder_campaign(running[h.campaign], h) for h in due}
        candidates = [Candidate(h.campaign, h.customer_id, reminder_occurrence(h.code), at,
                                f"coupon {h.code} unused, valid until {h.valid_until.date().isoformat()}",
                                next(iter(h.terms.get("scope", {}).get("categories", [])), None))
                      for h in due]
        self._judge(candidates, at, reminders, audience=False)

    def _reconfirm(self, at: datetime) -> None:
        """Queue the two-yearly consent notice (Article 50) to every customer it has fallen due for; sending it is
        what renews the two years, so the confirmation is recorded with the decision."""
        due = [r for r in self._consent_at(at).reconfirmations_due(at) if r.customer_id in self.contexts]
        if not due:
            return
        name = self.notice.name
        known = self.ledger.known(idempotency_key(name, r.customer_id, r.occurrence) for r in due)
        fresh = [r for r in due if idempotency_key(name, r.customer_id, r.occurrence) not in known]
        candidates = [Candidate(name, r.customer_id, r.occurrence, r.due_at, "two-yearly consent notice")
                      for r in fresh]
        decisions = self._judge(candidates, at, {name: self.notice})
        confirmed = {d.candidate.customer_id for d in decisions if d.verdict is Verdict.QUEUED}
        changes = [c for r in fresh if r.customer_id in confirmed for c in r.confirmed(at)]
        if changes:
            self.consent.record(changes)
            self._consent_changes = sorted([*self._consent_changes, *changes], key=lambda c: c.at)
            self._consent_times = [c.at for c in self._consent_changes]
            self._consent_book = None

    def _still_consented(self, entry: Any, campaign: Campaign, now: datetime) -> str | None:
        """The last look before a queued message goes: an erasure since the decision stops any message, consent
        withdrawn since stops advertising."""
        if entry.customer_id in self.suppression:
            return "customer erased on request: on the suppression list"
        if campaign.kind != "advertising":
            return None
        if self._consent_at(now).granted(entry.customer_id, campaign.channel, "advertising"):
            return None
        return f"advertising consent on {campaign.channel} withdrawn before sending"

    def _template_extra(self, entry: Any, campaign: Campaign, now: datetime) -> Mapping[str, Any] | None:
        if campaign.name != self.notice.name:
            return None
        return {"consent": self._consent_at(now).customer(entry.customer_id)}

    def running(self) -> dict[str, Campaign]:
        """The campaigns delivery and the ledger know: the running set and the consent notice."""
        return {**self.campaign_set.campaigns, self.notice.name: self.notice}

    def _reload(self, at: datetime) -> ReloadResult:
        """Re-read the campaign files; the purchase-triggered ones are picked out here, not at every purchase."""
        result = self.campaign_set.reload(at)
        self._event_campaigns = {n: c for n, c in self.campaign_set.campaigns.items()
                                 if isinstance(c.trigger, EventTrigger)}
        return result

    def _take_pending(self) -> list[Candidate]:
        pending, self.pending = self.pending, []
        return pending

    def _judge(self, candidates: list[Candidate], at: datetime,
               campaigns: Mapping[str, Campaign] | None = None, audience: bool = True) -> list[Decision]:
        if not candidates:
            return []
        campaigns = self.campaign_set.campaigns if campaigns is None else campaigns
        with self._stage("arbitrate"):
            # A key decided before this moment is done (judging it again would count its cap slot twice); one
            # decided at this very moment is this decision made again by a resumed or repeated run, judged again
            # so the others at this moment meet the same competition. The ledger keeps the first record.
            decided = self.ledger.decided(c.key for c in candidates)
            fresh: list[Candidate] = []
            for cand in dict.fromkeys(candidates):  # one candidate per key, first kept
                campaign = campaigns.get(cand.campaign)
                if decided.get(cand.key, at) < at or campaign is None or cand.customer_id not in self.contexts:
                    continue
                if isinstance(campaign.offer, Subscription) and self.offers.subscribed(campaign.name,
                                                                                      cand.customer_id):
                    continue  # offered or subscribed already: no second offer while one is open
                if not audience or matches(campaign.audience, self.contexts[cand.customer_id], at) is None:
                    fresh.append(cand)
            self.suppression.refresh()
            decisions = arbitrate(fresh, campaigns, self.contexts, self._consent_at(at), self.caps, self.budgets,
                                  at, self.campaign_set.paused(), self.control_percent, self.suppression)
        # An outranked candidate is not recorded: its occurrence may still win a later sweep inside its window
        # (a customer due in three categories today gets one message today, not one ever).
        recorded = [d for d in decisions if d.verdict is not Verdict.OUTRANKED]
        with self._stage("ledger"):
            self.ledger.record(recorded, {n: c.channel for n, c in campaigns.items()})
        for d in decisions:
            self.report.candidates[d.candidate.campaign] += 1
            if d.verdict is Verdict.OUTRANKED:
                self.report.outranked[d.candidate.campaign] += 1
        return decisions

    def _consent_at(self, at: datetime) -> ConsentBook:
        """The consent book at `at`, rebuilt only when a recorded change falls between the last one and `at`."""
        known = bisect_right(self._consent_times, at)
        if self._consent_book is None or known != self._consent_known:
            self._consent_book = ConsentBook.of(self._consent_changes[:known], at)
            self._consent_known = known
        return self._consent_book

    def _deliver(self, at: datetime) -> None:
        with self._stage("deliver"):
            self.suppression.refresh()
            self.deliverer.deliver(at, self.contexts.__getitem__, self.running(), paused=self.campaign_set.paused())

    def _check_models(self, saved: Mapping[str, str]) -> None:
        """A resumed run serves the versions its checkpoint recorded; a refit after it is redone, not reused."""
        for name, version in saved.items():
            try:
                active = self.registry.active_version(name).version
            except Exception:
                continue
            if active != version:
                log.info("campaigns.model_moved", model=name, checkpoint=version, active=active)

    def _serving_versions(self) -> dict[str, str]:
        """The serving version of each campaign model (read from the registry after a refit, then kept)."""
        models = {}
        for name in self.models:
            try:
                models[name] = self.registry.active_version(name).version
            except Exception:
                continue
        return models

    def _state(self) -> dict[str, Any]:
        """What the jobs run so far leave (the cursors, the clock, the model versions)."""
        return {"schema": RUNNER_SCHEMA, "scheduler": self.scheduler.state(), "started": self.started,
                "now": _iso(self.now), "last_sweep": _iso(self.last_sweep), "models": dict(self._versions)}

    def _events_state(self) -> dict[str, Any]:
        """What the events applied so far leave for the next jobs."""
        return {
            "watermark": _iso(self.watermark), "dirty": sorted(self.dirty),
            "touched": {cid: sorted(c) for cid, c in sorted(self.touched.items())},
            "pending": [{"campaign": c.campaign, "customer_id": c.customer_id, "occurrence": c.occurrence,
                         "at": c.at.isoformat(), "reason": c.reason, "category": c.category} for c in self.pending],
        }

    def _stage(self, name: str) -> _Timer:
        return _Timer(self.report.seconds, name)


class _Timer:
    def __init__(self, seconds: dict[str, float], name: str) -> None:
        self.seconds, self.name = seconds, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds[self.name] += time.perf_counter() - self.started


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def campaign_table(ledger: Ledger, campaigns: Mapping[str, Campaign],
                   outranked: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Per campaign: the keys the ledger holds and what became of them (the demo's table); `outranked` counts the
    candidates that lost to another campaign at their moment (not recorded: they may win later)."""
    outranked = outranked or {}
    counts = ledger.counts()
    deferred = ledger.deferrals()
    rows = []
    for name in sorted(set(counts) | set(campaigns)):
        by = counts.get(name, {})
        rows.append({
            "campaign": name, "candidates": sum(by.values()) + outranked.get(name, 0),
            "sent": by.get(Verdict.SENT.value, 0), "queued": by.get(Verdict.QUEUED.value, 0),
            "held_out": by.get(Verdict.HELD_OUT.value, 0), "control": by.get(Verdict.CONTROL.value, 0),
            "deferred": sum(deferred.get(name, {}).values()), "capped": by.get(Verdict.CAPPED.value, 0),
            "outranked": outranked.get(name, 0), "over_budget": by.get(Verdict.OVER_BUDGET.value, 0),
            "no_consent": by.get(Verdict.NO_CONSENT.value, 0), "paused": by.get(Verdict.PAUSED.value, 0),
            "aborted": by.get(Verdict.ABORTED.value, 0), "render_error": by.get(Verdict.RENDER_ERROR.value, 0),
            "failed": by.get(Verdict.FAILED.value, 0),
        })
    return rows


def backtest_channels(settings: Settings, engine: Engine) -> dict[str, Channel]:
    """The configured channels; push, email and webhook without an endpoint write to `<home>/outbox/<channel>.jsonl`
    (a backtest's messages are kept, not sent)."""
    channels = channels_from_settings(settings, engine)
    for name in ("push", "email", "webhook"):
        if name not in channels:
            channels[name] = FileOutbox(settings.home / "outbox" / f"{name}.jsonl")
    return channels


def reset_campaigns(settings: Settings, engine: Engine) -> None:
    """Forget what a previous run decided and scored (a fresh backtest): the ledger, wallet, scores, outboxes."""
    with engine.begin() as conn:
        for table in (delivery_ledger, wallet_offer, score, score_version, offer, offer_step):
            conn.execute(delete(table))
    for path in [settings.outbox_file, *(settings.home / "outbox").glob("*.jsonl")]:
        path.unlink(missing_ok=True)


def open_campaigns(settings: Settings, engine: Engine, *, start: datetime | None,
                   directory: Path | None = None, channels: Mapping[str, Channel] | None = None,
                   **options: Any) -> CampaignRuntime:
    """A campaign runtime on the engine's database with the campaign files of `directory` (default: settings)."""
    campaign_set = CampaignSet(directory or settings.campaigns_dir, settings.templates_dir, engine)
    deliverer = Deliverer(Ledger(engine), Renderer.from_settings(settings),
                          channels if channels is not None else backtest_channels(settings, engine), engine,
                          RetryPolicy.from_settings(settings))
    return CampaignRuntime(settings, campaign_set, deliverer, start=start, **options)


@dataclass(frozen=True)
class Preview:
    """A rendered message and what the engine would say of sending it."""

    message: Message
    checks: list[tuple[str, str]]


def preview_message(settings: Settings, runtime: Any, name: str, customer_id: str, now: datetime,
                    directory: Path | None = None) -> Preview:
    """Render campaign `name` for one customer at `now`, with the audience, trigger, holdout and consent verdicts."""
    from engine.campaigns.consent import ConsentStore
    from engine.campaigns.files import load_campaign
    from engine.campaigns.holdout import held_out, in_control
    from engine.campaigns.triggers import due
    from engine.offers.issue import issue_offer

    folder = directory or settings.campaigns_dir
    campaign = load_campaign(folder / f"{name}.yaml")
    states = runtime.checkpoints.load_states()
    if customer_id not in states:
        raise NudgeError(f"no customer {customer_id!r} in the engine's state ({len(states):,} customers)")
    profiles = runtime.checkpoints.load_profiles()
    frame = ScoreStore(runtime.engine).frame(customer_ids=[customer_id])
    ctx = contexts(frame, {customer_id: states[customer_id]},
                   {customer_id: profiles[customer_id]} if customer_id in profiles else {})[customer_id]
    found = due({name: campaign}, ctx, now)
    candidate = found[0] if found else Candidate(name, customer_id, f"preview@{now.date().isoformat()}", now,
                                                 "preview")
    local = now.astimezone(zone_info(ctx.zone))
    consent = ConsentStore(runtime.engine).book(now).allows(customer_id, campaign.channel, campaign.kind, local)
    checks = [
        ("audience", matches(campaign.audience, ctx, now) or "matches"),
        ("trigger", f"due: {candidate.reason} ({candidate.occurrence})" if found else "not due at this time"),
        ("holdout", "held out (never messaged)" if held_out(campaign, customer_id) else "treated"),
        ("control", "in the global control group (no advertising)"
         if campaign.kind == "advertising" and in_control(customer_id, settings.control_percent) else "no"),
        ("consent", consent or f"allowed on {campaign.channel}"),
        ("key", candidate.key),
    ]
    offer = issue_offer(campaign, ctx, candidate.key, now, candidate.category)
    message = Renderer.from_settings(settings).render(campaign, ctx, offer, candidate, now)
    return Preview(message, checks)
