"""The backtest report's figures, gathered from the ledger, the offer book and the line store.

What it says per campaign: what was sent and held out, treated against held-out conversion with the uplift's
Newcombe interval (an A/A check in a backtest), revenue, what the offers cost (discounts redeemed and points,
less subscription fees), net incremental revenue and cost per incremental conversion; then the missions'
funnel, subscribers by tier, points, liability against budgets, and the repurchase coupons' timing lift.
`engine.report.render` draws it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from engine.campaigns.candidates import Verdict
from engine.campaigns.schema import Campaign, RepurchaseDue
from engine.measure.attribution import DEFAULT_WINDOW, CampaignResult, campaign_results, conversions, ledger_frame
from engine.measure.attribution import timing as timing_of
from engine.offers.book import OfferBook
from engine.offers.lifecycle import COUPON_KINDS


def build_report(entries: Iterable, book: OfferBook, lines: pd.DataFrame, campaigns: Mapping[str, Campaign], *,
                 title: str, period: tuple[datetime | None, datetime | None], backtest: bool,
                 window: timedelta = DEFAULT_WINDOW) -> dict[str, Any]:
    """The report as plain values (the contract `engine.report.render` draws)."""
    entries = list(entries)
    results = {r.campaign: r for r in campaign_results(entries, lines, window)}
    steps = book.steps()
    cost, fees, points = _costs(book, steps)
    liability = book.liability()
    verdicts = _verdicts(entries)
    rows = []
    for name in sorted(set(verdicts) | set(results)):
        campaign = campaigns.get(name)
        rows.append(_campaign_row(name, campaign, verdicts.get(name, Counter()), results.get(name),
                                  cost.get(name, 0.0) + points.get(name, 0.0) - fees.get(name, 0.0),
                                  _redemptions(book, name), liability.get(name, {}).get("total", 0.0)))
    language = next((c.language for c in campaigns.values()), "en")
    currency = next((c.currency for c in campaigns.values() if c.offer is not None), "USD")
    due = [n for n, c in campaigns.items() if isinstance(c.trigger, RepurchaseDue)]
    timed = timing_of(entries, lines, due)
    earned = [s for s in steps if s.kind == "points"]
    return {
        "title": title, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "period": {"from": _day(period[0]), "until": _day(period[1])}, "backtest": backtest,
        "currency": currency, "language": language, "window_days": window / timedelta(days=1),
        "campaigns": rows,
        "conversions_over_time": _over_time(entries, lines, window),
        "missions": _missions(book),
        "subscriptions": _subscriptions(book, steps, campaigns),
        "points": {"earned": round(sum(s.amount for s in earned), 2),
                   "customers": len({s.customer_id for s in earned})},
        "liability": [{"campaign": name, **{k: round(v, 2) for k, v in figures.items()},
                       "budget": _budget(campaigns.get(name))} for name, figures in liability.items()],
        "timing": None if timed is None else {"sent": timed.sent, "days": timed.days,
                                              "before_purchase": timed.before_purchase,
                                              "random_day": timed.random_day, "lift": timed.lift,
                                              "bought_at_all": timed.bought_at_all},
    }


def _verdicts(entries: list) -> dict[str, Counter]:
    out: dict[str, Counter] = defaultdict(Counter)
    for e in entries:
        kind = "reminders" if e.occurrence.startswith("reminder@") and e.verdict is Verdict.SENT else e.verdict.value
        out[e.campaign][kind] += 1
    return out


def _costs(book: OfferBook, steps: list) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Per campaign: discounts given by redeemed coupons, subscription fees charged, points earned."""
    cost: dict[str, float] = defaultdict(float)
    for held in book.offers.values():
        if held.kind in COUPON_KINDS and held.status == "redeemed":
            cost[held.campaign] += held.cost
    fees: dict[str, float] = defaultdict(float)
    points: dict[str, float] = defaultdict(float)
    for s in steps:
        if s.kind == "fee":
            fees[s.campaign] += s.amount
        elif s.kind == "points":
            points[s.campaign] += s.amount
    return cost, fees, points


def _redemptions(book: OfferBook, campaign: str) -> int:
    return sum(1 for h in book.offers.values()
               if h.campaign == campaign and h.kind in COUPON_KINDS and h.status == "redeemed")


def _campaign_row(name: str, campaign: Campaign | None, verdicts: Counter, result: CampaignResult | None,
                  offer_cost: float, redemptions: int, liability: float) -> dict[str, Any]:
    u = result.uplift if result is not None else None
    row: dict[str, Any] = {
        "campaign": name, "offer": None if campaign is None or campaign.offer is None else campaign.offer.type,
        "kind": None if campaign is None else campaign.kind,
        "sent": verdicts[Verdict.SENT.value], "reminders": verdicts["reminders"],
        "held_out": verdicts[Verdict.HELD_OUT.value], "control": verdicts[Verdict.CONTROL.value],
        "capped": verdicts[Verdict.CAPPED.value], "over_budget": verdicts[Verdict.OVER_BUDGET.value],
        "no_consent": verdicts[Verdict.NO_CONSENT.value],
        "treated_customers": u.treated if u else 0, "held_out_customers": u.held_out if u else 0,
        "treated_converted": u.treated_converted if u else 0, "held_out_converted": u.held_out_converted if u else 0,
        "rate_treated": u.treated_converted / u.treated if u and u.treated else None,
        "rate_held_out": u.held_out_converted / u.held_out if u and u.held_out else None,
        "uplift": {"estimate": u.difference if u else None, "low": u.low if u else None,
                   "high": u.high if u else None, "measurable": bool(u and u.measurable),
                   "reason": (u.not_measurable if u else "nothing sent"),
                   "contains_zero": u.contains_zero if u and u.measurable else None},
        "offer_cost": round(offer_cost, 2), "redemptions": redemptions, "liability": round(liability, 2),
        "budget": _budget(campaign),
    }
    gross = result.incremental_revenue if result is not None else None
    incremental = u.difference * u.treated if u is not None and u.measurable else None
    row["incremental_revenue"] = None if gross is None else round(gross, 2)
    row["net_incremental_revenue"] = None if gross is None else round(gross - offer_cost, 2)
    row["incremental_conversions"] = None if incremental is None else round(incremental, 2)
    row["cost_per_incremental_conversion"] = (round(offer_cost / incremental, 2)
                                              if incremental is not None and incremental > 0 else None)
    return row


def _budget(campaign: Campaign | None) -> float | None:
    return None if campaign is None or campaign.budget is None else campaign.budget.max_face_value


def _day(when: datetime | None) -> str | None:
    return None if when is None else when.date().isoformat()


def _over_time(entries: list, lines: pd.DataFrame, window: timedelta) -> list[dict[str, Any]]:
    """Converted entries per campaign, group and day of the (would-be) send."""
    frame = ledger_frame(entries)
    if frame.empty:
        return []
    frame = frame.assign(category=frame["category"].where(frame["category"].notna(), None))
    scored = frame.join(conversions(frame, lines, window)[["converted"]])
    scored = scored[scored["converted"]]
    if scored.empty:
        return []
    scored = scored.assign(date=scored["at"].dt.strftime("%Y-%m-%d"))
    counts = scored.groupby(["date", "campaign", "group"]).size().unstack("group", fill_value=0)
    return [{"date": d, "campaign": c, "treated": int(row.get("treated", 0)), "held_out": int(row.get("held_out", 0))}
            for (d, c), row in counts.iterrows()]


def _missions(book: OfferBook) -> list[dict[str, Any]]:
    by: dict[str, Counter] = defaultdict(Counter)
    for held in book.offers.values():
        if held.kind == "stamp_mission":
            c = by[held.campaign]
            c["issued"] += 1
            stamps = len(held.progress.get("stamps", []))
            c["stamps"] += stamps
            c["with_stamps"] += stamps > 0
            c["completed"] += held.status == "completed"
            c["expired"] += held.status == "expired"
        elif held.kind == "reward" and held.status == "redeemed":
            by[held.campaign]["rewards_redeemed"] += 1
    return [{"campaign": name, **{k: c[k] for k in ("issued", "with_stamps", "completed", "rewards_redeemed",
                                                     "expired", "stamps")}} for name, c in sorted(by.items())]


def _subscriptions(book: OfferBook, steps: list, campaigns: Mapping[str, Campaign]) -> list[dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for held in book.offers.values():
        if held.kind != "subscription":
            continue
        row = by.setdefault(held.campaign, {"campaign": held.campaign, "offered": 0, "taken_up": 0, "active": 0,
                                            "churned": 0, "by_tier": Counter(), "fees": 0.0, "points": 0.0})
        row["offered"] += 1
        row["taken_up"] += held.status in ("active", "churned")
        row["active"] += held.status == "active"
        row["churned"] += held.status == "churned"
        if held.status == "active":
            row["by_tier"][held.progress.get("tier") or "no tier"] += 1
    for s in steps:
        if s.campaign in by and s.kind in ("fee", "points"):
            by[s.campaign]["fees" if s.kind == "fee" else "points"] += s.amount
    def ordered(name: str, counts: Counter) -> dict[str, int]:  # "no tier", then the campaign's tiers, rising
        offer = getattr(campaigns.get(name), "offer", None)
        rank = {t.name: i for i, t in enumerate(getattr(offer, "tiers", []))}
        return dict(sorted(counts.items(), key=lambda kv: (kv[0] != "no tier", rank.get(kv[0], len(rank)), kv[0])))

    return [{**row, "by_tier": ordered(name, row["by_tier"]), "fees": round(row["fees"], 2),
             "points": round(row["points"], 2)} for name, row in sorted(by.items())]
