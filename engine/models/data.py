"""What every model is fitted on: customer states at a watermark, plus the purchase lines before it.

Built from the engine's own stores (`from_stores`: states from the checkpoint, lines from the line store),
or, for a one-shot fit, from a source folded the way the runtimes fold it (`collect`: each record through
the core's `Step`, so `process` and its future-dated rule decide what is accepted). Either way a model sees
exactly what the engine knows, and both give the same data, hash for hash. Lines are kept for what a state
does not hold (baskets for association rules, product sequences).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from engine.clock import watermark_after
from engine.deadletters import DeadLetter
from engine.errors import NudgeError
from engine.events import CustomerProfile
from engine.pipeline import ACCEPTED, DEFAULT_FUTURE_TOLERANCE, Ingest, Step
from engine.sources import ReplayableSource
from engine.state import DEFAULT_POLICY, CustomerState, StatePolicy, apply
from engine.store import lines as stored
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore

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

    @property
    def watermark(self) -> datetime:
        """The time models are fitted at: `until`, or for data collected without one the engine's one rule
        (`engine.clock.watermark_after`) applied to the last line, or to the last purchase without lines."""
        if self.until is not None:
            return self.until
        if isinstance(self.lines, pd.DataFrame) and not self.lines.empty:
            return watermark_after(pd.Timestamp(self.lines["event_time"].max()).to_pydatetime())
        last = [s.last_ts for s in self.states.values() if s.last_ts is not None]
        if not last:
            raise NudgeError("the training data holds no purchase: there is no watermark to fit at")
        return watermark_after(datetime.fromtimestamp(max(last), UTC))


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


def collect(source: ReplayableSource, until: datetime | None = None, policy: StatePolicy = DEFAULT_POLICY,
            tolerance: timedelta = DEFAULT_FUTURE_TOLERANCE) -> tuple[TrainingData, pd.DataFrame]:
    """Fold `source` as a replay would; return the states and lines before `until`, and the lines after it.

    Only accepted purchases count (applied or late: not duplicates, not dead letters), as in the line store.
    """
    ingest = Ingest(None, tolerance, policy)
    step = Step(source.key, source.decoder, ingest)
    seen: dict[str, CustomerState] = {}  # the states before `until`, folded alongside
    accepted = stored.PendingLines()
    for record in source.records():
        result = step(record.raw, record.where, record.position)
        if isinstance(result, DeadLetter) or result[1] not in ACCEPTED:
            continue
        event = result[0]
        accepted.add(event)
        if until is not None and event.event_time < until:
            seen[event.customer_id] = apply(seen.get(event.customer_id), event, policy)
    states = ingest.states if until is None else seen
    return _split(accepted.take(), states, ingest.profiles, until)


def from_stores(checkpoints: CheckpointStore, lines: LineStore, until: datetime | None = None,
                policy: StatePolicy = DEFAULT_POLICY) -> tuple[TrainingData, pd.DataFrame]:
    """Training data from what the engine stored: states from the checkpoint, lines from the line store.

    With `until` before the watermark, the states are refolded from the stored purchases dated before it.
    """
    watermark = checkpoints.watermark()
    if watermark is None:
        raise NudgeError("nothing was replayed into this engine home: run `nudge replay` first, or pass --source")
    table = lines.read()
    if until is None or until > watermark:
        return _split(table, checkpoints.load_states(), checkpoints.load_profiles(), until)
    dropped = lines.dropped_until()
    if dropped is not None:
        raise NudgeError(f"states before {until.isoformat()} cannot be refolded from {lines.root}: retention dropped "
                         f"the lines up to {dropped.isoformat()} (raise line_retention_days, or pass --source)")
    states: dict[str, CustomerState] = {}
    for purchase in stored.purchases(stored.before(table, until)):
        states[purchase.customer_id] = apply(states.get(purchase.customer_id), purchase, policy)
    return _split(table, states, checkpoints.load_profiles(), until)


def line_frame(table: pa.Table) -> pd.DataFrame:
    """The lines of stored purchases as the models read them: `LINE_COLUMNS`, one row a line, in stored order."""
    if table.num_rows == 0 or pc.sum(pc.list_value_length(table.column("lines"))).as_py() == 0:
        return _frame({c: [] for c in LINE_COLUMNS})
    lines = table.column("lines").combine_chunks()
    parents = pc.list_parent_indices(lines)
    flat = lines.flatten()
    return pd.DataFrame({
        "customer_id": _categorical(table.column("customer_id").take(parents)),
        "event_id": _categorical(table.column("event_id").take(parents)),
        # Arrow's "UTC" reads back as ZoneInfo("UTC"): the source path's `to_datetime(utc=True)` gives timezone.utc.
        "event_time": table.column("event_time").take(parents).to_pandas().dt.tz_convert(UTC),
        "product_id": _categorical(flat.field("product_id")),
        "category": _categorical(pc.list_element(flat.field("category"), 0)),
        "quantity": flat.field("quantity").to_numpy(),
        "amount": flat.field("amount").to_numpy(),
    })


def _split(table: pa.Table, states: dict[str, CustomerState], profiles: dict[str, CustomerProfile],
           until: datetime | None) -> tuple[TrainingData, pd.DataFrame]:
    if until is None:
        return TrainingData(states, line_frame(table), None, profiles), line_frame(table.slice(0, 0))
    return (TrainingData(states, line_frame(stored.before(table, until)), until, profiles),
            line_frame(stored.since(table, until)))


def _categorical(values: pa.Array | pa.ChunkedArray) -> pd.Categorical:
    """Strings as `astype("category")` makes them, categories sorted, without a Python string per value."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = pc.dictionary_encode(values)
    names = encoded.dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(names, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return pd.Categorical.from_codes(rank[encoded.indices.to_numpy()], pd.Index(names[order], dtype="str"))


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    for name in ("customer_id", "event_id", "product_id", "category"):
        frame[name] = frame[name].astype("category")
    return frame
