"""What every model is fitted on: customer states at a watermark, plus the purchase lines before it.

States come from the same `apply` the runtimes use, so a model sees exactly what the engine knows.
Lines are kept for what a state does not hold (baskets for association rules, product sequences).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from engine.events import CustomerProfile, Purchase
from engine.sources import Source
from engine.state import DEFAULT_POLICY, CustomerState, StatePolicy, apply

LINE_COLUMNS = ("customer_id", "event_id", "event_time", "product_id", "category", "quantity", "amount")


@dataclass
class TrainingData:
    """Customer states as of `until` (exclusive) and the lines they were built from."""

    states: dict[str, CustomerState]
    lines: pd.DataFrame  # LINE_COLUMNS; event_time UTC; category = top category
    until: datetime | None  # the training watermark: nothing at or after it was seen
    profiles: dict[str, CustomerProfile] = field(default_factory=dict)

    @property
    def data_hash(self) -> str:
        """A digest of the lines: the registry records which data a version was fitted on."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(pd.util.hash_pandas_object(self.lines, index=False).to_numpy().tobytes())
        return digest.hexdigest()


def factorize(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """`pd.factorize(column.astype(str), sort=True)`, without spelling out a string per line when the column is
    categorical (the lines' ids are): its categories are coded once, then the line codes remapped."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        if len(codes) and codes.min() >= 0:
            names = column.cat.categories.astype(str)
            used = np.flatnonzero(np.bincount(codes, minlength=len(names)))
            order = np.argsort(names.to_numpy()[used], kind="stable")
            remap = np.full(len(names), -1, dtype=np.int64)
            remap[used[order]] = np.arange(len(used))
            return remap[codes], pd.Index(names[used[order]])
    return pd.factorize(column.astype(str), sort=True)


def indexer(index: pd.Index, column: pd.Series) -> np.ndarray:
    """`index.get_indexer(column.astype(str))`, looking up each category once when the column is categorical."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        looked_up = np.append(index.get_indexer(column.cat.categories.astype(str)), -1)
        return looked_up[np.where(codes >= 0, codes, len(looked_up) - 1)]
    return index.get_indexer(column.astype(str))


def voided_mask(lines: pd.DataFrame) -> pd.Series:
    """Lines of quantity 0 and amount 0 to the cent (voided or zero-value scans): neither bought nor returned."""
    return (lines["quantity"] == 0) & (lines["amount"].round(2) == 0)


def bought_mask(lines: pd.DataFrame) -> pd.Series:
    """Lines that buy something: not a return and not voided; `engine.events.is_bought_line` line by line, as
    `apply` counts them."""
    return (lines["quantity"] >= 0) & (lines["amount"] >= 0) & ~voided_mask(lines)


def collect(source: Source, until: datetime | None = None,
            policy: StatePolicy = DEFAULT_POLICY) -> tuple[TrainingData, pd.DataFrame]:
    """Fold `source` into states up to `until`; return them with their lines, and the lines after `until`.

    Records that do not decode are skipped here: the runtimes dead-letter them.
    """
    from engine.errors import DecodeError

    states: dict[str, CustomerState] = {}
    profiles: dict[str, CustomerProfile] = {}
    before: dict[str, list] = {c: [] for c in LINE_COLUMNS}
    after: dict[str, list] = {c: [] for c in LINE_COLUMNS}
    for record in source.records():
        try:
            event = source.decode(record)
        except DecodeError:
            continue
        if isinstance(event, CustomerProfile):
            profiles[event.customer_id] = event
            continue
        seen = until is None or event.event_time < until
        if seen:
            try:
                states[event.customer_id] = apply(states.get(event.customer_id), event, policy)
            except DecodeError:
                continue
        _append_lines(before if seen else after, event)
    return (TrainingData(states, _frame(before), until, profiles), _frame(after))


def _append_lines(columns: dict[str, list], event: Purchase) -> None:
    for pid, category, quantity, amount in event.lines:
        columns["customer_id"].append(event.customer_id)
        columns["event_id"].append(event.event_id)
        columns["event_time"].append(event.event_time)
        columns["product_id"].append(pid)
        columns["category"].append(category[0])
        columns["quantity"].append(quantity)
        columns["amount"].append(amount)


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    for name in ("customer_id", "event_id", "product_id", "category"):
        frame[name] = frame[name].astype("category")
    return frame
