"""Triggers: when a campaign wants a customer, and the occurrence that fixes the message's idempotency key.

Pure functions of a customer's context and `now` (event time). The occurrence never depends on a score's
value, only on what opened the cycle (the last purchase day), the event id, or the fire time, so a refit that
moves a predicted date cannot make a second key. `DueIndex` answers the same questions for every customer
at once by bucketing predicted dates by day.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pandas as pd
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from engine.campaigns.candidates import Candidate, CustomerContext
from engine.campaigns.schema import Campaign, EventTrigger, Lapse, RepurchaseDue, Schedule
from engine.clock import EPOCH, day_number, day_start, zone_info
from engine.errors import NudgeError
from engine.events import SERVICE_CATEGORY_PREFIX, CustomerProfile, Purchase, is_bought_line
from engine.state import CustomerState

CUSTOMER_LEVEL = "*"  # the occurrence's scope for the customer-level next_purchase.date
PREFERENCE = "category.preference"
CATEGORY_DATE = "category.next_purchase.date"
CUSTOMER_DATE = "next_purchase.date"
MAX_FIRES = 100_000  # fire times one call may list: a "* * * * *" cron over months is a mistake, not a plan
_TICK = timedelta(microseconds=1)


def _iso(day: int) -> str:
    return date.fromordinal(day + EPOCH).isoformat()


def _day(value: Any) -> int | None:
    """A date score as a day number (None when missing)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, str):
        value = date.fromisoformat(value[:10])
    return value.toordinal() - EPOCH


# -- repurchase_due --------------------------------------------------------------------------------------------
def ranked_categories(ctx: CustomerContext) -> list[str]:
    """The customer's categories by preference (high first), then spend, then name."""
    spend = {} if ctx.state is None else {c: s.spend for c, s in ctx.state.categories.items()}
    names = set(ctx.categories) | set(spend)
    return sorted(names, key=lambda c: (-(ctx.categories.get(c, {}).get(PREFERENCE) or 0), -spend.get(c, 0), c))


def _cycle(ctx: CustomerContext, category: str | None) -> tuple[int | None, int | None]:
    """(last purchase day, predicted next day) of the customer (category None) or of one category."""
    state = ctx.state
    if state is None:
        return None, None
    if category is None:
        return (state.days[-1] if state.days else None), _day(ctx.scores.get(CUSTOMER_DATE))
    stats = state.categories.get(category)
    last = stats.days[-1] if stats is not None and stats.days else None
    return last, _day(ctx.categories.get(category, {}).get(CATEGORY_DATE))


def _due_one(campaign: Campaign, trigger: RepurchaseDue, ctx: CustomerContext, category: str | None,
             today: int) -> Candidate | None:
    last, predicted = _cycle(ctx, category)
    # A prediction on or before the cycle's opening purchase belongs to an older cycle (scores not yet redone).
    if last is None or predicted is None or predicted <= last:
        return None
    due = max(predicted - trigger.lead_days, last + 1)
    if not due <= today <= due + trigger.window_days:
        return None
    scope = CUSTOMER_LEVEL if category is None else category
    return Candidate(
        campaign=campaign.name, customer_id=ctx.customer_id, occurrence=f"{scope}@{_iso(last)}",
        at=day_start(due, ctx.zone),
        reason=f"{scope}: next purchase predicted {_iso(predicted)} (lead {trigger.lead_days} d), "
               f"last bought {_iso(last)}",
        category=category)


def repurchase_due(campaign: Campaign, ctx: CustomerContext, now: datetime) -> list[Candidate]:
    """Candidates whose predicted date minus lead_days has arrived, at most window_days ago (customer-local days)."""
    trigger = campaign.trigger
    if not isinstance(trigger, RepurchaseDue) or ctx.state is None or not campaign.active(now):
        return []
    if trigger.category is not None:
        scopes: list[str | None] = [trigger.category]
    elif trigger.top_k is not None:
        scopes = list(ranked_categories(ctx)[:trigger.top_k])
    else:
        scopes = [None]
    today = day_number(now, ctx.zone)
    found = (_due_one(campaign, trigger, ctx, scope, today) for scope in scopes)
    return [c for c in found if c is not None]


# -- lapse -----------------------------------------------------------------------------------------------------
def lapse_onset(trigger: Lapse, ctx: CustomerContext, today: int) -> int | None:
    """The day the customer's lapse began, if lapsed today: the first day recency exceeded k × gap_mean, else
    (P(alive) carries no date) today when P(alive) is below the bound."""
    state = ctx.state
    if state is None or not state.days:
        return None
    last = state.days[-1]
    if trigger.interval_multiple is not None and state.gap_mean is not None:
        onset = last + math.floor(trigger.interval_multiple * state.gap_mean) + 1
        if onset <= today:
            return onset
    p_alive = ctx.scores.get("p_alive")
    if trigger.p_alive_below is not None and p_alive is not None and p_alive < trigger.p_alive_below:
        return today
    return None


def lapse(campaign: Campaign, ctx: CustomerContext, now: datetime) -> Candidate | None:
    """A candidate when the customer has lapsed and the lapse began at most window_days ago."""
    trigger = campaign.trigger
    if not isinstance(trigger, Lapse) or ctx.state is None or not campaign.active(now):
        return None
    today = day_number(now, ctx.zone)
    onset = lapse_onset(trigger, ctx, today)
    if onset is None or today - onset > trigger.window_days:
        return None
    last = ctx.state.days[-1]
    return Candidate(campaign=campaign.name, customer_id=ctx.customer_id, occurrence=f"lapse@{_iso(last)}",
                     at=day_start(onset, ctx.zone),
                     reason=f"lapsed since {_iso(onset)}, last bought {_iso(last)}")


# -- event -----------------------------------------------------------------------------------------------------
def bought_categories(purchase: Purchase) -> set[str]:
    """The top categories a purchase bought in (a service use: its service category); none for a return."""
    if purchase.lines:
        return {line[1][0] for line in purchase.lines if is_bought_line(line)}
    if (purchase.amount or 0.0) >= 0:
        return {SERVICE_CATEGORY_PREFIX + (purchase.affiliate or "unknown")}
    return set()


def on_purchase(campaign: Campaign, purchase: Purchase, after: CustomerState, first: bool) -> Candidate | None:
    """A candidate when the purchase meets every condition of the campaign's event trigger.

    `first` says the customer had no basket before this purchase: the runtime knows it before applying, and
    `apply` updates the state in place, so the state after cannot tell.
    """
    trigger = campaign.trigger
    if not isinstance(trigger, EventTrigger) or not campaign.active(purchase.event_time):
        return None
    if purchase.customer_id != after.customer_id:
        raise NudgeError(f"campaign {campaign.name}: purchase {purchase.event_id} of {purchase.customer_id} "
                         f"checked against the state of {after.customer_id}")
    bought = bought_categories(purchase)
    if not bought:  # a return or only voided lines: not a purchase
        return None
    reasons = []
    if trigger.first_purchase:
        if not first:
            return None
        reasons.append("first purchase")
    if trigger.min_basket is not None:
        if purchase.total < trigger.min_basket:
            return None
        reasons.append(f"basket {purchase.total:.2f} >= {trigger.min_basket:g}")
    if trigger.lpay is not None:
        if purchase.lpay != trigger.lpay:
            return None
        reasons.append("paid with L.pay" if trigger.lpay else "not paid with L.pay")
    if trigger.category is not None:
        if trigger.category not in bought:
            return None
        reasons.append(f"bought {trigger.category}")
    return Candidate(campaign=campaign.name, customer_id=purchase.customer_id, occurrence=purchase.event_id,
                     at=purchase.event_time, reason=", ".join(reasons) or "purchase", category=trigger.category)


def purchase_candidates(campaigns: Mapping[str, Campaign], purchase: Purchase, after: CustomerState,
                        first: bool) -> list[Candidate]:
    """`on_purchase` for every event campaign, in campaign name order."""
    found = (on_purchase(campaigns[name], purchase, after, first) for name in sorted(campaigns))
    return [c for c in found if c is not None]


# -- schedule --------------------------------------------------------------------------------------------------
def fire_times(trigger: BaseTrigger, after: datetime, until: datetime, limit: int = MAX_FIRES) -> Iterator[datetime]:
    """An APScheduler trigger's fire times in (after, until], in order (no wall clock read)."""
    if getattr(trigger, "jitter", None):
        raise NudgeError(f"trigger {trigger}: jitter makes fire times random; event time needs them fixed")
    cursor, count = after, 0
    while True:
        fire = trigger.get_next_fire_time(None, cursor + _TICK)
        if fire is None or fire > until:
            return
        count += 1
        if count > limit:
            raise NudgeError(f"trigger {trigger}: more than {limit} fire times between {after.isoformat()} "
                             f"and {until.isoformat()}")
        yield fire
        cursor = fire


def schedule_fires(campaign: Campaign, start: datetime, end: datetime, zone: str) -> list[datetime]:
    """The campaign's cron fire times in (start, end], computed in `zone`, within the campaign's start/end."""
    # APScheduler 3's crontab numbers weekdays from Monday = 0 (standard cron: Sunday = 0); names (mon) are safe.
    trigger = campaign.trigger
    if not isinstance(trigger, Schedule):
        return []
    cron = CronTrigger.from_crontab(trigger.cron, timezone=zone_info(zone))
    return [t for t in fire_times(cron, start, end) if campaign.active(t)]


def schedule_zone(campaign: Campaign, ctx: CustomerContext) -> str:
    """The zone a schedule campaign's cron runs in for this customer."""
    trigger = campaign.trigger
    return ctx.zone if isinstance(trigger, Schedule) and trigger.zone == "customer" else campaign.zone


def _scheduled(campaign: Campaign, trigger: Schedule, customer_id: str, fires: list[datetime]) -> list[Candidate]:
    # The fire time in UTC: one spelling per instant, whatever zone computed it, so one key.
    return [Candidate(campaign=campaign.name, customer_id=customer_id, occurrence=f.astimezone(UTC).isoformat(),
                      at=f, reason=f"schedule {trigger.cron!r} fired {f.isoformat()}")
            for f in fires]


def _schedule_window(trigger: Schedule, now: datetime, since: datetime | None) -> datetime:
    start = now - timedelta(hours=trigger.window_hours)
    return start if since is None or since < start else since


def scheduled(campaign: Campaign, ctx: CustomerContext, now: datetime,
              since: datetime | None = None) -> list[Candidate]:
    """Candidates for the schedule's fire times in (since, now] that are under window_hours old at `now`."""
    trigger = campaign.trigger
    if not isinstance(trigger, Schedule):
        return []
    fires = schedule_fires(campaign, _schedule_window(trigger, now, since), now, schedule_zone(campaign, ctx))
    return _scheduled(campaign, trigger, ctx.customer_id, fires)


def due(campaigns: Mapping[str, Campaign], ctx: CustomerContext, now: datetime,
        since: datetime | None = None) -> list[Candidate]:
    """Every time-driven candidate (repurchase_due, lapse, schedule) of one customer, in campaign name order."""
    found: list[Candidate] = []
    for name in sorted(campaigns):
        campaign = campaigns[name]
        found += repurchase_due(campaign, ctx, now)
        candidate = lapse(campaign, ctx, now)
        if candidate is not None:
            found.append(candidate)
        found += scheduled(campaign, ctx, now, since)
    return found


# -- contexts from the scores frame ----------------------------------------------------------------------------
def contexts(frame: pd.DataFrame, states: Mapping[str, CustomerState],
             profiles: Mapping[str, CustomerProfile] | None = None) -> dict[str, CustomerContext]:
    """One context per customer with a state, a profile or a score (ScoreStore.frame() rows: customer_id,
    category ("" at customer level), output, value)."""
    profiles = profiles or {}
    scores: dict[str, dict[str, Any]] = defaultdict(dict)
    categories: dict[str, dict[str, dict[str, Any]]] = defaultdict(lambda: defaultdict(dict))
    if len(frame):
        for cid, category, out, value in zip(frame["customer_id"].tolist(), frame["category"].tolist(),
                                             frame["output"].tolist(), frame["value"].tolist(), strict=True):
            if category:
                categories[cid][category][out] = value
            else:
                scores[cid][out] = value
    ids = set(states) | set(profiles) | set(scores) | set(categories)
    return {cid: CustomerContext(cid, states.get(cid), profiles.get(cid), dict(scores.get(cid, {})),
                                 {c: dict(v) for c, v in categories.get(cid, {}).items()})
            for cid in sorted(ids)}


# -- the due index ---------------------------------------------------------------------------------------------
class DueIndex:
    """Every customer's predicted dates bucketed by day, so a sweep reads only the days a window can reach.

    A sweep gives exactly what `due` gives customer by customer (tested); `update` replaces a customer's
    context when their state or scores change, so a purchase moves their due dates without a rebuild.
    """

    def __init__(self) -> None:
        self._contexts: dict[str, CustomerContext] = {}
        self._buckets: dict[int, set[tuple[str, str]]] = defaultdict(set)  # predicted day -> (customer, scope)
        self._dates: dict[str, dict[str, int]] = {}  # customer -> scope ("" customer level) -> predicted day
        self._ranked: dict[str, tuple[str, ...]] = {}

    @classmethod
    def build(cls, frame: pd.DataFrame, states: Mapping[str, CustomerState],
              profiles: Mapping[str, CustomerProfile] | None = None) -> DueIndex:
        """An index of every customer in the scores frame, the states or the profiles."""
        index = cls()
        for cid, ctx in contexts(frame, states, profiles).items():
            index.update(cid, ctx)
        return index

    def __len__(self) -> int:
        return len(self._contexts)

    @property
    def contexts(self) -> Mapping[str, CustomerContext]:
        """Every indexed customer's context, read-only (what arbitration and delivery read)."""
        return MappingProxyType(self._contexts)

    def context(self, customer_id: str) -> CustomerContext:
        """The customer's context as last given."""
        try:
            return self._contexts[customer_id]
        except KeyError:
            raise NudgeError(f"due index: no customer {customer_id!r}") from None

    def update(self, customer_id: str, ctx: CustomerContext) -> None:
        """Replace the customer's context and predicted dates (re-scored dates replace the old ones)."""
        if ctx.customer_id != customer_id:
            raise NudgeError(f"due index: context of {ctx.customer_id!r} given for {customer_id!r}")
        self.remove(customer_id)
        self._contexts[customer_id] = ctx
        dates: dict[str, int] = {}
        whole = _day(ctx.scores.get(CUSTOMER_DATE))
        if whole is not None:
            dates[""] = whole
        for category, values in ctx.categories.items():
            day = _day(values.get(CATEGORY_DATE))
            if day is not None:
                dates[category] = day
        for scope, day in dates.items():
            self._buckets[day].add((customer_id, scope))
        self._dates[customer_id] = dates
        self._ranked[customer_id] = tuple(ranked_categories(ctx))

    def remove(self, customer_id: str) -> None:
        """Forget a customer (nothing when unknown)."""
        for scope, day in self._dates.pop(customer_id, {}).items():
            bucket = self._buckets[day]
            bucket.discard((customer_id, scope))
            if not bucket:
                del self._buckets[day]
        self._contexts.pop(customer_id, None)
        self._ranked.pop(customer_id, None)

    def sweep(self, campaigns: Mapping[str, Campaign], now: datetime, since: datetime | None = None,
              seen: Collection[str] = ()) -> list[Candidate]:
        """Every time-driven candidate at `now`, ordered by customer, campaign name and occurrence; keys in
        `seen` (already in the ledger) are left out."""
        found: list[Candidate] = []
        todays: dict[str, int] = {}  # zone -> local day number of now

        def today(ctx: CustomerContext) -> int:
            zone = ctx.zone
            if zone not in todays:
                todays[zone] = day_number(now, zone)
            return todays[zone]

        for name in sorted(campaigns):
            campaign = campaigns[name]
            trigger = campaign.trigger
            if isinstance(trigger, RepurchaseDue) and campaign.active(now):
                found += self._repurchase(campaign, trigger, now, today)
            elif isinstance(trigger, Lapse) and campaign.active(now):
                for ctx in self._contexts.values():
                    candidate = lapse(campaign, ctx, now)
                    if candidate is not None:
                        found.append(candidate)
            elif isinstance(trigger, Schedule):
                found += self._schedule(campaign, trigger, now, since)
        found = [c for c in found if c.key not in seen]
        found.sort(key=lambda c: (c.customer_id, c.campaign, c.occurrence))
        return found

    def _repurchase(self, campaign: Campaign, trigger: RepurchaseDue, now: datetime,
                    today: Callable[[CustomerContext], int]) -> list[Candidate]:
        # Local days lie within one day of UTC's; due <= predicted and predicted - lead <= due bound the buckets.
        utc = day_number(now, UTC)
        found = []
        for day in range(utc - 1 - trigger.window_days, utc + 2 + trigger.lead_days):
            for cid, scope in self._buckets.get(day, ()):
                if trigger.category is not None:
                    if scope != trigger.category:
                        continue
                elif trigger.top_k is not None:
                    if not scope or scope not in self._ranked[cid][:trigger.top_k]:
                        continue
                elif scope:
                    continue
                ctx = self._contexts[cid]
                if ctx.state is None:
                    continue
                candidate = _due_one(campaign, trigger, ctx, scope or None, today(ctx))
                if candidate is not None:
                    found.append(candidate)
        return found

    def _schedule(self, campaign: Campaign, trigger: Schedule, now: datetime,
                  since: datetime | None) -> list[Candidate]:
        start = _schedule_window(trigger, now, since)
        fires: dict[str, list[datetime]] = {}
        found = []
        for cid, ctx in self._contexts.items():
            zone = schedule_zone(campaign, ctx)
            if zone not in fires:
                fires[zone] = schedule_fires(campaign, start, now, zone)
            found += _scheduled(campaign, trigger, cid, fires[zone])
        return found
