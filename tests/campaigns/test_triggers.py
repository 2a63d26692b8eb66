"""Triggers on small real states (built by `apply`), and the due index against the per-customer functions."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.campaigns.candidates import CustomerContext
from engine.campaigns.schema import Campaign
from engine.campaigns.triggers import (
    DueIndex,
    contexts,
    due,
    lapse,
    on_purchase,
    purchase_candidates,
    repurchase_due,
    schedule_fires,
    scheduled,
)
from engine.db import connect
from engine.errors import NudgeError
from engine.events import Line, Purchase
from engine.state import CustomerState, apply
from engine.store.scores import ScoreStore

DAY0 = date(2017, 3, 1)
SEOUL = ZoneInfo("Asia/Seoul")


def d(n: int) -> date:
    return DAY0 + timedelta(days=n)


def at(n: int, hour: int = 12, zone: Any = UTC) -> datetime:
    return datetime.combine(d(n), datetime.min.time(), zone) + timedelta(hours=hour)


def basket(event_id: str, day: int, categories: list[str], customer: str = "c1", amount: float = 5.0,
           zone: Any = UTC, lpay: bool = False) -> Purchase:
    lines = tuple(Line(f"p-{c}", (c, "X"), 1, amount) for c in categories)
    return Purchase(event_id=event_id, customer_id=customer, event_time=at(day, 10, zone), lines=lines, lpay=lpay)


def state_of(days: dict[int, list[str]], customer: str = "c1", zone: Any = UTC) -> CustomerState:
    state = None
    for i, (day, cats) in enumerate(sorted(days.items())):
        state = apply(state, basket(f"{customer}-e{i}", day, cats, customer, zone=zone))
    assert state is not None
    return state


def campaign(trigger: dict[str, Any], name: str = "c", **extra: Any) -> Campaign:
    return Campaign(name=name, trigger=trigger, channel="push", template=name, sender="Shop", **extra)


def dairy_ctx(predicted: int, last_days: tuple[int, ...] = (0, 7, 14)) -> CustomerContext:
    state = state_of({n: ["DAIRY"] for n in last_days})
    return CustomerContext("c1", state, categories={"DAIRY": {"category.next_purchase.date": d(predicted),
                                                               "category.preference": 4}})


# -- repurchase_due --------------------------------------------------------------------------------------------
def test_repurchase_fires_from_lead_days_before_the_date_until_the_window_ends() -> None:
    c = campaign({"type": "repurchase_due", "category": "DAIRY", "lead_days": 2, "window_days": 3})
    ctx = dairy_ctx(predicted=21)  # due day 19, stale after day 22
    fired = {n: repurchase_due(c, ctx, at(n)) for n in range(17, 25)}
    assert [n for n, found in fired.items() if found] == [19, 20, 21, 22]
    keys = {found[0].key for found in fired.values() if found}
    assert keys == {f"c|c1|DAIRY@{d(14).isoformat()}"}  # one cycle, one key, however many sweeps see it
    first = fired[19][0]
    assert first.category == "DAIRY" and first.at == at(19, 0)


def test_a_refit_that_moves_the_date_keeps_the_key_and_a_purchase_starts_a_new_cycle() -> None:
    c = campaign({"type": "repurchase_due", "category": "DAIRY", "window_days": 5})
    before = repurchase_due(c, dairy_ctx(predicted=21), at(21))
    moved = repurchase_due(c, dairy_ctx(predicted=22), at(22))
    assert [x.key for x in before] == [x.key for x in moved]
    # A purchase on day 20, re-scored to day 27: day 22 no longer fires, day 27 does, naming the new cycle.
    rebought = dairy_ctx(predicted=27, last_days=(0, 7, 14, 20))
    assert repurchase_due(c, rebought, at(22)) == []
    again = repurchase_due(c, rebought, at(27))
    assert [x.occurrence for x in again] == [f"DAIRY@{d(20).isoformat()}"]
    # A prediction not after the cycle's last purchase is stale (scores not yet redone): it never fires.
    assert repurchase_due(c, dairy_ctx(predicted=19, last_days=(0, 7, 14, 20)), at(20)) == []


def test_top_k_fires_only_for_the_customers_most_preferred_categories() -> None:
    state = state_of({0: ["DAIRY", "BAKERY", "MEAT"], 7: ["DAIRY", "BAKERY", "MEAT"]})
    ctx = CustomerContext("c1", state, categories={
        "DAIRY": {"category.preference": 5, "category.next_purchase.date": d(14)},
        "BAKERY": {"category.preference": 2, "category.next_purchase.date": d(14)},
        "MEAT": {"category.preference": 4, "category.next_purchase.date": d(14)},
    })
    c = campaign({"type": "repurchase_due", "top_k": 2})
    assert sorted(x.category for x in repurchase_due(c, ctx, at(14))) == ["DAIRY", "MEAT"]


def test_customer_level_date_and_inactive_campaigns() -> None:
    state = state_of({0: ["DAIRY"], 9: ["MEAT"]})
    ctx = CustomerContext("c1", state, scores={"next_purchase.date": d(15)})
    c = campaign({"type": "repurchase_due"})
    assert [x.occurrence for x in repurchase_due(c, ctx, at(15))] == [f"*@{d(9).isoformat()}"]
    ended = campaign({"type": "repurchase_due"}, end=at(15, 0))
    assert repurchase_due(ended, ctx, at(15)) == []
    assert repurchase_due(c, CustomerContext("c1"), at(15)) == []  # no state, nothing due


def test_due_days_count_in_the_customers_zone() -> None:
    seoul = state_of({0: ["DAIRY"], 7: ["DAIRY"]}, customer="k1", zone=SEOUL)
    utc = state_of({0: ["DAIRY"], 7: ["DAIRY"]}, customer="u1")
    cats = {"DAIRY": {"category.next_purchase.date": d(14)}}
    c = campaign({"type": "repurchase_due", "category": "DAIRY", "window_days": 0})
    now = at(13, 16)  # 16:00 UTC on day 13 is 01:00 on day 14 in Seoul
    assert [x.customer_id for x in repurchase_due(c, CustomerContext("k1", seoul, categories=cats), now)] == ["k1"]
    assert repurchase_due(c, CustomerContext("u1", utc, categories=cats), now) == []


# -- lapse -----------------------------------------------------------------------------------------------------
def test_lapse_after_k_mean_intervals_then_stale_after_the_window() -> None:
    ctx = CustomerContext("c1", state_of({0: ["DAIRY"], 10: ["DAIRY"], 20: ["DAIRY"]}))  # gap mean 10
    c = campaign({"type": "lapse", "interval_multiple": 1.5, "window_days": 7})  # recency > 15: from day 36
    fired = [n for n in range(30, 50) if lapse(c, ctx, at(n)) is not None]
    assert fired == list(range(36, 44))
    found = lapse(c, ctx, at(40))
    assert found is not None and found.occurrence == f"lapse@{d(20).isoformat()}" and found.at == at(36, 0)


def test_lapse_on_p_alive_counts_from_the_day_it_is_seen() -> None:
    state = state_of({0: ["DAIRY"], 10: ["DAIRY"]})
    c = campaign({"type": "lapse", "p_alive_below": 0.3})
    assert lapse(c, CustomerContext("c1", state, scores={"p_alive": 0.4}), at(60)) is None
    found = lapse(c, CustomerContext("c1", state, scores={"p_alive": 0.2}), at(60))
    assert found is not None and found.occurrence == f"lapse@{d(10).isoformat()}"


# -- event -----------------------------------------------------------------------------------------------------
def test_event_conditions_first_purchase_basket_lpay_category() -> None:
    first = basket("e1", 0, ["DAIRY"], amount=30.0, lpay=True)
    after1 = apply(None, first)
    second = basket("e2", 3, ["MEAT"], amount=8.0)
    after2 = apply(after1, second)
    welcome = campaign({"type": "event", "first_purchase": True}, name="welcome")
    big = campaign({"type": "event", "min_basket": 25}, name="big")
    lpay = campaign({"type": "event", "lpay": True}, name="lpay")
    meat = campaign({"type": "event", "category": "MEAT"}, name="meat")
    sweep = campaign({"type": "repurchase_due"}, name="sweep")
    camps = {c.name: c for c in (welcome, big, lpay, meat, sweep)}

    one = purchase_candidates(camps, first, after1, first=True)
    assert [(c.campaign, c.occurrence) for c in one] == [("big", "e1"), ("lpay", "e1"), ("welcome", "e1")]
    assert one[0].at == first.event_time
    two = purchase_candidates(camps, second, after2, first=False)
    assert [(c.campaign, c.category) for c in two] == [("meat", "MEAT")]

    refund = Purchase(event_id="r1", customer_id="c1", event_time=at(5),
                      lines=(Line("p-MEAT", ("MEAT", "X"), -1, -8.0),))
    assert on_purchase(meat, refund, apply(after2, refund), first=False) is None  # a return buys nothing
    later = campaign({"type": "event", "category": "MEAT"}, name="later", start=at(10))
    assert on_purchase(later, second, after2, first=False) is None
    with pytest.raises(NudgeError, match="checked against the state of"):
        on_purchase(meat, second, CustomerState("c2"), first=False)


# -- schedule --------------------------------------------------------------------------------------------------
def test_schedule_fires_in_the_campaign_zone_and_goes_stale_after_its_window() -> None:
    c = campaign({"type": "schedule", "cron": "0 10 1 * *", "window_hours": 24}, zone="Asia/Seoul")
    fires = schedule_fires(c, datetime(2017, 1, 1, tzinfo=UTC), datetime(2017, 4, 1, 1, tzinfo=UTC), "Asia/Seoul")
    assert [f.astimezone(UTC) for f in fires] == [datetime(2017, m, 1, 1, tzinfo=UTC) for m in (1, 2, 3, 4)]
    ctx = CustomerContext("c1")
    fire = datetime(2017, 3, 1, 1, tzinfo=UTC)
    found = scheduled(c, ctx, fire + timedelta(hours=23))
    assert [x.occurrence for x in found] == ["2017-03-01T01:00:00+00:00"]
    assert scheduled(c, ctx, fire + timedelta(hours=25)) == []  # past its window: a restart does not send it
    assert scheduled(c, ctx, fire + timedelta(hours=23), since=fire) == []  # (since, now] excludes since


def test_customer_zone_schedules_fire_at_each_customers_local_time() -> None:
    c = campaign({"type": "schedule", "cron": "0 9 * * *", "zone": "customer"})
    kr = CustomerContext("k1", state_of({0: ["DAIRY"]}, "k1", zone=SEOUL))
    us = CustomerContext("u1", state_of({0: ["DAIRY"]}, "u1", zone=ZoneInfo("America/Chicago")))
    now = at(5, 23)
    assert [x.at.hour for x in scheduled(c, kr, now) + scheduled(c, us, now)] == [9, 9]
    assert scheduled(c, kr, now)[0].at.astimezone(UTC).hour == 0
    assert scheduled(c, us, now)[0].at.astimezone(UTC).hour == 15


# -- the due index ---------------------------------------------------------------------------------------------
def _frame(rows: list[tuple[str, str, str, Any]]) -> pd.DataFrame:
    return pd.DataFrame.from_records([(c, cat, out, "m", "v1", value, at(0)) for c, cat, out, value in rows],
                                     columns=["customer_id", "category", "output", "model", "version", "value",
                                              "as_of"])


ALL_TRIGGERS = [
    campaign({"type": "repurchase_due", "category": "DAIRY", "lead_days": 1, "window_days": 2}, name="dairy"),
    campaign({"type": "repurchase_due", "top_k": 2, "window_days": 1}, name="topk"),
    campaign({"type": "repurchase_due", "window_days": 3}, name="whole"),
    campaign({"type": "lapse", "interval_multiple": 1.2, "window_days": 3}, name="lapse"),
    campaign({"type": "lapse", "p_alive_below": 0.3}, name="palive"),
    campaign({"type": "schedule", "cron": "0 9 * * mon", "zone": "customer"}, name="weekly"),
]
CATS = ["DAIRY", "MEAT", "BAKERY"]
ZONES = [UTC, SEOUL, ZoneInfo("America/Chicago"), ZoneInfo("Pacific/Kiritimati")]

customer_data = st.fixed_dictionaries({
    "zone": st.sampled_from(ZONES),
    "days": st.dictionaries(st.integers(0, 30), st.lists(st.sampled_from(CATS), min_size=1, max_size=3,
                                                         unique=True), min_size=1, max_size=5),
    "ahead": st.dictionaries(st.sampled_from([*CATS, ""]), st.integers(-3, 15), max_size=4),
    "pref": st.dictionaries(st.sampled_from(CATS), st.integers(0, 5), max_size=3),
    "p_alive": st.none() | st.floats(0, 1),
})


def _customer(i: int, data: dict[str, Any]) -> tuple[CustomerState, list[tuple[str, str, str, Any]]]:
    cid = f"h{i}"
    state = state_of(data["days"], cid, data["zone"])
    last = max(data["days"])
    rows: list[tuple[str, str, str, Any]] = []
    for cat, ahead in data["ahead"].items():
        out = "category.next_purchase.date" if cat else "next_purchase.date"
        rows.append((cid, cat, out, d(last + ahead)))
    rows += [(cid, cat, "category.preference", p) for cat, p in data["pref"].items()]
    if data["p_alive"] is not None:
        rows.append((cid, "", "p_alive", data["p_alive"]))
    return state, rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(customer_data, min_size=1, max_size=6))
def test_a_sweep_gives_what_the_per_customer_triggers_give(customers: list[dict[str, Any]]) -> None:
    states, rows = {}, []
    for i, data in enumerate(customers):
        state, r = _customer(i, data)
        states[state.customer_id] = state
        rows += r
    index = DueIndex.build(_frame(rows), states)
    ctxs = contexts(_frame(rows), states)
    camps = {c.name: c for c in ALL_TRIGGERS}
    total = 0
    for hour in range(0, 24 * 48, 11):
        now = at(0, 0) + timedelta(hours=hour)
        expected = sorted((c for ctx in ctxs.values() for c in due(camps, ctx, now)),
                          key=lambda c: (c.customer_id, c.campaign, c.occurrence))
        assert index.sweep(camps, now) == expected
        total += len(expected)
    assert total > 0  # each customer has a purchase, so a schedule at least fires: the check is not vacuous


def test_update_moves_the_due_date_and_the_scores_store_frame_builds_the_index(tmp_path: Path) -> None:
    store = ScoreStore(connect(f"sqlite:///{tmp_path / 'nudge.db'}"))
    states = {"c1": state_of({0: ["DAIRY"], 7: ["DAIRY"]}), "c2": state_of({0: ["DAIRY"], 5: ["DAIRY"]}, "c2")}
    dates = pd.DataFrame({"customer_id": ["c1", "c2"], "category": ["DAIRY", "DAIRY"],
                          "output": ["category.next_purchase.date"] * 2, "value": [d(14), d(10)]})
    store.publish("next_purchase_category", "v1", dates, at(7))
    prefs = pd.DataFrame({"customer_id": ["c1"], "category": ["DAIRY"], "output": ["category.preference"],
                          "value": [5]})
    store.publish("preference", "v1", prefs, at(7))
    index = DueIndex.build(store.frame(), states)
    assert len(index) == 2 and index.context("c1").categories["DAIRY"]["category.preference"] == 5
    c = {"dairy": campaign({"type": "repurchase_due", "category": "DAIRY", "window_days": 0}, name="dairy")}
    assert [x.customer_id for x in index.sweep(c, at(10))] == ["c2"]
    assert [x.customer_id for x in index.sweep(c, at(14))] == ["c1"]

    # c1 buys dairy on day 12 and is re-scored: day 14 no longer fires; day 19 does, under the new cycle's key.
    rebought = apply(copy.deepcopy(states["c1"]), basket("c1-e9", 12, ["DAIRY"]))
    index.update("c1", CustomerContext("c1", rebought, categories={"DAIRY": {"category.next_purchase.date": d(19)}}))
    assert index.sweep(c, at(14)) == []
    found = index.sweep(c, at(19))
    assert [x.key for x in found] == [f"dairy|c1|DAIRY@{d(12).isoformat()}"]
    assert index.sweep(c, at(19), seen={found[0].key}) == []  # what the ledger holds is not offered again
    index.remove("c1")
    assert index.sweep(c, at(19)) == [] and len(index) == 1
    with pytest.raises(NudgeError, match="no customer 'c1'"):
        index.context("c1")

