"""What purchases and time do to issued offers: coupons redeemed or expired, stamps earned, missions completed,
subscriptions taken up, re-tiered each month and churned, points earned. Pure, like `apply`: the offer book
(`engine.offers.book`) stores what these functions return, on either runtime.

A coupon is redeemed by a purchase after it was issued (never by the purchase that issued it) and by the end of its
last valid day, whose bought lines in the coupon's scope reach its minimum spend; the discount it gives is its cost.
A stamp mission earns at most one stamp per purchase day (customer-local) and category, so a basket split in two
cannot earn two. Each effect is a `Step` under a reference (the purchase's event id, the stamp's day and category,
the month) that the book keeps once: the same purchase applied twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from engine.campaigns.schema import Coupon, StampMission, Subscription, Tier
from engine.clock import day_number, zone_info
from engine.events import Purchase, is_bought_line
from engine.offers.issue import IssuedCoupon, IssuedOffer, discount_text, end_of_day, offer_code

COUPON_KINDS = frozenset({"coupon", "reward", "tier_coupon"})
OPEN = "open"  # a coupon or mission that can still be used or completed
OFFERED = "offered"  # a subscription offer not yet taken up
ACTIVE = "active"  # a subscription taken up
NO_END = datetime(2100, 1, 1, tzinfo=UTC)  # an active subscription's valid_until: it runs until churned


@dataclass(frozen=True)
class Redemption:
    """A coupon used: by which purchase, when, on how much spend in scope, for what discount (its cost)."""

    code: str
    event_id: str
    at: datetime
    spend_in_scope: float
    discount: float


def in_scope(issued: IssuedCoupon, line: tuple) -> bool:
    """Whether a purchase line falls in the coupon's scope (no products and no categories: the whole basket)."""
    if not issued.products and not issued.categories:
        return True
    return line[0] in issued.products or line[1][0] in issued.categories


def redemption(coupon: Coupon, issued: IssuedCoupon, issued_at: datetime, purchase: Purchase) -> Redemption | None:
    """The redemption `purchase` makes of the coupon, or None (too early, expired, out of scope, under the minimum)."""
    when = purchase.event_time
    if when <= issued_at or when > issued.valid_until:  # not the purchase that issued it (a completed mission's)
        return None
    spend = round(sum(line[3] for line in purchase.lines if is_bought_line(line) and in_scope(issued, line)), 2)
    if spend <= 0 or spend < coupon.min_spend:
        return None
    if coupon.amount_off is not None:
        discount = coupon.amount_off
    else:
        discount = spend * (coupon.percent_off or 0) / 100
        if coupon.max_discount is not None:
            discount = min(discount, coupon.max_discount)
    return Redemption(issued.code, purchase.event_id, when, spend, round(min(discount, spend), 2))


def stamps(mission: StampMission, categories: Collection[str], purchase: Purchase, zone: str,
           earned: Collection[tuple[int, str]] = ()) -> set[tuple[int, str]]:
    """The new stamps (local purchase day, category) `purchase` earns in the mission's `categories`: one per day
    and category, for a category whose bought lines in this purchase reach the mission's `min_basket`."""
    day = day_number(purchase.event_time, zone)
    spend: dict[str, float] = {}
    for line in purchase.lines:
        if is_bought_line(line) and line[1][0] in categories:
            spend[line[1][0]] = spend.get(line[1][0], 0.0) + line[3]
    held = set(earned)
    return {(day, c) for c, amount in spend.items() if amount >= mission.min_basket and (day, c) not in held}


def tier_for(subscription: Subscription, spend: float) -> Tier | None:
    """The highest tier a month's spend reaches, or None below the first."""
    reached = [t for t in subscription.tiers if t.min_monthly_spend <= spend]
    return reached[-1] if reached else None


def month_of(when: datetime, zone: str) -> int:
    """The local calendar month as a number (year * 12 + month - 1)."""
    local = when.astimezone(zone_info(zone))
    return local.year * 12 + local.month - 1


def month_name(month: int) -> str:
    """"2017-12" for a `month_of` number."""
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def month_start(month: int, zone: str) -> datetime:
    """Local midnight opening the month."""
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=zone_info(zone))


@dataclass(frozen=True)
class Held:
    """One issued offer as the book holds it. `terms` is the coupon, mission or subscription as issued (a campaign
    edited later does not change what a customer holds); `progress` is what purchases have done to it so far."""

    code: str
    kind: str  # coupon, reward, tier_coupon, stamp_mission, subscription
    campaign: str
    customer_id: str
    key: str
    parent: str | None
    issued_at: datetime
    valid_until: datetime
    face_value: float
    currency: str
    zone: str
    status: str
    terms: dict[str, Any]
    progress: dict[str, Any] = field(default_factory=dict)
    closed_at: datetime | None = None
    cost: float = 0.0

    @property
    def is_open(self) -> bool:
        """Still able to change: an unused coupon, a running mission, a subscription offered or active."""
        return self.status in (OPEN, OFFERED, ACTIVE)

    def coupon(self) -> Coupon:
        """The coupon terms (coupon kinds only)."""
        return Coupon.model_validate(self.terms)

    def issued_coupon(self) -> IssuedCoupon:
        """The coupon as the message described it."""
        terms = self.coupon()
        return IssuedCoupon(self.code, self.progress.get("discount", ""), self.face_value, self.valid_until,
                            tuple(terms.scope.categories), tuple(terms.scope.products))

    def issued_offer(self) -> IssuedOffer:
        """The coupon as an offer a reminder message can show."""
        coupon = self.issued_coupon()
        return IssuedOffer("coupon", self.code, self.face_value, self.currency, self.valid_until,
                           discount=coupon.discount, coupons=(coupon,), categories=coupon.categories)

    @property
    def committed(self) -> float:
        """What it holds against its campaign's budget: an open coupon's face value, a redeemed one's discount, a
        running mission's reward; nothing once expired (a subscription's coupons and points are rows of their own)."""
        if self.kind in COUPON_KINDS:
            return self.face_value if self.status == OPEN else self.cost if self.status == "redeemed" else 0.0
        if self.kind == "stamp_mission":
            return self.face_value if self.status == OPEN else 0.0
        return 0.0


@dataclass(frozen=True)
class Step:
    """One effect on an offer, kept once per (code, ref)."""

    code: str
    ref: str
    kind: str  # redeemed, stamp, completed, expired, taken_up, month, fee, points, churned
    at: datetime
    amount: float = 0.0  # discount, points, fee or spend, by kind
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """What one purchase or tick did to one offer: its new version, the steps, and offers it issued."""

    held: Held
    steps: tuple[Step, ...] = ()
    issued: tuple[Held, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether anything happened."""
        return bool(self.steps or self.issued)


def coupon_held(coupon: Coupon, kind: str, code: str, campaign: str, customer_id: str, key: str,
                parent: str | None, at: datetime, zone: str, currency: str, language: str) -> Held:
    """A coupon issued at `at`, valid to the end of its last local day."""
    return Held(code, kind, campaign, customer_id, key, parent, at, end_of_day(at, zone, coupon.validity_days),
                coupon.face_value, currency, zone, OPEN, coupon.model_dump(mode="json"),
                {"discount": discount_text(coupon, currency, language)})


def on_purchase(held: Held, purchase: Purchase, known: Collection[str] = ()) -> Change:
    """What the purchase does to the offer; `known` are the step refs the book already holds for it."""
    if held.kind in COUPON_KINDS:
        return _redeem(held, purchase)
    if held.kind == "stamp_mission":
        return _stamp(held, purchase, known)
    if held.kind == "subscription":
        return _subscribe(held, purchase, known)
    return Change(held)


def on_tick(held: Held, now: datetime) -> Change:
    """What time alone does by `now`: expiry, a mission's deadline, a subscription's month ends."""
    if held.kind == "subscription" and held.status == ACTIVE:
        return _roll_months(held, now)
    if held.status in (OPEN, OFFERED) and now > held.valid_until:
        expired = replace(held, status="expired", closed_at=held.valid_until)
        again = _next_round(expired, held.valid_until, "expired") if held.kind == "stamp_mission" else ()
        return Change(expired, (Step(held.code, "expired", "expired", held.valid_until),), again)
    return Change(held)


def _redeem(held: Held, purchase: Purchase) -> Change:
    # An expired coupon can still be redeemed by a late purchase that falls inside its validity.
    if held.status not in (OPEN, "expired"):
        return Change(held)
    used = redemption(held.coupon(), held.issued_coupon(), held.issued_at, purchase)
    if used is None:
        return Change(held)
    step = Step(held.code, purchase.event_id, "redeemed", used.at, used.discount, {"spend": used.spend_in_scope})
    return Change(replace(held, status="redeemed", closed_at=used.at, cost=used.discount,
                          progress={**held.progress, "redeemed_by": purchase.event_id}), (step,))


def _stamp(held: Held, purchase: Purchase, known: Collection[str]) -> Change:
    when = purchase.event_time
    if held.status != OPEN or when <= held.issued_at or when > held.valid_until:
        return Change(held)
    mission = StampMission.model_validate(held.terms)
    earned = {(int(d), c) for d, c in held.progress.get("stamps", [])}
    new = {s for s in stamps(mission, held.progress.get("categories", ()), purchase, held.zone, earned)
           if f"stamp:{s[0]}:{s[1]}" not in known}
    if not new:
        return Change(held)
    steps = [Step(held.code, f"stamp:{d}:{c}", "stamp", when, 1, {"category": c, "event_id": purchase.event_id})
             for d, c in sorted(new)]
    all_stamps = sorted(earned | new)
    progress = {**held.progress, "stamps": [list(s) for s in all_stamps]}
    if len(all_stamps) < mission.stamps:
        return Change(replace(held, progress=progress), tuple(steps))
    done = replace(held, status="completed", closed_at=when, progress=progress)
    steps.append(Step(held.code, "completed", "completed", when, held.face_value))
    rnd = int(held.progress.get("round", 1))
    reward_code = offer_code(mission.reward.code_prefix, held.key if rnd == 1 else f"{held.key}#round{rnd}", 0)
    reward = coupon_held(mission.reward, "reward", reward_code, held.campaign, held.customer_id, held.key,
                         held.code, when, held.zone, held.currency, held.progress.get("language", "en"))
    return Change(done, tuple(steps), (reward, *_next_round(done, when, "completed")))


def _next_round(ended: Held, at: datetime, how: str) -> tuple[Held, ...]:
    mission = StampMission.model_validate(ended.terms)
    rnd = int(ended.progress.get("round", 1))
    if how not in mission.recur or rnd >= mission.max_rounds:
        return ()
    progress = {k: v for k, v in ended.progress.items() if k != "stamps"} | {"round": rnd + 1}
    code = offer_code("MSN", f"{ended.key}#round{rnd + 1}")
    return (replace(ended, code=code, parent=ended.code, issued_at=at, status=OPEN, closed_at=None, cost=0.0,
                    valid_until=end_of_day(at, ended.zone, mission.days), progress=progress),)


def _bought(purchase: Purchase) -> float:
    return round(sum(line[3] for line in purchase.lines if is_bought_line(line)), 2)


def _subscribe(held: Held, purchase: Purchase, known: Collection[str]) -> Change:
    ref = f"spend:{purchase.event_id}"
    when = purchase.event_time
    if ref in known or held.status not in (OFFERED, ACTIVE) or when <= held.issued_at:
        return Change(held)
    sub = Subscription.model_validate(held.terms)
    spend = _bought(purchase)
    if held.status == OFFERED:
        if when > held.valid_until:
            return Change(held)
        total = round(held.progress.get("offer_spend", 0.0) + spend, 2)
        progress = {**held.progress, "offer_spend": total}
        steps = [Step(held.code, ref, "spend", when, spend)]
        if total < sub.tiers[0].min_monthly_spend:
            return Change(replace(held, progress=progress), tuple(steps))
        return _take_up(replace(held, progress=progress), when, tuple(steps), f"spend {total:g} since the offer")
    change = _roll_months(held, when)
    held = change.held
    if held.status != ACTIVE:
        return change
    tier = next((t for t in sub.tiers if t.name == held.progress.get("tier")), None)
    progress = {**held.progress, "month_spend": round(held.progress.get("month_spend", 0.0) + spend, 2)}
    steps = [*change.steps, Step(held.code, ref, "spend", when, spend, {"month": month_name(progress["month"])})]
    points = round(spend * tier.extra_points_percent / 100, 2) if tier is not None else 0.0
    if points > 0:
        steps.append(Step(held.code, f"points:{purchase.event_id}", "points", when, points,
                          {"tier": tier.name, "percent": tier.extra_points_percent}))
    return Change(replace(held, progress=progress), tuple(steps), change.issued)


def accept(held: Held, at: datetime, ref: str = "accept") -> Change:
    """The customer accepted a subscription offer (an accept event) while it was open."""
    if held.kind != "subscription" or held.status != OFFERED or not held.issued_at <= at <= held.valid_until:
        return Change(held)
    return _take_up(held, at, (), "accepted", ref)


def _take_up(held: Held, at: datetime, steps: tuple[Step, ...], why: str, ref: str = "taken_up") -> Change:
    sub = Subscription.model_validate(held.terms)
    tier = tier_for(sub, held.progress.get("offer_spend", 0.0)) or sub.tiers[0]
    month = month_of(at, held.zone)
    progress = {**held.progress, "tier": tier.name, "month": month, "month_spend": 0.0, "idle": 0,
                "taken_up_month": month, "taken_up_at": at.isoformat()}
    active = replace(held, status=ACTIVE, valid_until=NO_END, progress=progress)
    taken = Step(held.code, ref, "taken_up", at, 0.0, {"tier": tier.name, "why": why})
    return Change(active, (*steps, taken), _tier_coupons(active, tier, month, at))


def _tier_coupons(held: Held, tier: Tier, month: int, at: datetime) -> tuple[Held, ...]:
    return tuple(coupon_held(c, "tier_coupon", offer_code(c.code_prefix, f"{held.key}@{month_name(month)}", i),
                             held.campaign, held.customer_id, held.key, held.code, at, held.zone, held.currency,
                             held.progress.get("language", "en"))
                 for i, c in enumerate(tier.coupons))


def _roll_months(held: Held, now: datetime) -> Change:
    """Close every month of an active subscription that ended by `now`: the tier its spend reached, that tier's
    coupons and the next month's fee; churned after `churn_idle_months` months without a purchase."""
    sub = Subscription.model_validate(held.terms)
    current = month_of(now, held.zone)
    steps: list[Step] = []
    issued: list[Held] = []
    while held.status == ACTIVE and held.progress["month"] < current:
        month = held.progress["month"]
        spend = held.progress.get("month_spend", 0.0)
        nxt = month + 1
        at = month_start(nxt, held.zone)
        tier = tier_for(sub, spend)
        idle = held.progress.get("idle", 0) + 1 if spend <= 0 else 0
        steps.append(Step(held.code, f"month:{month_name(month)}", "month", at, spend,
                          {"tier": tier.name if tier else None, "month": month_name(month)}))
        if idle >= sub.churn_idle_months:
            steps.append(Step(held.code, "churned", "churned", at, 0.0, {"idle_months": idle}))
            held = replace(held, status="churned", closed_at=at, progress={**held.progress, "idle": idle})
            break
        free = nxt - held.progress.get("taken_up_month", month) < sub.free_months
        fee = 0.0 if free else (tier.next_month_fee if tier is not None else sub.fee)
        steps.append(Step(held.code, f"fee:{month_name(nxt)}", "fee", at, fee,
                          {"tier": tier.name if tier else None, "free": free}))
        progress = {**held.progress, "month": nxt, "month_spend": 0.0, "idle": idle,
                    "tier": tier.name if tier else None}
        held = replace(held, progress=progress)
        if tier is not None:
            issued += _tier_coupons(held, tier, nxt, at)
    return Change(held, tuple(steps), tuple(issued))


def expires_within(held: Held, now: datetime, days: int) -> bool:
    """Whether an open coupon's last valid day is within `days` local days of `now`'s and it is still valid."""
    if held.status != OPEN or now > held.valid_until:
        return False
    return day_number(held.valid_until, held.zone) - day_number(now, held.zone) < days


def reminder_due(held: Held, now: datetime) -> bool:
    """An open coupon whose terms ask for a reminder and whose expiry is that close."""
    if held.kind not in COUPON_KINDS:
        return False
    days = held.terms.get("reminder_days")
    return days is not None and expires_within(held, now, int(days))

