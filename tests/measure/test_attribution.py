"""Attribution on a small ledger and real-shaped lines: the window, the category scope, returns, the groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from engine.campaigns.candidates import Verdict
from engine.measure.attribution import campaign_results, conversions

T = datetime(2017, 6, 1, 8, tzinfo=UTC)


def _lines(*rows: tuple) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "event_time", "category", "quantity", "amount"])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["product_id"] = "p"
    frame["event_id"] = [f"e{i}" for i in range(len(frame))]
    for c in ("customer_id", "category", "product_id", "event_id"):
        frame[c] = frame[c].astype("category")
    return frame


@dataclass(frozen=True)
class _Entry:
    key: str
    campaign: str
    customer_id: str
    verdict: Verdict
    decided_at: datetime
    not_before: datetime | None = None
    sent_at: datetime | None = None
    category: str | None = None
    occurrence: str = "o"


def test_a_conversion_is_a_bought_line_after_the_send_inside_the_window_and_the_category() -> None:
    entries = pd.DataFrame([("k1", "a", T, "MEAT"), ("k2", "b", T, None), ("k3", "c", T, None),
                            ("k4", "d", T, "MEAT")], columns=["key", "customer_id", "at", "category"])
    lines = _lines(("a", T + timedelta(days=3), "MEAT", 1, 12.0),
                   ("a", T + timedelta(days=3), "DAIRY", 1, 5.0),  # not the entry's category
                   ("b", T - timedelta(hours=1), "DAIRY", 1, 9.0),  # before the send
                   ("b", T + timedelta(days=15), "DAIRY", 1, 9.0),  # after the 14-day window
                   ("c", T + timedelta(days=1), "DAIRY", -1, -4.0),  # a return buys nothing
                   ("d", T + timedelta(days=2), "DAIRY", 2, 8.0))  # another category
    got = conversions(entries, lines).set_index("key")
    assert got["converted"].to_dict() == {"k1": True, "k2": False, "k3": False, "k4": False}
    assert got.loc["k1", "revenue"] == 12.0


def test_campaign_results_compare_sent_with_held_out_and_say_when_there_is_no_number() -> None:
    sent = [_Entry(f"s{i}", "promo", f"t{i}", Verdict.SENT, T, sent_at=T) for i in range(30)]
    held = [_Entry(f"h{i}", "promo", f"h{i}", Verdict.HELD_OUT, T - timedelta(hours=2), not_before=T)
            for i in range(20)]
    lonely = [_Entry("x", "tiny", "t0", Verdict.SENT, T, sent_at=T)]
    lines = _lines(*[(f"t{i}", T + timedelta(days=1), "DAIRY", 1, 10.0) for i in range(24)],
                   *[(f"h{i}", T + timedelta(days=1), "DAIRY", 1, 10.0) for i in range(8)])
    results = {r.campaign: r for r in campaign_results(sent + held + lonely, lines)}
    promo = results["promo"].uplift
    assert (promo.treated, promo.treated_converted, promo.held_out, promo.held_out_converted) == (30, 24, 20, 8)
    assert promo.measurable and promo.low < 0.8 - 0.4 < promo.high
    assert results["promo"].incremental_revenue == (8.0 - 4.0) * 30
    assert not results["tiny"].uplift.measurable and results["tiny"].incremental_revenue is None


def test_timing_compares_sends_just_before_a_real_purchase_with_a_random_day_of_the_month() -> None:
    from engine.measure.attribution import timing

    entries = [_Entry(f"k{i}", "coupon", f"c{i}", Verdict.SENT, T, sent_at=T + timedelta(days=i % 28),
                      category="MEAT") for i in range(40)]
    # Every customer buys MEAT two days after their coupon, and DAIRY (out of scope) the day after.
    lines = _lines(*[(f"c{i}", T + timedelta(days=i % 28 + 2), "MEAT", 1, 6.0) for i in range(40)],
                   *[(f"c{i}", T + timedelta(days=i % 28 + 1), "DAIRY", 1, 3.0) for i in range(40)])
    got = timing(entries, lines, ["coupon"], days=3, seed=1)
    assert got is not None and got.sent == 40 and got.before_purchase == 1.0 and got.bought_at_all == 1.0
    assert got.random_day < 0.5 and got.lift > 2
    assert timing(entries, lines, ["another"]) is None


def test_the_unit_is_the_customer_at_their_first_entry_so_many_messages_count_once() -> None:
    sent = [_Entry(f"s{i}-{k}", "promo", f"t{i}", Verdict.SENT, T + timedelta(days=k), sent_at=T + timedelta(days=k),
                   occurrence=f"o{k}") for i in range(10) for k in range(5)]
    held = [_Entry(f"h{i}", "promo", f"h{i}", Verdict.HELD_OUT, T, not_before=T) for i in range(10)]
    reminder = [_Entry("r0", "promo", "t0", Verdict.SENT, T, sent_at=T, occurrence="reminder@CODE")]
    lines = _lines(*[(f"t{i}", T + timedelta(days=2), "DAIRY", 1, 10.0) for i in range(4)],
                   *[(f"h{i}", T + timedelta(days=2), "DAIRY", 1, 10.0) for i in range(4)])
    [result] = campaign_results(sent + held + reminder, lines)
    u = result.uplift
    assert (u.treated, u.treated_converted, u.held_out, u.held_out_converted) == (10, 4, 10, 4)
    assert result.revenue_treated == 10.0 * 4 / 10  # from the first entry on, once
