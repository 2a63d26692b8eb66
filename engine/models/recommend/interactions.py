"""The customer × product figures every recommender reads, the products never to recommend, and the time
features are computed at."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from engine.errors import NudgeError
from engine.models.data import TrainingData, factorize, voided_mask

DAY = 86400.0


@dataclass
class Interactions:
    """Customer × product figures from the lines before `now`: the one input every recommender reads."""

    now: pd.Timestamp
    customers: pd.Index  # customer ids (str), row order
    products: pd.Index  # product ids (str), column order
    category: np.ndarray  # top category code per product
    categories: pd.Index  # top category names
    pairs: pd.DataFrame  # one row a (customer, product) with net > 0: c, p, net, decayed, days, first, last
    counts: sp.csr_matrix  # net line counts (> 0 only)
    popularity: np.ndarray  # net lines per product (all customers)
    recent: np.ndarray  # bought lines per product in the last `recent_days`
    buyers: np.ndarray  # customers per product
    customer_lines: np.ndarray  # net lines per customer
    customer_recency: np.ndarray  # days from the customer's last purchase to `now`
    category_share: sp.csr_matrix  # customer × category share of the customer's lines


def interactions(lines: pd.DataFrame, now: datetime | pd.Timestamp, half_life_days: float = 90.0,
                 recent_days: int = 28) -> Interactions:
    """Aggregate `lines` before `now` per customer and product (returned lines count −1)."""
    now = pd.Timestamp(now)
    lines = lines[(lines["event_time"] < now) & ~voided_mask(lines)]  # a voided scan is neither bought nor returned
    if lines.empty:
        raise NudgeError(f"recommend: no purchase lines before {now.isoformat()} to fit on")
    cust_codes, customers = factorize(lines["customer_id"])
    prod_codes, products = factorize(lines["product_id"])
    returned = ((lines["quantity"] < 0) | (lines["amount"] < 0)).to_numpy()
    sign = np.where(returned, -1.0, 1.0)
    age = ((now - lines["event_time"]).dt.total_seconds() / DAY).to_numpy()
    day = np.floor(-age).astype(np.int64)  # day number relative to `now` (negative)
    bought = ~returned
    frame = pd.DataFrame({
        "c": cust_codes, "p": prod_codes, "net": sign,
        "decayed": np.where(bought, 0.5 ** (age / half_life_days), 0.0),
        "decayed_fast": np.where(bought, 0.5 ** (age / 21.0), 0.0),
        "day": np.where(bought, day, np.iinfo(np.int64).min),
    })
    grouped = frame.groupby(["c", "p"], sort=True)
    pairs = grouped.agg(net=("net", "sum"), decayed=("decayed", "sum"), decayed_fast=("decayed_fast", "sum"),
                        last=("day", "max")).reset_index()
    days = frame[bought].drop_duplicates(["c", "p", "day"]).groupby(["c", "p"], sort=True)["day"]
    span = days.agg(["min", "count"]).rename(columns={"min": "first", "count": "days"}).reset_index()
    pairs = pairs.merge(span, on=["c", "p"], how="left")
    pairs = pairs[pairs["net"] > 0].reset_index(drop=True)
    shape = (len(customers), len(products))
    counts = sp.csr_matrix((pairs["net"].to_numpy(np.float32), (pairs["c"], pairs["p"])), shape=shape)

    cat_codes, categories = factorize(lines["category"])
    category = np.zeros(len(products), dtype=np.int64)
    category[prod_codes] = cat_codes
    popularity = np.bincount(prod_codes, weights=sign, minlength=len(products))
    recent_mask = bought & (age < recent_days)
    recent = np.bincount(prod_codes[recent_mask], minlength=len(products)).astype(float)
    buyers = np.bincount(pairs["p"], minlength=len(products)).astype(float)
    customer_lines = np.bincount(pairs["c"], weights=pairs["net"], minlength=len(customers))
    last_day = np.full(len(customers), np.iinfo(np.int64).min)
    np.maximum.at(last_day, cust_codes[bought], day[bought])
    per_cat = sp.csr_matrix((pairs["net"].to_numpy(float), (pairs["c"], category[pairs["p"]])),
                            shape=(len(customers), len(categories)))
    share = sp.diags(1.0 / np.maximum(customer_lines, 1.0)) @ per_cat
    return Interactions(now, customers, products, category, categories, pairs, counts, popularity, recent,
                        buyers, customer_lines, -last_day.astype(float), share.tocsr())


def banned_products(data: TrainingData, inter: Interactions, exclude_categories: tuple[str, ...]) -> set[str]:
    """Products never to recommend: net ≤ 0 over everyone (states when present), or an excluded category."""
    banned = set(inter.products[inter.popularity <= 0])
    if data.states:
        totals: dict[str, int] = {}
        for state in data.states.values():
            for pid, count in state.products.items():
                totals[pid] = totals.get(pid, 0) + count
        banned |= {pid for pid, total in totals.items() if total <= 0}
    excluded = [i for i, name in enumerate(inter.categories) if name in exclude_categories]
    banned |= set(inter.products[np.isin(inter.category, excluded)])
    return banned



def watermark(data: TrainingData) -> datetime:
    """The time features are computed at: the training watermark (`TrainingData.watermark`); lines are needed."""
    if data.lines.empty:
        raise NudgeError("recommend: the training data holds no purchase lines")
    return data.watermark
