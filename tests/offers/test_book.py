"""The offer book on a real SQLite database: what purchases and time do to issued coupons, stamp missions and
subscriptions, kept once per event id, the same after a reload, and held against each campaign's budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from engine.campaigns.caps import BudgetBook
from engine.campaigns.schema import Budget, Campaign, Coupon, Scope, StampMission, Subscription, Tier
from engine.events import Purchase
from engine.offers.book import OfferBook
from engine.offers.issue import IssuedOffer, end_of_day

T0 = datetime(2017, 11, 6, 10, tzinfo=UTC)


def _engine(path: Path):
    return create_engine(f"sqlite:///{path}")


def _campaign(offer, name: str = "c", budget: float | None = None) -> Campaign:
    return Campaign(name=name, trigger={"type": "event"}, offer=offer, channel="file", template="t", sender="Shop",
                    budget=Budget(max_face_value=budget) if budget else None)


def _buy(event_id: str, when: datetime, *lines: tuple[str, float], customer: str = "h1") -> Purchase:
    return Purchase(event_id=event_id, customer_id=customer, event_time=when,
                    lines=tuple((f"p{i}", (cat,), 1, amount) for i, (cat, amount) in enumerate(lines)))


def _issued(kind: str, code: str, face: float, until: datetime, **fields) -> IssuedOffer:
    return IssuedOffer(kind, code, face, "USD", until, **fields)


COUPON = Coupon(percent_off=10, max_discount=5, min_spend=20, validity_days=7, scope=Scope(categories=["MEAT"]))


def test_a_coupon_is_redeemed_by_the_first_qualifying_purchase_only_and_otherwise_expires(tmp_path) -> None:
    book = OfferBook(_engine(tmp_path / "o.db"))
    campaign = _campaign(COUPON)
    until = end_of_day(T0, "UTC", 7)
    book.issue(campaign, "h1", "c|h1|x", _issued("coupon", "K1", 5.0, until), "UTC", T0)
    book.issue(campaign, "h2", "c|h2|x", _issued("coupon", "K2", 5.0, until), "UTC", T0)
    book.purchase(_buy("e1", T0 + timedelta(days=1), ("DAIRY", 40.0)))  # out of scope
    book.purchase(_buy("e2", T0 + timedelta(days=2), ("MEAT", 19.0)))  # under the minimum
    assert book.offers["K1"].status == "open"
    book.purchase(_buy("e3", T0 + timedelta(days=3), ("MEAT", 30.0), ("DAIRY", 100.0)))
    book.purchase(_buy("e4", T0 + timedelta(days=4), ("MEAT", 80.0)))  # already used
    k1 = book.offers["K1"]
    assert (k1.status, k1.cost, k1.progress["redeemed_by"]) == ("redeemed", 3.0, "e3")  # 10 % of the 30 in scope
    book.purchase(_buy("e5", until + timedelta(seconds=1), ("MEAT", 80.0), customer="h2"))  # too late
    book.tick(until + timedelta(hours=1))
    assert book.offers["K2"].status == "expired"
    kinds = [(s.code, s.kind) for s in book.steps()]
    assert kinds == [("K1", "issued"), ("K2", "issued"), ("K1", "redeemed"), ("K2", "expired")]
    # Budget use: K1 holds its discount, K2 nothing, against the 10.0 of face value the two messages were sent with.
    assert round(book.adjustment["c"], 6) == round(3.0 - 10.0, 6)


def test_a_late_purchase_inside_the_validity_redeems_a_coupon_the_sweep_already_expired(tmp_path) -> None:
    book = OfferBook(_engine(tmp_path / "o.db"))
    until = end_of_day(T0, "UTC", 7)
    book.issue(_campaign(COUPON), "h1", "k", _issued("coupon", "K1", 5.0, until), "UTC", T0)
    book.tick(until + timedelta(hours=2))
    assert book.offers["K1"].status == "expired"
    book.purchase(_buy("late", until - timedelta(hours=1), ("MEAT", 50.0)))
    assert book.offers["K1"].status == "redeemed" and book.offers["K1"].cost == 5.0


MISSION = StampMission(type="stamp_mission", stamps=3, days=10, min_basket=10, recur=["completed"], max_rounds=2,
                       reward=Coupon(amount_off=5, min_spend=25, validity_days=14, code_prefix="RW"))


def test_stamps_are_one_per_day_and_category_and_the_third_completes_the_mission_with_its_reward(tmp_path) -> None:
    book = OfferBook(_engine(tmp_path / "o.db"))
    campaign = _campaign(MISSION)
    until = end_of_day(T0, "UTC", 10)
    book.issue(campaign, "h1", "c|h1|e0", _issued("stamp_mission", "M1", 5.0, until,
                                                 categories=("MEAT", "DAIRY")), "UTC", T0)
    day1 = T0 + timedelta(days=1)
    book.purchase(_buy("e1", day1, ("MEAT", 12.0)))
    book.purchase(_buy("e2", day1 + timedelta(hours=2), ("MEAT", 30.0)))  # a split basket: same day, same category
    book.purchase(_buy("e2", day1 + timedelta(hours=2), ("MEAT", 30.0)))  # the same event again
    book.purchase(_buy("e3", day1 + timedelta(hours=3), ("PRODUCE", 90.0), ("DAIRY", 9.0)))  # nothing qualifies
    assert book.offers["M1"].progress["stamps"] == [[17477, "MEAT"]]
    book.purchase(_buy("e4", day1 + timedelta(hours=4), ("DAIRY", 10.0)))  # another category, same day: a stamp
    book.purchase(_buy("e5", T0 + timedelta(days=3), ("MEAT", 11.0)))
    mission = book.offers["M1"]
    assert mission.status == "completed" and len(mission.progress["stamps"]) == 3
    rewards = [h for h in book.of_customer("h1") if h.kind == "reward"]
    assert len(rewards) == 1 and rewards[0].code.startswith("RW-") and rewards[0].face_value == 5.0
    assert rewards[0].valid_until == end_of_day(T0 + timedelta(days=3), "UTC", 14)
    second = [h for h in book.of_customer("h1") if h.kind == "stamp_mission" and h.code != "M1"]
    assert len(second) == 1 and second[0].status == "open" and second[0].progress["round"] == 2
    assert second[0].progress["categories"] == ["MEAT", "DAIRY"]


TIERS = Subscription(type="subscription", fee=9.99, free_months=1, churn_idle_months=1, tiers=[
    Tier(name="Basic", min_monthly_spend=100, coupons=[Coupon(amount_off=2, validity_days=30, code_prefix="SB")],
         extra_points_percent=1, next_month_fee=8.99),
    Tier(name="Plus", min_monthly_spend=200, coupons=[Coupon(amount_off=5, validity_days=30, code_prefix="SP")],
         extra_points_percent=2, next_month_fee=6.99),
])


def test_a_subscription_is_taken_up_by_spend_and_its_tier_follows_each_months_spend(tmp_path) -> None:
    book = OfferBook(_engine(tmp_path / "o.db"))
    campaign = _campaign(TIERS)
    book.issue(campaign, "h1", "c|h1|nov", _issued("subscription", "S1", 2.0, end_of_day(T0, "UTC", 30)), "UTC", T0)
    assert book.subscribed("c", "h1") and not book.subscribed("c", "h2")
    book.purchase(_buy("e1", T0 + timedelta(days=1), ("MEAT", 60.0)))
    assert book.offers["S1"].status == "offered"
    book.purchase(_buy("e2", T0 + timedelta(days=2), ("MEAT", 50.0)))  # 110 since the offer: Basic reached
    sub = book.offers["S1"]
    assert sub.status == "active" and sub.progress["tier"] == "Basic"
    book.purchase(_buy("e3", T0 + timedelta(days=3), ("MEAT", 250.0)))  # November: 250 after the take-up
    book.tick(datetime(2017, 12, 1, 0, 30, tzinfo=UTC))
    assert book.offers["S1"].progress["tier"] == "Plus"  # November's spend reached Plus
    book.purchase(_buy("e4", datetime(2017, 12, 5, tzinfo=UTC), ("MEAT", 50.0)))  # December: 50, under Basic
    book.tick(datetime(2018, 1, 1, 0, 30, tzinfo=UTC))
    assert book.offers["S1"].progress["tier"] is None
    book.tick(datetime(2018, 2, 1, 0, 30, tzinfo=UTC))  # January without a purchase
    assert book.offers["S1"].status == "churned"
    steps = {(s.kind, s.ref): s for s in book.steps(customer_id="h1")}
    assert steps[("taken_up", "taken_up")].at.month == 11  # November, the take-up month, is the free one
    assert steps[("fee", "fee:2017-12")].amount == 6.99  # after a Plus month, Plus's next-month fee
    assert steps[("fee", "fee:2018-01")].amount == 9.99  # after a month under every tier, the base fee
    assert ("fee", "fee:2018-02") not in steps  # churned before January's fee
    assert steps[("points", "points:e3")].amount == 2.5  # 1 % of 250 as Basic
    assert steps[("points", "points:e4")].amount == 1.0  # 2 % of 50 as Plus
    tier_coupons = sorted(h.code[:2] for h in book.of_customer("h1") if h.kind == "tier_coupon")
    assert tier_coupons == ["SB", "SP"]  # Basic's at the take-up, Plus's for December
    assert not book.subscribed("c", "h1")


def test_a_campaign_at_its_budget_issues_no_more_rewards(tmp_path) -> None:
    campaign = _campaign(MISSION, budget=5.0)
    budgets = BudgetBook()
    book = OfferBook(_engine(tmp_path / "o.db"))
    budgets.extra = book.adjustment
    book.budget_ok = lambda name, face: budgets.check(campaign, face) is None
    until = end_of_day(T0, "UTC", 10)
    budgets.add(campaign, 5.0)  # the mission's message was sent: its reward's face value is held
    assert budgets.check(campaign) is not None  # a second mission does not fit
    book.issue(campaign, "h1", "k1", _issued("stamp_mission", "M1", 5.0, until, categories=("MEAT",)), "UTC", T0)
    for day in range(1, 4):
        book.purchase(_buy(f"e{day}", T0 + timedelta(days=day), ("MEAT", 20.0)))
    assert book.offers["M1"].status == "completed"
    assert [h.kind for h in book.of_customer("h1")].count("reward") == 1  # held since the send: it fits
    # The second round's mission holds another reward against a full budget, so the book does not open it.
    assert [h.kind for h in book.of_customer("h1")].count("stamp_mission") == 1
    assert any(s.kind == "over_budget" for s in book.steps())
    # The reward expiring unused frees the budget again.
    book.tick(T0 + timedelta(days=30))
    assert budgets.check(campaign) is None


def test_the_book_reloads_what_it_flushed_and_a_replayed_purchase_changes_nothing(tmp_path) -> None:
    engine = _engine(tmp_path / "o.db")
    book = OfferBook(engine)
    until = end_of_day(T0, "UTC", 10)
    book.issue(_campaign(MISSION), "h1", "k1", _issued("stamp_mission", "M1", 5.0, until, categories=("MEAT",)),
               "UTC", T0)
    book.purchase(_buy("e1", T0 + timedelta(days=1), ("MEAT", 20.0)))
    book.flush()
    again = OfferBook(engine)
    assert again.offers == book.offers and dict(again.adjustment) == dict(book.adjustment)
    assert again.purchase(_buy("e1", T0 + timedelta(days=1), ("MEAT", 20.0))) == []
    assert again.offers["M1"].progress["stamps"] == book.offers["M1"].progress["stamps"]


purchases = st.lists(st.tuples(st.integers(0, 12), st.sampled_from(["MEAT", "DAIRY", "FUEL"]),
                               st.integers(500, 6000)), min_size=1, max_size=25)


def _run(path: Path, events: list[Purchase], flush_at: int | None = None) -> tuple[dict, list]:
    engine = _engine(path)
    book = OfferBook(engine)
    until = end_of_day(T0, "UTC", 7)
    book.issue(_campaign(COUPON, "cp"), "h1", "k0", _issued("coupon", "K", 5.0, until), "UTC", T0)
    book.issue(_campaign(MISSION, "ms"), "h1", "k1", _issued("stamp_mission", "M", 5.0, end_of_day(T0, "UTC", 10),
                                                            categories=("MEAT", "DAIRY")), "UTC", T0)
    book.issue(_campaign(TIERS, "sb"), "h1", "k2", _issued("subscription", "S", 2.0, end_of_day(T0, "UTC", 30)),
               "UTC", T0)
    for i, event in enumerate(events):
        if i == flush_at:  # a restart: the book written, read back, the rest applied to the copy
            book.flush()
            book = OfferBook(engine)
        book.purchase(event)
    book.tick(T0 + timedelta(days=40))
    steps = sorted((s.code, s.ref, s.kind, round(s.amount, 2)) for s in book.steps())
    return {c: (h.status, h.progress.get("stamps"), round(h.cost, 2)) for c, h in book.offers.items()
            if h.kind in ("coupon", "stamp_mission", "reward")}, steps


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(lines=purchases, data=st.data())
def test_offers_are_idempotent_by_event_id_across_restarts(tmp_path_factory, lines, data) -> None:
    # A stream in event-time order, as a replay reads it; the same stream re-read from an older checkpoint after
    # a restart, or with repeated events, must leave the same offers and steps.
    events = sorted((_buy(f"e{i}", T0 + timedelta(days=day, hours=1, minutes=i), (cat, cents / 100))
                     for i, (day, cat, cents) in enumerate(lines)), key=lambda p: p.event_time)
    base = tmp_path_factory.mktemp("book")
    once = _run(base / "once.db", events)
    cut = data.draw(st.integers(0, len(events)))
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=5))
    # A restart at the cut whose checkpoint was taken earlier: the events since it are applied again.
    start = data.draw(st.integers(0, cut))
    twice = _run(base / "twice.db", events[:cut] + events[start:], flush_at=cut)
    assert twice == once
    dup = _run(base / "dup.db", [e for e in events for _ in (0, 1)] + repeats)  # a purchase and its repeat
    assert dup == once
