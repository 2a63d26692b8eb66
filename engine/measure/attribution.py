"""Attribution: did the customers a campaign chose buy within its conversion window — treated against held out.

A treated customer is a SENT ledger entry (a coupon's reminder aside), timed at its send; a held-out one is a
HELD_OUT entry, timed when it would have gone (both passed the same filters). A conversion is a bought line after
that time and within the window — in the entry's category when the trigger named one (a repurchase coupon for MEAT
converts on MEAT). The uplift is `engine.measure.uplift`'s; revenue is the bought spend in the window, per customer
of each group.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
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
    revenue_treated: float  # bought spend from the first entry to the end, per treated customer
    revenue_held_out: float | None  # per held-out customer (None without any)

    @property
    def incremental_revenue(self) -> float | None:
        """(treated − held-out revenue per customer) × treated customers, when the uplift is measurable."""
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
        if e.occurrence.startswith("reminder@"):
            continue  # a coupon's reminder goes to treated customers only: it is part of their treatment
        if e.verdict is Verdict.SENT and e.sent_at is not None:
            rows.append((e.key, e.campaign, e.customer_id, "treated", e.sent_at, e.category))
        elif e.verdict is Verdict.HELD_OUT:
            rows.append((e.key, e.campaign, e.customer_id, "held_out", e.not_before or e.decided_at, e.category))
    frame = pd.DataFrame(rows, columns=["key", "campaign", "customer_id", "group", "at", "category"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def campaign_results(entries: Iterable, lines: pd.DataFrame, window: timedelta = DEFAULT_WINDOW,
                     min_group: int = DEFAULT_MIN_GROUP) -> list[CampaignResult]:
    """Per campaign with treated or held-out entries: conversion, uplift with its interval, revenue.

    The unit is the customer, as the holdout draws them, from their first entry (intent to treat): whether they
    converted in the window after it, and everything they bought from it to the end of the lines (revenue: what
    the whole campaign may have changed, to set against the whole campaign's offer cost). Counting every entry
    would take a customer's many messages for independent draws (too narrow an interval); pooling a customer's
    entries would let the treatment change how many windows a group gets (a subscriber is offered no more; a
    held-out customer is, monthly).
    """
    frame = ledger_frame(entries)
    if frame.empty:
        return []
    frame = frame.sort_values(["at", "key"]).drop_duplicates(["campaign", "customer_id", "group"])
    frame = frame.assign(category=frame["category"].where(frame["category"].notna(), None))
    to_end = max(timedelta(0), lines["event_time"].max() - frame["at"].min()) if not lines.empty else window
    spent = conversions(frame.assign(category=None), lines, to_end)["revenue"]
    scored = frame.join(conversions(frame, lines, window)[["converted"]]).assign(revenue=spent)
    results = []
    for name, part in scored.groupby("campaign", sort=True):
        treated, held = part[part["group"] == "treated"], part[part["group"] == "held_out"]
        result = uplift(len(treated), int(treated["converted"].sum()), len(held), int(held["converted"].sum()),
                        min_group=min_group)
        results.append(CampaignResult(str(name), window / timedelta(days=1), result,
                                      float(treated["revenue"].mean()) if len(treated) else 0.0,
                                      float(held["revenue"].mean()) if len(held) else None))
    return results


@dataclass(frozen=True)
class Timing:
    """Whether messages landed just before a real purchase in their category, against a random day that month."""

    sent: int
    before_purchase: float  # share sent within `days` before a real purchase in the entry's category
    random_day: float  # the same share had each been sent at a random time in its calendar month
    bought_at_all: float  # share whose customer bought in the category at any time after the send
    days: int

    @property
    def lift(self) -> float | None:
        """before_purchase / random_day (None when the random baseline is 0)."""
        return None if self.random_day == 0 else self.before_purchase / self.random_day


def timing(entries: Iterable, lines: pd.DataFrame, campaigns: Iterable[str], days: int = 3,
           seed: int = 0) -> Timing | None:
    """The timing lift of the sent, category-scoped entries of `campaigns` (repurchase-due coupons); None without."""
    frame = ledger_frame(entries)
    names = set(campaigns)
    frame = frame[(frame["group"] == "treated") & frame["campaign"].isin(names) & frame["category"].notna()]
    if frame.empty:
        return None
    rng = np.random.default_rng(seed)
    month = frame["at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M")  # calendar months in UTC
    starts = month.dt.start_time.dt.tz_localize("UTC")
    lengths = (month.dt.end_time.dt.tz_localize("UTC") - starts).dt.total_seconds().to_numpy()
    random_at = starts + pd.to_timedelta(rng.random(len(frame)) * lengths, unit="s")
    window = timedelta(days=days)
    actual = conversions(frame, lines, window)
    shifted = conversions(frame.assign(at=random_at), lines, window)
    ever = conversions(frame, lines, timedelta(days=10_000))
    return Timing(len(frame), float(actual["converted"].mean()), float(shifted["converted"].mean()),
                  float(ever["converted"].mean()), days)
