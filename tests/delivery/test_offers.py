"""Issuing offers: codes from the key, expiry in the customer's zone, mission categories, subscription tiers."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from engine.offers import issue_offer, money, offer_code
from tests.delivery.conftest import NOW, campaign, context, lpoint

SUBSCRIPTION = {"type": "subscription", "tiers": [
    {"name": "Bronze", "min_monthly_spend": 50, "coupons": [{"amount_off": 2}]},
    {"name": "Silver", "min_monthly_spend": 100,
     "coupons": [{"amount_off": 5}, {"percent_off": 10, "max_discount": 4}]},
    {"name": "Gold", "min_monthly_spend": 300, "coupons": [{"amount_off": 20}]}]}


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_a_code_is_the_key_s_and_only_the_key_s(a: str, b: str) -> None:
    assert offer_code("CJ", a) == offer_code("CJ", a)
    assert (offer_code("CJ", a) == offer_code("CJ", b)) == (a == b)
    assert offer_code("CJ", a).startswith("CJ-") and len(offer_code("CJ", a)) == 3 + 16


def test_a_coupon_expires_at_the_end_of_the_customer_s_day() -> None:
    seoul = lpoint()
    offer = issue_offer(seoul, context(zone="Asia/Seoul"), "k", datetime(2017, 6, 15, 16, 30, tzinfo=UTC))
    # 16:30 UTC is 01:30 on the 16th in Seoul: 14 days after the 16th, to its last second, Seoul time.
    assert offer is not None and offer.kind == "coupon"
    assert offer.valid_until.isoformat() == "2017-06-30T23:59:59+09:00"
    assert offer.face_value == 3000 and offer.currency == "KRW"
    assert offer.discount == "3,000원 할인, 30,000원 이상 구매 시"
    assert offer.coupons[0].code == offer.code == offer_code("NDG", "k")


def test_english_discount_text_and_money() -> None:
    offer = issue_offer(campaign(), context(), "k", NOW)
    assert offer is not None and offer.discount == "15% off (up to $5.00) on $30.00 or more"
    assert offer.face_value == 5
    assert money(1234.5, "USD") == "$1,234.50" and money(5000, "KRW", "ko") == "5,000원"
    assert money(5000, "KRW") == "KRW 5,000"


def test_a_stamp_mission_names_the_customer_s_top_categories_by_preference() -> None:
    mission = campaign("cj_stamp_mission", channel="email", offer={
        "type": "stamp_mission", "stamps": 3, "top_k": 2, "days": 30, "reward": {"amount_off": 10}})
    ctx = context(categories=("GROCERY", "PRODUCE", "MEAT"), preference={"GROCERY": 2, "PRODUCE": 5, "MEAT": 4})
    offer = issue_offer(mission, ctx, "k", NOW)
    assert offer is not None and offer.categories == ("PRODUCE", "MEAT")
    assert offer.stamps == 3 and offer.face_value == 10
    assert offer.valid_until.date().isoformat() == "2017-07-14"  # 30 days after the 14th in Chicago


def test_without_preference_scores_a_mission_falls_back_to_spend() -> None:
    mission = campaign("cj_stamp_mission", offer={
        "type": "stamp_mission", "stamps": 3, "top_k": 1, "days": 30, "reward": {"amount_off": 10}})
    offer = issue_offer(mission, context(categories=("MEAT", "DELI")), "k", NOW)
    assert offer is not None and offer.categories == ("DELI",)  # equal spend: by name


def test_a_subscription_offers_the_tier_the_monthly_spend_reaches() -> None:
    sub = campaign("cj_subscription", channel="email", offer=SUBSCRIPTION)
    # 9 weekly baskets of 3 x $20 from Apr 1 to Jun 14 (75 days, about 2.5 months): about $216 a month.
    ctx = context(days=60)
    offer = issue_offer(sub, ctx, "k", NOW)
    assert offer is not None and offer.tier == "Silver" and offer.tier_reached
    assert 200 < offer.monthly_spend < 230
    assert offer.next_tier == "Gold" and offer.next_tier_spend == 300
    assert len(offer.coupons) == 2 and offer.face_value == 9
    assert len({c.code for c in offer.coupons} | {offer.code}) == 3
    low = issue_offer(sub, context(days=7, amount=1.0), "k", NOW)
    assert low is not None and low.tier == "Bronze" and not low.tier_reached


def test_no_offer_no_issue() -> None:
    assert issue_offer(campaign(offer=None), context(), "k", NOW) is None
