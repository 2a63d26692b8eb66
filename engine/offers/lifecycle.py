"""What a later purchase does to an issued offer: a coupon redeemed, stamps earned. Pure, like `apply`.

A coupon is redeemed by a purchase after it was issued and by the end of its last valid day, whose bought lines in
the coupon's scope reach its minimum spend; the discount it gives is its cost. A stamp mission earns at most one
stamp per purchase day (customer-local) and category, so a basket split in two cannot earn two.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from engine.campaigns.schema import Coupon, StampMission
from engine.clock import day_number
from engine.events import Purchase, is_bought_line
from engine.offers.issue import IssuedCoupon


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
    if when < issued_at or when > issued.valid_until:
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
