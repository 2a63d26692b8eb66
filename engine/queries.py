"""Read models: what the engine answers about itself, as pydantic models the CLI and the API render.

Each function reads the engine's stores (or the model registry) and returns plain validated data; none
writes. One customer's scores are `customer_view` (a `CustomerView`, read from the scores table). Times
serialize as ISO 8601 with their offset (`2017-10-01T00:00:00+00:00`).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Collection, Container, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pydantic import BaseModel
from sqlalchemy import Engine, func, select

from engine.campaigns.candidates import Verdict
from engine.campaigns.consent import ConsentBook, ConsentStore
from engine.campaigns.schema import Campaign
from engine.db import dead_letter, delivery_ledger, store_meta, suppression, upsert
from engine.deadletters import list_dead_letters
from engine.delivery.ledger import Ledger
from engine.errors import NudgeError
from engine.models.registry import Registry, Version
from engine.models.serving import CustomerView, customer_view
from engine.moments import Moment
from engine.offers.book import REMINDER, OfferBook
from engine.offers.lifecycle import Held
from engine.state import CustomerState
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore
from engine.summary import LRFMV, population_summary

__all__ = ["CampaignDryRun", "CampaignReport", "CampaignSummary", "ConsentView", "CustomerDetail", "CustomerView",
           "DeadLetterView", "ModelVersion", "OfferView", "Overview", "PopulationSummary", "ReplayStatus",
           "SegmentsView", "backtest_report", "campaign_dry_run", "campaign_list", "campaign_report", "consent_view",
           "customer_detail", "customer_view", "dead_letters", "last_run", "model_versions", "offer_view", "overview",
           "population", "remember_run", "replay_status", "segments_view"]


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


# --- offers, consent and the customer 360 (what `nudge customer`, `nudge consent show` and the API show) ----------
class OfferView(BaseModel):
    """An offer a customer holds, as `nudge customer` shows it; `progress` says in words how far it has come."""

    code: str
    kind: str
    campaign: str
    status: str
    issued_at: Moment
    valid_until: Moment
    face_value: float
    cost: float
    currency: str
    parent: str | None
    progress: str


def offer_view(held: Held) -> OfferView:
    """One held offer as `nudge customer` and the API show it."""
    progress = held.progress
    if held.kind == "stamp_mission":
        state = f"{len(progress.get('stamps', []))}/{held.terms.get('stamps')} stamps in " \
                f"{', '.join(progress.get('categories', [])) or '-'} (round {progress.get('round', 1)})"
    elif held.kind == "subscription":
        state = f"tier {progress.get('tier') or '-'}" if held.status in ("active", "churned") else \
            f"offered at tier {progress.get('offered_tier') or '-'}, {progress.get('offer_spend', 0):g} spent since"
    else:
        state = progress.get("discount", "")
    return OfferView(code=held.code, kind=held.kind, campaign=held.campaign, status=held.status,
                     issued_at=held.issued_at, valid_until=held.valid_until, face_value=held.face_value,
                     cost=held.cost, currency=held.currency, parent=held.parent, progress=state)


class MissionProgress(BaseModel):
    """A stamp mission's progress: stamps earned of those needed, where, which round."""

    code: str
    campaign: str
    status: str
    stamps: int
    needed: int | None
    categories: list[str]
    round: int
    valid_until: Moment


class SubscriptionView(BaseModel):
    """A customer's subscription: offered, active or churned, and its tier."""

    code: str
    campaign: str
    status: str
    tier: str | None
    offered_tier: str | None
    issued_at: Moment


class ConsentInEffect(BaseModel):
    """One purpose on one channel as it stands: granted or withdrawn, since when, from which source."""

    channel: str
    purpose: str
    granted: bool
    since: Moment
    source: str


class ConsentChangeView(BaseModel):
    """One recorded consent change."""

    channel: str
    purpose: str
    granted: bool
    at: Moment
    source: str


class ConsentView(BaseModel):
    """A customer's consent in effect at `at`, when the two-yearly notice falls due, and every change recorded."""

    customer_id: str
    at: Moment
    in_effect: list[ConsentInEffect]
    reconfirmation_due: Moment | None
    history: list[ConsentChangeView]


def consent_view(store: ConsentStore, customer_id: str, at: datetime | None = None) -> ConsentView | None:
    """The customer's consent at `at` (default: their last change, on event time, never the wall clock); None
    when nothing is recorded for them."""
    history = store.changes(customer_id)
    if not history:
        return None
    now = at or history[-1].at
    book = ConsentBook.of(history, now)
    return ConsentView(
        customer_id=customer_id, at=now,
        in_effect=[ConsentInEffect(channel=c.channel, purpose=c.purpose, granted=c.granted, since=c.at,
                                   source=c.source) for c in book.customer(customer_id)],
        reconfirmation_due=book.reconfirmation_due_at(customer_id),
        history=[ConsentChangeView(channel=c.channel, purpose=c.purpose, granted=c.granted, at=c.at, source=c.source)
                 for c in history])


class CategoryFigures(BaseModel):
    """A customer's state in one top category: spend, baskets, purchase days and the gaps between them."""

    category: str
    spend: float
    baskets: int
    purchase_days: int
    last_day: date | None
    gap_mean: float | None
    gap_var: float | None


class NextPurchase(BaseModel):
    """A predicted next purchase date in one top category, with its likely range (ISO dates)."""

    category: str
    date: str | None
    low: str | None
    high: str | None


CLV_SHOWN = "clv_12m"  # the CLV a screen shows; every horizon is in `clv_horizons`


class CustomerDetail(BaseModel):
    """One customer on one screen (the API's customer 360): state at the watermark, what the models say, the
    offers held and the consent in effect. Ids only: the profile's attributes are never shown."""

    customer_id: str
    watermark: Moment | None
    state: dict[str, float | int | None]  # LRFMV at the watermark (CustomerState.lrfmv); {} without a state
    first_purchase: Moment | None
    last_purchase: Moment | None
    events: int
    categories: list[CategoryFigures]
    segment: str | None
    grade: str | None
    clv: float | None  # clv_12m
    p_alive: float | None
    clv_horizons: dict[str, float]  # every clv output: expected_purchases, p_alive, spend_per_day, clv_<n>m
    next_purchase: list[NextPurchase]  # per top category
    next_purchase_any: dict[str, str] | None  # the customer-level date, low, high
    recommendations: list[str]
    explore: list[str]
    recommended_categories: list[str]
    cross_sell: list[str]
    preferences: dict[str, int]  # top category -> 0..5
    offers: list[OfferView]
    missions: list[MissionProgress]
    subscription: SubscriptionView | None
    points: float  # earned with the subscription
    fees: float  # subscription fees charged
    consent: ConsentView | None
    scored_at: Moment | None
    versions: dict[str, str]
    missing: dict[str, str]


def customer_detail(view: CustomerView, state: CustomerState | None, held: Sequence[Held], steps: Sequence[Any],
                    consent: ConsentView | None, now: datetime | None) -> CustomerDetail:
    """The customer 360 from its parts: the scores (`customer_view`), the state, the offers held and their steps
    (`OfferBook.of_customer`, `OfferBook.steps`), and the consent (`consent_view`)."""
    categories = [] if state is None else [
        CategoryFigures(category=name, spend=c.spend / 100, baskets=c.baskets, purchase_days=c.purchase_days,
                        last_day=c.last_day, gap_mean=c.gap_mean, gap_var=c.gap_var)
        for name, c in sorted(state.categories.items(), key=lambda kv: (-kv[1].spend, kv[0]))]
    dates = [NextPurchase(category=c["category"], **{k: c["next_purchase"].get(k) for k in ("date", "low", "high")})
             for c in view.categories if c.get("next_purchase")]
    missions = [MissionProgress(code=h.code, campaign=h.campaign, status=h.status,
                                stamps=len(h.progress.get("stamps", [])), needed=h.terms.get("stamps"),
                                categories=list(h.progress.get("categories", [])), round=h.progress.get("round", 1),
                                valid_until=h.valid_until)
                for h in held if h.kind == "stamp_mission"]
    subscriptions = [SubscriptionView(code=h.code, campaign=h.campaign, status=h.status, tier=h.progress.get("tier"),
                                      offered_tier=h.progress.get("offered_tier"), issued_at=h.issued_at)
                     for h in held if h.kind == "subscription"]
    return CustomerDetail(
        customer_id=view.customer_id, watermark=now,
        state=state.lrfmv(now) if state is not None and now is not None else {},
        first_purchase=state.first_purchase if state else None, last_purchase=state.last_purchase if state else None,
        events=state.events if state else 0, categories=categories,
        segment=view.segment, grade=view.grade, clv=view.clv.get(CLV_SHOWN), p_alive=view.clv.get("p_alive"),
        clv_horizons=view.clv, next_purchase=dates, next_purchase_any=view.next_purchase,
        recommendations=view.recommended, explore=view.explore, recommended_categories=view.recommended_categories,
        cross_sell=view.cross_sell,
        preferences={c["category"]: c["preference"] for c in view.categories if "preference" in c},
        offers=[offer_view(h) for h in held], missions=missions,
        subscription=subscriptions[-1] if subscriptions else None,
        points=round(sum(s.amount for s in steps if s.kind == "points"), 2),
        fees=round(sum(s.amount for s in steps if s.kind == "fee"), 2),
        consent=consent, scored_at=view.as_of, versions=view.versions, missing=view.missing)


# --- segments -----------------------------------------------------------------------------------------------------
UNSEGMENTED = "unsegmented"  # customers with a state and no segment score (no purchase day, or not scored yet)


class ClvDistribution(BaseModel):
    """Quartiles and mean of clv_12m over the customers who have one."""

    customers: int
    mean: float | None
    p25: float | None
    p50: float | None
    p75: float | None


class SegmentView(BaseModel):
    """One segment: its size, the mean of each LRFMV figure at the watermark, its CLV and grades."""

    name: str
    size: int
    share: float
    lrfmv: dict[str, float | None]
    clv: ClvDistribution
    grades: dict[str, int]


class CohortView(BaseModel):
    """Customers by the month of their first purchase (UTC): how many, their mean clv_12m and mean spend so far."""

    month: str
    customers: int
    clv_mean: float | None
    clv_customers: int
    monetary_mean: float


class SegmentsView(BaseModel):
    """Every segment (sizes sum to the customers in state) and the cohort table of CLV by first-purchase month."""

    customers: int
    watermark: Moment | None
    segments_version: str | None
    clv_version: str | None
    segments: list[SegmentView]
    cohorts: list[CohortView]


def segments_view(states: Mapping[str, CustomerState], scores: pd.DataFrame, now: datetime | None) -> SegmentsView:
    """Segments and cohorts from the states and the scores table's rows (`ScoreStore.frame()`)."""
    level = scores[scores["category"] == ""] if len(scores) else scores
    segment = _output(level, "segment")
    grade = _output(level, "grade")
    clv = {cid: float(v) for cid, v in _output(level, CLV_SHOWN).items()}
    members: dict[str, list[str]] = defaultdict(list)
    for cid in sorted(states):
        members[segment.get(cid, UNSEGMENTED)].append(cid)
    total = len(states)
    segments = []
    for name in sorted(members, key=lambda n: (n == UNSEGMENTED, -len(members[n]), n)):
        ids = members[name]
        rows = [states[c].lrfmv(now) for c in ids if now is not None and states[c].baskets]
        lrfmv = {f: _mean([r[f] for r in rows if r[f] is not None]) for f in LRFMV}
        segments.append(SegmentView(name=name, size=len(ids), share=len(ids) / total if total else 0.0, lrfmv=lrfmv,
                                    clv=_distribution([clv[c] for c in ids if c in clv]),
                                    grades=dict(sorted(Counter(grade[c] for c in ids if c in grade).items()))))
    cohorts: dict[str, list[str]] = defaultdict(list)
    for cid in sorted(states):
        first = states[cid].first_purchase
        if first is not None:
            cohorts[first.strftime("%Y-%m")].append(cid)
    table = [CohortView(month=month, customers=len(ids), clv_mean=_mean([clv[c] for c in ids if c in clv]),
                        clv_customers=sum(c in clv for c in ids),
                        monetary_mean=float(np.mean([states[c].monetary for c in ids])))
             for month, ids in sorted(cohorts.items())]
    versions = {m: v for m, v in zip(scores["model"], scores["version"], strict=True)} if len(scores) else {}
    return SegmentsView(customers=total, watermark=now, segments_version=versions.get("segments"),
                        clv_version=versions.get("clv"), segments=segments, cohorts=table)


def _output(level: pd.DataFrame, name: str) -> dict[str, Any]:
    rows = level[level["output"] == name] if len(level) else level
    return dict(zip(rows["customer_id"], rows["value"], strict=True)) if len(rows) else {}


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _distribution(values: Sequence[float]) -> ClvDistribution:
    if not values:
        return ClvDistribution(customers=0, mean=None, p25=None, p50=None, p75=None)
    p25, p50, p75 = (float(q) for q in np.quantile(np.asarray(values, dtype=float), (0.25, 0.5, 0.75)))
    return ClvDistribution(customers=len(values), mean=float(np.mean(values)), p25=p25, p50=p50, p75=p75)


# --- the overview and the campaigns ------------------------------------------------------------------------------
class HourCount(BaseModel):
    """Purchases accepted with an event time in one hour."""

    hour: Moment
    events: int


class Overview(BaseModel):
    """The engine at a glance: customers, revenue, purchases per hour up to the watermark, dead letters, sends."""

    customers: int
    buyers: int
    revenue: float
    watermark: Moment | None
    events_per_hour: list[HourCount]
    dead_letters: int
    sends: dict[str, int]  # ledger rows by verdict over every campaign ("sent" always present)
    erased: int  # customers on the suppression list


def overview(states: Mapping[str, CustomerState], watermark: datetime | None, lines: LineStore, engine: Engine,
             hours: int = 48) -> Overview:
    """The overview at the watermark; `events_per_hour` covers the `hours` up to it, every hour listed."""
    with engine.connect() as conn:
        letters = conn.execute(select(func.count()).select_from(dead_letter)).scalar_one()
        erased = conn.execute(select(func.count()).select_from(suppression)).scalar_one()
        verdicts = dict(conn.execute(select(delivery_ledger.c.verdict, func.count())
                                     .group_by(delivery_ledger.c.verdict)).all())
    return Overview(customers=len(states), buyers=sum(1 for s in states.values() if s.baskets),
                    revenue=sum(s.spend for s in states.values()) / 100, watermark=watermark,
                    events_per_hour=events_per_hour(lines, watermark, hours), dead_letters=letters,
                    sends={"sent": 0, **dict(sorted(verdicts.items()))}, erased=erased)


def events_per_hour(lines: LineStore, until: datetime | None, hours: int) -> list[HourCount]:
    """Purchases in the line store per hour (UTC) over the `hours` ending with the hour of `until`."""
    if until is None or hours <= 0:
        return []
    last = until.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first = last - timedelta(hours=hours - 1)
    counts: Counter = Counter()
    for part in lines.parts():
        if part.last_time < first:
            continue
        path = lines.path(part.seq)
        if not path.is_file():  # a part retention or a crash took: `nudge status` says so, the overview reads on
            continue
        times = pq.read_table(path, columns=["event_time"]).column("event_time")
        for when in times.to_pylist():
            hour = when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            if first <= hour <= last:
                counts[hour] += 1
    return [HourCount(hour=first + timedelta(hours=i), events=counts[first + timedelta(hours=i)])
            for i in range(hours)]


class CampaignSummary(BaseModel):
    """A campaign of the running set (or one the ledger still holds rows of): what it is and what it sent."""

    name: str
    kind: str | None
    channel: str | None
    trigger: str | None
    offer: str | None
    priority: int | None
    description: str | None
    paused: bool
    running: bool  # in the running set (False: retired, only its ledger rows remain)
    sent: int  # messages sent, reminders left out (as the report counts them)
    reminders: int  # coupon reminders sent
    held_out: int
    verdicts: dict[str, int]  # ledger rows by verdict, reminders included


def campaign_list(engine: Engine, running: Mapping[str, Campaign], paused: Collection[str]) -> list[CampaignSummary]:
    """Every running campaign and every campaign with ledger rows, by name."""
    t = delivery_ledger.c
    reminder = t.occurrence.like(f"{REMINDER}%")
    with engine.connect() as conn:
        rows = conn.execute(select(t.campaign, t.verdict, reminder.label("reminder"), func.count())
                            .group_by(t.campaign, t.verdict, reminder)).all()
    verdicts: dict[str, Counter] = defaultdict(Counter)
    reminders: Counter = Counter()
    for name, verdict, is_reminder, n in rows:
        verdicts[name][verdict] += n
        if is_reminder and verdict == Verdict.SENT.value:
            reminders[name] += n
    out = []
    for name in sorted(set(running) | set(verdicts)):
        c, by = running.get(name), verdicts.get(name, Counter())
        out.append(CampaignSummary(
            name=name, kind=c.kind if c else None, channel=c.channel if c else None,
            trigger=c.trigger.type if c else None, offer=c.offer.type if c and c.offer else None,
            priority=c.priority if c else None, description=c.description if c else None, paused=name in paused,
            running=c is not None, sent=by[Verdict.SENT.value] - reminders[name], reminders=reminders[name],
            held_out=by[Verdict.HELD_OUT.value], verdicts=dict(sorted(by.items()))))
    return out


REPORT_RUN = "report:run"  # store_meta: what the last campaign run covered, for the report's title and period


def remember_run(engine: Engine, run: dict) -> None:
    """Keep what a campaign run covered (source, from, until, backtest, campaign folder) for its report."""
    with engine.begin() as conn:
        conn.execute(upsert(engine, store_meta, "key"), [{"key": REPORT_RUN, "value": json.dumps(run)}])


def last_run(engine: Engine) -> dict | None:
    """What the last campaign run covered (`remember_run`), if one ran."""
    with engine.connect() as conn:
        row = conn.execute(select(store_meta.c.value).where(store_meta.c.key == REPORT_RUN)).first()
    return None if row is None else json.loads(row.value)


def backtest_report(engine: Engine, lines: LineStore, running: Mapping[str, Campaign], run: dict | None) -> dict:
    """The campaign run's report (`engine.report.build.build_report`) over the ledger, offers and line store, titled
    by what the run covered; `running` is the set the run judged with (the consent notice included)."""
    from engine.models.data import line_frame
    from engine.report.build import build_report

    run = run or {}
    period = (_iso_time(run.get("from")), _iso_time(run.get("until")))
    what = "backtest" if run.get("backtest", True) else "live run"
    span = " to ".join(d.date().isoformat() for d in period if d is not None)
    title = f"nudge {what} — {run.get('source', 'events')}" + (f", {span}" if span else "")
    return build_report(Ledger(engine).entries(), OfferBook(engine), line_frame(lines.read()), running, title=title,
                        period=period, backtest=run.get("backtest", True))


def _iso_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class Uplift(BaseModel):
    """Treated against held-out conversion: the difference and its 95 % interval (None when not measurable)."""

    value: float | None
    low: float | None
    high: float | None
    measurable: bool
    reason: str | None
    contains_zero: bool | None


class ConversionDay(BaseModel):
    """Conversions by the day of the (would-be) send: treated, and held out (`control`, also `held_out`)."""

    day: str
    treated: int
    control: int
    held_out: int


class CampaignReport(BaseModel):
    """One campaign's part of the report: sent and held out, conversions over time, uplift, net revenue (None when
    the uplift is not measurable); `row` is the report's whole row for the campaign."""

    name: str
    kind: str | None
    offer: str | None
    sent: int
    reminders: int
    held_out: int
    conversions: list[ConversionDay]
    uplift: Uplift
    net_revenue: float | None
    incremental_revenue: float | None
    offer_cost: float
    redemptions: int
    backtest: bool
    period: dict[str, str | None]
    window_days: float
    row: dict[str, Any]


def campaign_report(report: Mapping[str, Any], name: str, campaign: Campaign | None = None) -> CampaignReport:
    """Campaign `name`'s part of a report (`backtest_report`); all zeros for a `campaign` that decided nothing yet
    (NudgeError when the report has no row for it and no campaign is given)."""
    row = next((r for r in report["campaigns"] if r["campaign"] == name), None)
    if row is None:
        if campaign is None:
            raise NudgeError(f"the report has no campaign {name!r}")
        return CampaignReport(
            name=name, kind=campaign.kind, offer=campaign.offer.type if campaign.offer else None, sent=0,
            reminders=0, held_out=0, conversions=[],
            uplift=Uplift(value=None, low=None, high=None, measurable=False, reason="nothing decided yet",
                          contains_zero=None),
            net_revenue=None, incremental_revenue=None, offer_cost=0.0, redemptions=0, backtest=report["backtest"],
            period=report["period"], window_days=report["window_days"], row={})
    u = row["uplift"]
    days = [ConversionDay(day=d["date"], treated=d["treated"], control=d["held_out"], held_out=d["held_out"])
            for d in report["conversions_over_time"] if d["campaign"] == name]
    return CampaignReport(
        name=name, kind=row["kind"], offer=row["offer"], sent=row["sent"], reminders=row["reminders"],
        held_out=row["held_out"], conversions=days,
        uplift=Uplift(value=u["estimate"], low=u["low"], high=u["high"], measurable=u["measurable"],
                      reason=u["reason"], contains_zero=u["contains_zero"]),
        net_revenue=row["net_incremental_revenue"], incremental_revenue=row["incremental_revenue"],
        offer_cost=row["offer_cost"], redemptions=row["redemptions"], backtest=report["backtest"],
        period=report["period"], window_days=report["window_days"], row=dict(row))


# --- a campaign's dry run -----------------------------------------------------------------------------------------
class DryRunDecision(BaseModel):
    """What arbitration would decide for one customer now, and the offer a message would carry."""

    customer_id: str
    verdict: str
    detail: str
    reason: str  # why the trigger fired
    occurrence: str
    category: str | None
    not_before: Moment | None
    deferred: str | None
    offer_code: str | None
    face_value: float | None


class CampaignDryRun(BaseModel):
    """Who a campaign would message at `at` and why the others are left out, without recording or sending
    anything: candidates from its trigger (for a purchase trigger: every customer, as if they bought now), the
    audience, the ledger's earlier decisions, then arbitration (consent, quiet hours and the night, caps, budget,
    holdout, control group, pause, erasure) against the caps and budgets the ledger holds at `at`."""

    name: str
    at: Moment
    trigger: str
    candidates: int
    already_decided: int  # keys the ledger holds: decided before, never judged again
    already_subscribed: int
    audience: dict[str, int]  # left out by the audience, by the condition that failed
    verdicts: dict[str, int]  # what arbitration would decide for the rest
    deferred: dict[str, int]  # of those queued or held out: waiting for quiet hours or the night
    sample: list[DryRunDecision]  # the first `limit`, queued first


def campaign_dry_run(campaign: Campaign, running: Mapping[str, Campaign], states: Mapping[str, CustomerState],
                     profiles: Mapping[str, Any], scores: pd.DataFrame, entries: Sequence[Any],
                     consent: ConsentBook, book: OfferBook, at: datetime, *, paused: Collection[str] = (),
                     control_percent: float = 5.0, suppressed: Container[str] = (), limit: int = 50,
                     found: Sequence[Any] | None = None) -> CampaignDryRun:
    """Campaign `campaign` judged at `at` as a sweep would judge it (see `CampaignDryRun`), its candidates `found`
    when given (the consent notice's come from the consent book, not its trigger). Nothing is written."""
    from engine.campaigns.arbitration import arbitrate
    from engine.campaigns.audience import matches
    from engine.campaigns.candidates import Candidate
    from engine.campaigns.caps import BudgetBook, CapBook
    from engine.campaigns.schema import EventTrigger, Subscription
    from engine.campaigns.triggers import DueIndex
    from engine.offers.issue import issue_offer

    name = campaign.name
    index = DueIndex.build(scores, states, profiles)
    ctxs = index.contexts
    if found is not None:
        found = list(found)
    elif isinstance(campaign.trigger, EventTrigger):
        found = [Candidate(name, cid, f"preview@{at.date().isoformat()}", at, "as if they bought now")
                 for cid, ctx in ctxs.items() if ctx.state is not None]
    else:
        found = index.sweep({name: campaign}, at)
    decided = [e for e in entries if e.decided_at <= at]
    known = {e.key for e in decided}
    audience: Counter = Counter()
    fresh, seen, subscribed = [], 0, 0
    for cand in found:
        if cand.key in known:
            seen += 1
            continue
        if isinstance(campaign.offer, Subscription) and book.subscribed(name, cand.customer_id):
            subscribed += 1
            continue
        why = matches(campaign.audience, ctxs[cand.customer_id], at)
        if why is not None:
            audience[why.split(" ")[0].rstrip(":")] += 1
            continue
        fresh.append(cand)
    judged = {**running, name: campaign}
    caps = CapBook.from_entries(decided, judged, lambda cid: ctxs[cid].zone if cid in ctxs else "UTC")
    budgets = BudgetBook.from_entries(decided, judged, book.adjustment)
    decisions = arbitrate(fresh, judged, ctxs, consent, caps, budgets, at, paused, control_percent, suppressed)
    order = {Verdict.QUEUED: 0, Verdict.HELD_OUT: 1}
    sample = []
    for d in sorted(decisions, key=lambda d: (order.get(d.verdict, 2), d.candidate.customer_id))[:limit]:
        c = d.candidate
        issued = issue_offer(campaign, ctxs[c.customer_id], c.key, at, c.category) \
            if d.verdict is Verdict.QUEUED else None
        sample.append(DryRunDecision(customer_id=c.customer_id, verdict=d.verdict.value, detail=d.detail,
                                     reason=c.reason, occurrence=c.occurrence, category=c.category,
                                     not_before=d.not_before, deferred=d.deferred,
                                     offer_code=issued.code if issued else None,
                                     face_value=issued.face_value if issued else None))
    return CampaignDryRun(
        name=name, at=at, trigger=campaign.trigger.type, candidates=len(found), already_decided=seen,
        already_subscribed=subscribed, audience=dict(sorted(audience.items())),
        verdicts=dict(sorted(Counter(d.verdict.value for d in decisions).items())),
        deferred=dict(sorted(Counter(d.deferred for d in decisions if d.deferred).items())), sample=sample)
