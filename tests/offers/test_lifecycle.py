"""Offers after they are issued: a coupon is redeemed only in scope, within validity and above its minimum spend;
a stamp mission earns one stamp per purchase day and category, however the purchases are split or ordered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from engine.campaigns.schema import Coupon, Scope, StampMission
from engine.events import Purchase
from engine.offers.issue import IssuedCoupon
from engine.offers.lifecycle import redemption, stamps

ISSUED_AT = datetime(2017, 6, 1, 9, tzinfo=UTC)
UNTIL = datetime(2017, 6, 8, 23, 59, 59, tzinfo=UTC)


def _purchase(event_id: str, when: datetime, *lines: tuple) -> Purchase:
    return Purchase(event_id=event_id, customer_id="c1", event_time=when, lines=lines)


def _coupon(**fields) -> tuple[Coupon, IssuedCoupon]:
    coupon = Coupon(**{"percent_off": 10, "max_discount": 5, "min_spend": 20, **fields})
    issued = IssuedCoupon("NDG-X", "10% off", coupon.face_value, UNTIL, tuple(coupon.scope.categories),
                          tuple(coupon.scope.products))
    return coupon, issued


def test_a_coupon_is_redeemed_only_in_scope_within_validity_and_above_its_minimum_spend() -> None:
    coupon, issued = _coupon(scope=Scope(categories=["MEAT"]))
    day = ISSUED_AT + timedelta(days=2)
    meat = ("p1", ("MEAT", "BEEF"), 1, 25.0)
    dairy = ("p2", ("DAIRY", "MILK"), 1, 30.0)
    got = redemption(coupon, issued, ISSUED_AT, _purchase("e1", day, meat, dairy))
    assert got is not None and got.spend_in_scope == 25.0 and got.discount == 2.5 and got.code == "NDG-X"
    assert redemption(coupon, issued, ISSUED_AT, _purchase("e2", day, dairy)) is None  # out of scope
    assert redemption(coupon, issued, ISSUED_AT, _purchase("e3", day, ("p1", ("MEAT",), 1, 19.99))) is None
    assert redemption(coupon, issued, ISSUED_AT, _purchase("e4", ISSUED_AT - timedelta(hours=1), meat)) is None
    assert redemption(coupon, issued, ISSUED_AT, _purchase("e5", UNTIL + timedelta(seconds=1), meat)) is None
    assert redemption(coupon, issued, ISSUED_AT, _purchase("e6", UNTIL, meat)) is not None  # the last second
    returned = _purchase("e7", day, ("p1", ("MEAT",), -1, -25.0), ("p3", ("MEAT",), 1, 10.0))
    assert redemption(coupon, issued, ISSUED_AT, returned) is None  # a return does not count as spend
    big = redemption(coupon, issued, ISSUED_AT, _purchase("e8", day, ("p1", ("MEAT",), 4, 100.0)))
    assert big is not None and big.discount == 5.0  # the percent coupon's cap
    amount, whole = _coupon(percent_off=None, amount_off=3, max_discount=None, min_spend=0)
    got = redemption(amount, whole, ISSUED_AT, _purchase("e9", day, dairy))
    assert got is not None and got.discount == 3.0  # no scope: the whole basket


MISSION = StampMission(type="stamp_mission", stamps=3, days=30, min_basket=0,
                       reward=Coupon(amount_off=5))
baskets = st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["MEAT", "DAIRY", "PRODUCE", "FUEL"]),
                             st.integers(1, 5000)), min_size=1, max_size=30)


def _earn(purchases: list[Purchase]) -> set[tuple[int, str]]:
    earned: set[tuple[int, str]] = set()
    for p in purchases:
        earned |= stamps(MISSION, ("MEAT", "DAIRY", "PRODUCE"), p, "UTC", earned)
    return earned


@given(lines=baskets, order=st.randoms(use_true_random=False))
def test_stamps_are_one_per_purchase_day_and_category_however_baskets_are_split_or_ordered(lines, order) -> None:
    start = datetime(2017, 6, 1, 10, tzinfo=UTC)
    split = [_purchase(f"e{i}", start + timedelta(days=day, minutes=i), (f"p{i}", (cat,), 1, cents / 100))
             for i, (day, cat, cents) in enumerate(lines)]
    by_day: dict[int, list] = {}
    for i, (day, cat, cents) in enumerate(lines):
        by_day.setdefault(day, []).append((f"p{i}", (cat,), 1, cents / 100))
    whole = [_purchase(f"d{day}", start + timedelta(days=day), *ls) for day, ls in sorted(by_day.items())]
    shuffled = list(split)
    order.shuffle(shuffled)
    earned = _earn(split)
    assert earned == _earn(whole) == _earn(shuffled)
    assert earned == {(day_of, cat) for day_of, cat in
                      {(d + 17318, c) for d, c, _ in lines} if cat != "FUEL"}  # 2017-06-01 is day 17318
    again = set()
    for p in split:
        again |= stamps(MISSION, ("MEAT", "DAIRY", "PRODUCE"), p, "UTC", earned)
    assert not again  # every stamp already held: none twice
