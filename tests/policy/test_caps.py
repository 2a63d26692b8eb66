"""Caps per campaign and tag on the customer's calendar days, and budgets; rebuilt from ledger rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaigns.candidates import Verdict
from engine.campaigns.caps import BudgetBook, CapBook
from engine.campaigns.schema import Campaign
from engine.clock import day_number

BASE = datetime(2017, 3, 1, 12, tzinfo=UTC)


def _campaign(name: str, caps: list[dict], tags: list[str] = (), budget: float | None = None) -> Campaign:
    return Campaign.model_validate({
        "name": name, "trigger": {"type": "lapse", "p_alive_below": 0.3}, "channel": "push", "template": name,
        "sender": "Shop", "caps": caps, "tags": list(tags),
        "offer": {"type": "coupon", "amount_off": 5}, **({"budget": {"max_face_value": budget}} if budget else {})})


@dataclass
class Row:
    campaign: str
    customer_id: str
    verdict: Verdict | str
    decided_at: datetime
    not_before: datetime | None = None
    sent_at: datetime | None = None
    face_value: float | None = None
    occurrence: str = "o"


def test_a_cap_counts_windows_before_and_after_the_send() -> None:
    c = _campaign("a", [{"sends": 1, "days": 7}])
    book = CapBook()
    book.add(c, "1", "UTC", BASE + timedelta(days=10))
    assert book.check(c, "1", "UTC", BASE + timedelta(days=16)) == "cap 1 per 7 days for campaign 'a' reached (1 sends)"
    assert book.check(c, "1", "UTC", BASE + timedelta(days=17)) is None
    assert book.check(c, "1", "UTC", BASE + timedelta(days=4)) is not None  # a send already queued ahead
    assert book.check(c, "1", "UTC", BASE + timedelta(days=3)) is None
    assert book.check(c, "2", "UTC", BASE + timedelta(days=10)) is None  # another customer


def test_days_are_the_customers_calendar_days() -> None:
    c = _campaign("a", [{"sends": 1, "days": 1}])
    book = CapBook()
    book.add(c, "M1", "Asia/Seoul", datetime(2017, 3, 1, 14, 30, tzinfo=UTC))  # 23:30 in Seoul, 1 March
    # 15:30 UTC is 00:30 on 2 March in Seoul: a new day there, though the same UTC day.
    assert book.check(c, "M1", "Asia/Seoul", datetime(2017, 3, 1, 15, 30, tzinfo=UTC)) is None
    assert book.check(c, "M1", "UTC", datetime(2017, 3, 1, 15, 30, tzinfo=UTC)) is not None


def test_a_tag_cap_counts_every_campaign_with_the_tag_and_the_strictest_cap_wins() -> None:
    a = _campaign("a", [{"sends": 5, "days": 30}, {"sends": 2, "days": 7, "tag": "promo"}], tags=["promo"])
    b = _campaign("b", [], tags=["promo"])
    other = _campaign("c", [])
    book = CapBook()
    book.add(b, "1", "UTC", BASE)
    book.add(other, "1", "UTC", BASE)
    assert book.check(a, "1", "UTC", BASE) is None
    book.add(b, "1", "UTC", BASE + timedelta(days=1))
    assert book.check(a, "1", "UTC", BASE + timedelta(days=2)) == "cap 2 per 7 days for tag 'promo' reached (2 sends)"


def test_a_zero_cap_blocks_everything() -> None:
    assert CapBook().check(_campaign("a", [{"sends": 0, "days": 1}]), "1", "UTC", BASE) is not None


_CAMPAIGNS = {
    "a": _campaign("a", [{"sends": 2, "days": 7}, {"sends": 3, "days": 14, "tag": "promo"}], tags=["promo"]),
    "b": _campaign("b", [{"sends": 1, "days": 3}, {"sends": 3, "days": 14, "tag": "promo"}], tags=["promo"]),
    "c": _campaign("c", [{"sends": 1, "days": 1}]),
}
ZONES = {"1": "UTC", "2": "Asia/Seoul", "3": "America/New_York"}


def _exceeded(sends: list[tuple[str, str, datetime]]) -> list[str]:
    # An independent recount: for every cap, every window of its length, the sends in it.
    broken = []
    for name, campaign in _CAMPAIGNS.items():
        for cap in campaign.caps:
            for cid, zone in ZONES.items():
                days = [day_number(at, zone) for c, who, at in sends if who == cid and
                        (c == name if cap.tag is None else cap.tag in _CAMPAIGNS[c].tags)]
                for start in set(days):
                    for s in range(start - cap.days + 1, start + 1):
                        if sum(s <= d < s + cap.days for d in days) > cap.sends:
                            broken.append(f"{name} {cap} {cid} window {s}")
    return broken


def test_caps_are_never_exceeded_whatever_the_order_of_attempts() -> None:
    added: list[int] = []

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(sorted(_CAMPAIGNS)), st.sampled_from(sorted(ZONES)),
                              st.integers(0, 40 * 24)), max_size=60))
    def attempts_then_recount(tries: list[tuple[str, str, int]]) -> None:
        book, sends = CapBook(), []
        for name, cid, hours in tries:  # not in time order: deferrals add sends ahead of today
            at = BASE + timedelta(hours=hours)
            if book.check(_CAMPAIGNS[name], cid, ZONES[cid], at) is None:
                book.add(_CAMPAIGNS[name], cid, ZONES[cid], at)
                sends.append((name, cid, at))
        assert _exceeded(sends) == []
        rows = [Row(n, cid, Verdict.SENT if i % 2 else "held_out", at) for i, (n, cid, at) in enumerate(sends)]
        rebuilt = CapBook.from_entries([*rows, Row("a", "1", Verdict.CAPPED, BASE)], _CAMPAIGNS, ZONES.__getitem__)
        for cid in ZONES:
            for scope in ("campaign:a", "campaign:b", "campaign:c", "tag:promo"):
                assert rebuilt.sends(cid, scope) == book.sends(cid, scope)
        added.append(len(sends))

    attempts_then_recount()
    assert sum(added) > 0  # the property saw sends, not only refusals


def test_from_entries_counts_a_deferred_send_on_its_release_day() -> None:
    c = _campaign("a", [{"sends": 1, "days": 1}])
    rows = [Row("a", "1", Verdict.QUEUED, BASE, not_before=BASE + timedelta(days=1)), Row("gone", "1", "sent", BASE)]
    book = CapBook.from_entries(rows, {"a": c}, lambda _: "UTC")
    assert book.sends("1", "campaign:a") == [day_number(BASE, "UTC") + 1]


def test_budget_stops_the_offer_that_would_pass_it() -> None:
    c = _campaign("a", [], budget=12)
    book = BudgetBook()
    assert book.check(c) is None
    book.add(c, 5)
    book.add(c, 5)
    assert book.check(c) == "budget 12 of campaign 'a' would be exceeded (10 spent, offer 5)"
    assert BudgetBook({"a": 7}).check(c) is None
    assert BudgetBook({"a": 1e9}).check(_campaign("b", [])) is None  # no budget, no limit
    rows = [Row("a", "1", "sent", BASE, face_value=4), Row("a", "2", Verdict.QUEUED, BASE),
            Row("a", "3", Verdict.HELD_OUT, BASE, face_value=5)]
    assert BudgetBook.from_entries(rows, {"a": c}).spent == {"a": 9}  # held out: no offer was issued
    reminders = [Row("a", "1", "sent", BASE, occurrence="reminder@NDG-X"), Row("a", "2", Verdict.QUEUED, BASE,
                                                                               occurrence="reminder@NDG-Y")]
    assert BudgetBook.from_entries(rows + reminders, {"a": c}).spent == {"a": 9}  # a reminder issues nothing
    used = BudgetBook.from_entries(rows, {"a": c}, extra={"a": -4.0})  # the offer book: one coupon expired
    assert used.used("a") == 5 and used.check(c) is None
