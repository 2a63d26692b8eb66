"""Attribution: did the customers a campaign chose buy within its conversion window — treated against held out.

A treated customer is a SENT ledger entry, timed at its send; a held-out one is a HELD_OUT entry, timed when it
would have gone (both passed the same filters). A conversion is a bought line after that time and within the
window — in the entry's category when the trigger named one (a repurchase coupon for MEAT converts on MEAT).
The uplift is `engine.measure.uplift`'s; revenue is the bought spend in the window, per customer of each group.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd

from engine.campaigns.candidates import Verdict
from engine.measure.uplift import DEFAULT_MIN_GROUP, Uplift, uplift
from engine.models.data import bought_mask

DEFAULT_WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class CampaignResult:
    """One campaign's conversion, uplift and revenue over a window."""

    campaign: str
    window_days: float
    uplift: Uplift
    revenue_treated: float  # bought spend in the window per treated entry
    revenue_held_out: float | None  # per held-out entry (None without any)

    @property
    def incremental_revenue(self) -> float | None:
        """(treated − held-out revenue per entry) × treated entries, when the uplift is measurable."""
        if not self.uplift.measurable or self.revenue_held_out is None:
            return None
        return (self.revenue_treated - self.revenue_held_out) * self.uplift.treated


def conversions(entries: pd.DataFrame, lines: pd.DataFrame, window: timedelta = DEFAULT_WINDOW) -> pd.DataFrame:
    """Per entry (columns key, customer_id, at, category — None for any): `converted` and `revenue` in the window.

    `lines` are the line store's (`engine.models.data.line_frame`): customer_id, event_time, category, quantity,
    amount. Only bought lines count.
    """
    out = entries[["key", "customer_id", "at", "category"]].copy()
    out["converted"], out["revenue"] = False, 0.0
    if out.empty or lines.empty:
        return out
    bought = lines[bought_mask(lines)]
    spend = (bought.assign(customer_id=bought["customer_id"].astype(str), category=bought["category"].astype(str))
             .groupby(["customer_id", "event_time", "category"], observed=True)["amount"].sum().reset_index())
    for scoped in (False, True):
        part = out[out["category"].notna() == scoped]
        if part.empty:
            continue
        keys = ["customer_id", "category"] if scoped else ["customer_id"]
        rows = spend if scoped else spend.groupby(["customer_id", "event_time"], observed=True)["amount"].sum() \
            .reset_index()
        joined = part[["key", "at", *keys]].merge(rows, on=keys, how="inner")
        inside = joined[(joined["event_time"] > joined["at"]) & (joined["event_time"] <= joined["at"] + window)]
        revenue = inside.groupby("key")["amount"].sum()
        out.loc[part.index, "revenue"] = part["key"].map(revenue).fillna(0.0).to_numpy()
        out.loc[part.index, "converted"] = part["key"].isin(revenue.index).to_numpy()
    return out


def ledger_frame(entries: Iterable) -> pd.DataFrame:
    """Treated and held-out ledger entries as rows: key, campaign, customer_id, group, at, category."""
    rows = []
    for e in entries:
        if e.verdict is Verdict.SENT and e.sent_at is not None:
            rows.append((e.key, e.campaign, e.customer_id, "treated", e.sent_at, e.category))
        elif e.verdict is Verdict.HELD_OUT:
            rows.append((e.key, e.campaign, e.customer_id, "held_out", e.not_before or e.decided_at, e.category))
    frame = pd.DataFrame(rows, columns=["key", "campaign", "customer_id", "group", "at", "category"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def campaign_results(entries: Iterable, lines: pd.DataFrame, window: timedelta = DEFAULT_WINDOW,
                     min_group: int = DEFAULT_MIN_GROUP) -> list[CampaignResult]:
    """Per campaign with treated or held-out entries: conversion, uplift with its interval, revenue."""
    frame = ledger_frame(entries)
    if frame.empty:
        return []
    frame = frame.assign(category=frame["category"].where(frame["category"].notna(), None))
    scored = frame.join(conversions(frame, lines, window)[["converted", "revenue"]])
    results = []
    for name, part in scored.groupby("campaign", sort=True):
        treated, held = part[part["group"] == "treated"], part[part["group"] == "held_out"]
        result = uplift(len(treated), int(treated["converted"].sum()), len(held), int(held["converted"].sum()),
                        min_group=min_group)
        results.append(CampaignResult(str(name), window / timedelta(days=1), result,
                                      float(treated["revenue"].mean()) if len(treated) else 0.0,
                                      float(held["revenue"].mean()) if len(held) else None))
    return results
