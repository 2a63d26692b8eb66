"""Issuing a campaign's offer to one customer: a coupon code, a stamp mission's categories, a subscription tier.

Pure and deterministic: the same idempotency key always issues the same code, so a message re-rendered after a
crash carries the coupon the customer may already hold.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.campaigns.candidates import CustomerContext
from engine.campaigns.schema import Campaign, Coupon, StampMission, Subscription
from engine.clock import day_number, day_start, zone_info
from engine.errors import NudgeError

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class IssuedCoupon:
    """One coupon as issued: its code, what it takes off, and until when."""

    code: str
    discount: str  # for people, in the campaign's language: "15% off (up to $5.00) on $30.00 or more"
    face_value: float
    valid_until: datetime  # the end of the last valid day in the customer's zone
    categories: tuple[str, ...] = ()
    products: tuple[str, ...] = ()


@dataclass(frozen=True)
class IssuedOffer:
    """A campaign's offer made concrete for one customer and one message."""

    kind: str  # "coupon", "stamp_mission" or "subscription"
    code: str  # the coupon code, the mission's or the subscription offer's reference
    face_value: float  # the most it can cost, as budgets count it
    currency: str
    valid_until: datetime  # coupon expiry, mission deadline, or the subscription offer's end
    discount: str = ""  # the coupon's (or the reward's) discount text
    coupons: tuple[IssuedCoupon, ...] = ()  # the coupon; a subscription tier's coupons
    categories: tuple[str, ...] = ()  # stamp mission: where stamps are earned
    stamps: int = 0
    min_basket: float = 0.0
    tier: str | None = None  # subscription: the tier the monthly spend reaches (the first one when none)
    tier_reached: bool = False
    next_tier: str | None = None
    next_tier_spend: float | None = None
    monthly_spend: float | None = None
    extra_points_percent: float = 0.0
    next_month_fee: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def data(self) -> dict[str, str]:
        """The offer as flat strings, for a message's data (FCM data values are strings)."""
        out = {"offer.kind": self.kind, "offer.code": self.code, "offer.face_value": f"{self.face_value:g}",
               "offer.currency": self.currency, "offer.valid_until": self.valid_until.isoformat()}
        if self.categories:
            out["offer.categories"] = ",".join(self.categories)
        if self.tier is not None:
            out["offer.tier"] = self.tier
        return out


def offer_code(prefix: str, key: str, index: int = 0) -> str:
    """A unique code for the key: the prefix and 16 base32 characters of its hash (same key, same code)."""
    digest = hashlib.blake2b(f"{prefix}|{key}#{index}".encode(), digest_size=10).digest()
    return f"{prefix}-{base64.b32encode(digest).decode()}"


def money(amount: float, currency: str, language: str = "en") -> str:
    """An amount for people: "$5.00", "5,000원" (ko) or "KRW 5,000"; currencies without cents show none."""
    whole = currency in {"KRW", "JPY"}
    number = f"{amount:,.0f}" if whole else f"{amount:,.2f}"
    if currency == "KRW" and language == "ko":
        return f"{number}원"
    if currency == "USD":
        return f"${number}"
    return f"{currency} {number}"


def end_of_day(now: datetime, zone: str, days: int = 0) -> datetime:
    """The last second of the local day `days` after `now`'s, in `zone`."""
    return day_start(day_number(now, zone) + days + 1, zone) - timedelta(seconds=1)


def discount_text(coupon: Coupon, currency: str, language: str, category: str | None = None) -> str:
    """What the coupon takes off, in the campaign's language."""
    ko = language == "ko"
    if coupon.amount_off is not None:
        text = f"{money(coupon.amount_off, currency, language)} {'할인' if ko else 'off'}"
    else:
        text = f"{coupon.percent_off:g}% {'할인' if ko else 'off'}"
        if coupon.max_discount is not None:
            cap = money(coupon.max_discount, currency, language)
            text += f" ({'최대 ' + cap if ko else 'up to ' + cap})"
    if coupon.min_spend:
        spend = money(coupon.min_spend, currency, language)
        text += f", {spend} 이상 구매 시" if ko else f" on {spend} or more"
    scope = [*scope_categories(coupon, category), *coupon.scope.products]
    if scope:
        text += f" ({', '.join(scope)})" if ko else f" in {', '.join(scope)}"
    return text


def scope_categories(coupon: Coupon, category: str | None) -> tuple[str, ...]:
    """The categories a coupon applies to: its scope's, and the trigger's category when the scope asks for it."""
    named = (category,) if coupon.scope.trigger_category and category and category not in coupon.scope.categories \
        else ()
    return (*coupon.scope.categories, *named)


def _coupon(coupon: Coupon, campaign: Campaign, zone: str, key: str, index: int, now: datetime,
            category: str | None = None) -> IssuedCoupon:
    return IssuedCoupon(
        code=offer_code(coupon.code_prefix, key, index),
        discount=discount_text(coupon, campaign.currency, campaign.language, category),
        face_value=coupon.face_value,
        valid_until=end_of_day(now, zone, coupon.validity_days),
        categories=scope_categories(coupon, category),
        products=tuple(coupon.scope.products),
    )


def top_categories(ctx: CustomerContext, k: int) -> tuple[str, ...]:
    """The customer's `k` most preferred categories by category.preference (ties: more spend, then name);
    without preference scores, the categories they spent most in."""
    scored = [(c, v.get("category.preference")) for c, v in ctx.categories.items()]
    scored = [(c, p) for c, p in scored if p is not None]
    state = ctx.state
    spend = {c: s.spend for c, s in state.categories.items()} if state is not None else {}
    if scored:
        ranked = sorted(scored, key=lambda cp: (-cp[1], -spend.get(cp[0], 0), cp[0]))
        return tuple(c for c, _ in ranked[:k])
    return tuple(c for c, _ in sorted(spend.items(), key=lambda cs: (-cs[1], cs[0]))[:k])


def monthly_spend(ctx: CustomerContext, now: datetime) -> float:
    """Spend net of returns per month of tenure (first purchase day to `now`'s day, at least one month)."""
    state = ctx.state
    if state is None or not state.days:
        return 0.0
    days = day_number(now, state.zone) - state.days[0] + 1
    return state.monetary / max(1.0, days / DAYS_PER_MONTH)


def issue_offer(campaign: Campaign, ctx: CustomerContext, key: str, now: datetime,
                category: str | None = None) -> IssuedOffer | None:
    """The campaign's offer for this customer and message key (None for a campaign without an offer); `category`
    is the one the trigger named, for a coupon scoped to it."""
    offer = campaign.offer
    zone = ctx.zone
    zone_info(zone)  # an unknown zone is a ConfigError here, not a wrong expiry later
    if offer is None:
        return None
    if isinstance(offer, Coupon):
        coupon = _coupon(offer, campaign, zone, key, 0, now, category)
        return IssuedOffer("coupon", coupon.code, coupon.face_value, campaign.currency, coupon.valid_until,
                           discount=coupon.discount, coupons=(coupon,), categories=coupon.categories)
    if isinstance(offer, StampMission):
        reward = _coupon(offer.reward, campaign, zone, key, 0, end_of_day(now, zone, offer.days))
        return IssuedOffer("stamp_mission", offer_code("MSN", key), offer.face_value, campaign.currency,
                           end_of_day(now, zone, offer.days), discount=reward.discount, coupons=(reward,),
                           categories=top_categories(ctx, offer.top_k), stamps=offer.stamps,
                           min_basket=offer.min_basket)
    if isinstance(offer, Subscription):
        spend = monthly_spend(ctx, now)
        reached = [t for t in offer.tiers if t.min_monthly_spend <= spend]
        tier = reached[-1] if reached else offer.tiers[0]
        above = [t for t in offer.tiers if t.min_monthly_spend > tier.min_monthly_spend]
        coupons = tuple(_coupon(c, campaign, zone, key, i, now) for i, c in enumerate(tier.coupons))
        return IssuedOffer("subscription", offer_code("SUB", key), sum(c.face_value for c in coupons),
                           campaign.currency, end_of_day(now, zone, 30),
                           discount="; ".join(c.discount for c in coupons), coupons=coupons, tier=tier.name,
                           tier_reached=bool(reached), next_tier=above[0].name if above else None,
                           next_tier_spend=above[0].min_monthly_spend if above else None, monthly_spend=spend,
                           extra_points_percent=tier.extra_points_percent, next_month_fee=tier.next_month_fee)
    raise NudgeError(f"campaign {campaign.name}: offer: unknown type {type(offer).__name__}")

