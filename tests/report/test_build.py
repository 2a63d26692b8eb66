"""The report's figures from a real offer book and ledger-shaped entries: offer cost, net incremental revenue, cost
per incremental conversion, and "not measurable" for an empty holdout."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd
from sqlalchemy import create_engine

from engine.campaigns.candidates import Verdict
from engine.campaigns.schema import Campaign, Coupon
from engine.events import Purchase
from engine.offers.book import OfferBook
from engine.offers.issue import IssuedOffer, end_of_day
from engine.report.build import build_report

T = datetime(2017, 11, 6, 10, tzinfo=UTC)


@dataclass
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


def _lines(rows: list[tuple[str, datetime, float]]) -> pd.DataFrame:
    frame = pd.DataFrame([(c, t, "GROCERY", 1, a) for c, t, a in rows],
                         columns=["customer_id", "event_time", "category", "quantity", "amount"])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    return frame


def test_net_revenue_and_cost_per_incremental_conversion_come_from_the_offers_and_the_holdout(tmp_path) -> None:
    coupon = Coupon(amount_off=5, validity_days=7)
    promo = Campaign(name="promo", trigger={"type": "event"}, offer=coupon, channel="file", template="t",
                     sender="Shop")
    lonely = Campaign(name="lonely", trigger={"type": "event"}, channel="file", template="t", sender="Shop",
                      holdout=0)
    book = OfferBook(create_engine(f"sqlite:///{tmp_path / 'o.db'}"))
    entries, rows = [], []
    for i in range(40):  # 40 treated: 30 buy 20.0 the next day, and redeem their coupon
        cid = f"t{i}"
        entries.append(_Entry(f"k{i}", "promo", cid, Verdict.SENT, T, sent_at=T))
        book.issue(promo, cid, f"k{i}", IssuedOffer("coupon", f"C{i}", 5.0, "USD", end_of_day(T, "UTC", 7)),
                   "UTC", T)
        if i < 30:
            rows.append((cid, T + timedelta(days=1), 20.0))
            book.purchase(Purchase(event_id=f"e{i}", customer_id=cid, event_time=T + timedelta(days=1),
                                   lines=(("p", ("GROCERY",), 1, 20.0),)))
    for i in range(20):  # 20 held out: 10 buy 20.0
        entries.append(_Entry(f"h{i}", "promo", f"h{i}", Verdict.HELD_OUT, T, not_before=T))
        if i < 10:
            rows.append((f"h{i}", T + timedelta(days=1), 20.0))
    entries.append(_Entry("x", "lonely", "t0", Verdict.SENT, T, sent_at=T))
    report = build_report(entries, book, _lines(rows), {"promo": promo, "lonely": lonely}, title="t",
                          period=(T, None), backtest=True)
    by = {r["campaign"]: r for r in report["campaigns"]}
    p = by["promo"]
    assert (p["sent"], p["held_out"], p["treated_converted"], p["held_out_converted"]) == (40, 20, 30, 10)
    assert p["redemptions"] == 30 and p["offer_cost"] == 150.0
    assert abs(p["uplift"]["estimate"] - 0.25) < 1e-12 and p["uplift"]["measurable"]
    assert p["incremental_revenue"] == (15.0 - 10.0) * 40  # 20.0 × 30/40 treated against 20.0 × 10/20 held out
    assert p["net_incremental_revenue"] == 200.0 - 150.0
    assert p["incremental_conversions"] == 10.0 and p["cost_per_incremental_conversion"] == 15.0
    assert p["liability"] == 50.0  # the ten coupons still open
    assert not by["lonely"]["uplift"]["measurable"] and by["lonely"]["uplift"]["reason"]  # an empty holdout
    assert by["lonely"]["net_incremental_revenue"] is None
    assert report["liability"] == [{"campaign": "promo", "coupons": 50.0, "rewards": 0.0, "points": 0.0,
                                    "total": 50.0, "budget": None}]
