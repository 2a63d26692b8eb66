"""Replay benchmark on The Complete Journey (155,848 baskets, 1.47M lines): a benchmark, not a test.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/replay.py [--quick] [--profile]

Every comparison is measured in the same run, on the same sorted data:

1. Engine path (iterate `CompleteJourneySource.records()`, `decode` with pydantic, `pipeline.process`
   into a dict of states with a `WatermarkClock`: the embedded runtime's per-event work without SQLite
   checkpoints) against a bare-dict loop over pre-built tuples doing the same bookkeeping with no
   validation, objects or I/O. Alternating runs, best and median reported. The full
   `EmbeddedRuntime.replay` (checkpoints included) is reported alongside, for information.
2. Incremental daily upkeep (the engine path, timed per day of event time) against recomputing every
   household's state from scratch with pandas each day over all lines up to that day (timed on an
   evenly spaced sample of days, extrapolated to the year with a fit of time against rows).
3. State memory per customer (tracemalloc), with and without the product counts.

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object of the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import cProfile
import gc
import io
import json
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from engine import logs
from engine.clock import WatermarkClock
from engine.config import Settings
from engine.errors import DecodeError
from engine.events import UNKNOWN_CATEGORY, Purchase
from engine.pipeline import Ingest, Outcome
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource, load_tables
from engine.state import DEFAULT_NON_MERCHANDISE, CustomerState, StatePolicy

TARGET_ENGINE_VS_BARE = 0.5
TARGET_BATCH_VS_INCREMENTAL = 10.0
TARGET_STATE_BYTES_EX_PRODUCTS = 4 * 1024
SECONDS_PER_DAY = 86_400

BareBasket = tuple[str, int, list[tuple[str, str, int, float]]]


def progress(message: str) -> None:
    """Progress on stderr, so stdout stays the table and the JSON line."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- 1. engine path vs bare-dict loop --------------------------------------------------------------
@dataclass
class EngineRun:
    """One pass of the engine path over the whole source."""

    seconds: float
    baskets: int
    states: dict[str, CustomerState]


def engine_pass(source: CompleteJourneySource, tolerance: timedelta, policy: StatePolicy) -> EngineRun:
    """Records -> decode -> process into a dict of states, as `EmbeddedRuntime.replay` without checkpoints."""
    ingest = Ingest(WatermarkClock(), tolerance, policy)
    decoder = source.decoder
    baskets = 0
    dead_letters = 0
    gc.collect()
    started = time.perf_counter()
    for record in source.records():
        try:
            if ingest(decoder.decode(record.raw, record.where)) not in (Outcome.DUPLICATE, Outcome.PROFILE):
                baskets += 1
        except DecodeError:
            dead_letters += 1
    seconds = time.perf_counter() - started
    if dead_letters:
        progress(f"warning: {dead_letters} dead letters in the engine path")
    return EngineRun(seconds, baskets, ingest.states)


def build_bare(source: CompleteJourneySource) -> list[BareBasket]:
    """(customer, epoch seconds, [(product, top category, quantity, amount), ...]) per basket, in replay order."""
    unknown = UNKNOWN_CATEGORY
    bare: list[BareBasket] = []
    for record in source.records():
        raw = record.raw
        if "event_id" not in raw:
            continue
        lines = [(pid, cat[0] if cat else unknown, qty, amt) for pid, cat, qty, amt in raw["lines"]]
        bare.append((raw["customer_id"], int(raw["event_time"].timestamp()), lines))
    return bare


def bare_pass(baskets: list[BareBasket], non_merchandise: frozenset[str]) -> tuple[float, dict[str, dict]]:
    """The same bookkeeping as the state, in one plain dict per customer, per-line category updates."""
    gc.collect()
    started = time.perf_counter()
    states: dict[str, dict] = {}
    for customer, t, lines in baskets:
        s = states.get(customer)
        if s is None:
            s = states[customer] = {"first": t, "last": t, "baskets": 0, "amount": 0.0, "units": 0,
                                    "categories": {}, "products": {}}
        if t < s["first"]:
            s["first"] = t
        if t > s["last"]:
            s["last"] = t
        s["baskets"] += 1
        day = t // SECONDS_PER_DAY
        categories = s["categories"]
        products = s["products"]
        amount = 0.0
        units = 0
        for pid, category, quantity, line_amount in lines:
            amount += line_amount
            if category not in non_merchandise:
                units += quantity
            c = categories.get(category)
            if c is None:
                categories[category] = [1, day, 0, 0.0]  # count, last day, gaps, running mean gap
            else:
                c[0] += 1
                last = c[1]
                if day > last:
                    gaps = c[2] + 1
                    c[2] = gaps
                    c[3] += (day - last - c[3]) / gaps
                    c[1] = day
            products[pid] = products.get(pid, 0) + 1
        s["amount"] += amount
        s["units"] += units
    return time.perf_counter() - started, states


def runtime_with_checkpoints(source: CompleteJourneySource) -> tuple[float, int, int]:
    """The full `EmbeddedRuntime.replay` into a fresh SQLite home: (seconds, purchases, checkpoint_every)."""
    with tempfile.TemporaryDirectory(prefix="nudge-bench-") as tmp:
        settings = Settings(home=Path(tmp), db_url=None, _env_file=None)
        runtime = EmbeddedRuntime(settings)
        gc.collect()
        started = time.perf_counter()
        summary = runtime.replay(source, fresh=True)
        seconds = time.perf_counter() - started
        runtime.engine.dispose()
    return seconds, summary.run.purchases, settings.checkpoint_every


def profile_engine(source: CompleteJourneySource, tolerance: timedelta, policy: StatePolicy, top: int = 15) -> str:
    """cProfile of one engine pass, the `top` functions by tottime."""
    profiler = cProfile.Profile()
    profiler.enable()
    engine_pass(source, tolerance, policy)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- 2. incremental daily upkeep vs daily batch recompute ------------------------------------------
def incremental_pass(source: CompleteJourneySource, tolerance: timedelta, policy: StatePolicy) -> dict[int, float]:
    """The engine path over the year, timed per day of event time (UTC day ordinal -> seconds).

    Day boundaries are read from the raw record before decoding; the profiles, which precede the
    baskets, are counted in the first day.
    """
    ingest = Ingest(WatermarkClock(), tolerance, policy)
    decoder = source.decoder
    per_day: dict[int, float] = {}
    current: int | None = None
    gc.collect()
    mark = time.perf_counter()
    for record in source.records():
        when = record.raw.get("event_time")
        if when is not None:
            day = when.toordinal()
            if day != current:
                now = time.perf_counter()
                if current is not None:
                    per_day[current] = per_day.get(current, 0.0) + now - mark
                    mark = now
                current = day
        with contextlib.suppress(DecodeError):  # the engine path over the CJ year has no dead letters
            ingest(decoder.decode(record.raw, record.where))
    if current is not None:
        per_day[current] = per_day.get(current, 0.0) + time.perf_counter() - mark
    return per_day


def batch_frame(tables: dict[str, pd.DataFrame], non_merchandise: frozenset[str]) -> pd.DataFrame:
    """All lines in replay order with what the batch needs: department (categorical), ts, day, units."""
    tx = tables["transactions"].sort_values(["transaction_timestamp", "basket_id"], kind="stable")
    department = tables["products"].drop_duplicates("product_id").set_index("product_id")["department"]
    dept = tx["product_id"].map(department).fillna(UNKNOWN_CATEGORY).astype(str)
    ts = tx["transaction_timestamp"].astype("datetime64[s]").astype("int64").to_numpy()  # naive = UTC
    merchandise = ~dept.isin(sorted(non_merchandise)).to_numpy()
    return pd.DataFrame({
        "household_id": tx["household_id"].to_numpy(),
        "basket_id": tx["basket_id"].to_numpy(),
        "department": pd.Categorical(dept.to_numpy()),
        "ts": ts,
        "day": ts // SECONDS_PER_DAY,
        "spend": tx["sales_value"].to_numpy(),
        "units": np.where(merchandise, tx["quantity"].to_numpy(), 0),
    })


def _gap_stats(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and sample variance of the gaps between consecutive distinct days, per `keys`.

    The frame is in time order, so first occurrences are already sorted by day within each group.
    """
    distinct = frame[[*keys, "day"]].drop_duplicates()
    gaps = distinct.groupby(keys, sort=False, observed=True)["day"].diff()
    return gaps.groupby([distinct[k] for k in keys], observed=True).agg(["mean", "var"])


def batch_recompute(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-household and per household x department state, from scratch, over all of `frame`."""
    by_hh = frame.groupby("household_id")
    households = pd.DataFrame({
        "first_ts": by_hh["ts"].min(),
        "last_ts": by_hh["ts"].max(),
        "baskets": by_hh["basket_id"].nunique(),
        "spend": by_hh["spend"].sum(),
        "units": by_hh["units"].sum(),
        "days": by_hh["day"].nunique(),
    })
    keys = ["household_id", "department"]
    by_cat = frame.groupby(keys, observed=True)
    categories = pd.DataFrame({
        "spend": by_cat["spend"].sum(),
        "baskets": by_cat["basket_id"].nunique(),
        "days": by_cat["day"].nunique(),
    }).join(_gap_stats(frame, keys))
    return households, categories


@dataclass
class BatchEstimate:
    """The daily batch over the year, from a sample of days."""

    total_s: float  # from the fit of seconds against rows, summed over every day
    stride_total_s: float  # sum of measured seconds x stride, for comparison
    sampled_days: int
    year_days: int
    stride: int
    measured_s: float  # wall time actually spent recomputing
    full_year_day_s: float  # one recompute over all lines (the last day)
    fit: tuple[float, float]  # seconds = a + b * rows


def batch_year(frame: pd.DataFrame, stride: int) -> BatchEstimate:
    """Recompute on every `stride`-th day (ending on the last day), extrapolate to all days of the year."""
    day = frame["day"].to_numpy()
    days = np.arange(day.min(), day.max() + 1)
    rows_upto = np.searchsorted(day, days, side="right")  # frame is in time order
    sample = list(range(len(days) - 1, -1, -stride))[::-1]
    rows, seconds = [], []
    for i in sample:
        n = int(rows_upto[i])
        gc.collect()
        started = time.perf_counter()
        batch_recompute(frame.iloc[:n])
        seconds.append(time.perf_counter() - started)
        rows.append(n)
    b, a = np.polyfit(np.asarray(rows, dtype=float), np.asarray(seconds), 1)
    total = float(np.sum(a + b * rows_upto))
    return BatchEstimate(total, sum(seconds) * stride, len(sample), len(days), stride, sum(seconds),
                         seconds[-1], (float(a), float(b)))


# -- 3. state memory ---------------------------------------------------------------------------------
@dataclass
class Memory:
    """tracemalloc bytes held by the folded states."""

    customers: int
    total: int
    products: int


def state_memory(source: CompleteJourneySource, tolerance: timedelta, policy: StatePolicy) -> Memory:
    """Fold the engine path into fresh states under tracemalloc; clear the product counts, measure again.

    Decoding runs before tracing starts (tracing every pydantic allocation would make this step take
    a minute): the decoded purchases are then processed under tracing, and dropped before measuring,
    so only what the states hold counts. The source's arrays, the product id strings the `products`
    dicts key on and the interned category names were allocated before tracing and do not count; the
    customer id strings (made by the source, held by the states) are added with `sys.getsizeof`.
    """
    decoded = (source.decoder.decode(r.raw, r.where) for r in source.records())
    purchases = [e for e in decoded if isinstance(e, Purchase)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ingest = Ingest(WatermarkClock(), tolerance, policy)
        for event in purchases:
            ingest(event)
        states = ingest.states
        del purchases, event, ingest  # only what the states hold should count
        gc.collect()
        with_products = tracemalloc.get_traced_memory()[0]
        for s in states.values():
            s.products.clear()
        gc.collect()
        without_products = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    ids = sum(sys.getsizeof(cid) for cid in states)
    return Memory(len(states), with_products - before + ids, with_products - without_products)


# -- driver ----------------------------------------------------------------------------------------
def timed(label: str, fn: Callable[[], object]) -> tuple[float, object]:
    """Run `fn`, report its wall time on stderr."""
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    progress(f"{label}: {seconds:.1f} s")
    return seconds, result


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    """Run the benchmark; print the table and the JSON line; return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 run a side, ~13 sampled batch days, no runtime run")
    parser.add_argument("--reps", type=int, default=None, help="runs of each side of comparison 1 (default 3)")
    parser.add_argument("--batch-stride", type=int, default=None, help="recompute the batch every Nth day (7)")
    parser.add_argument("--profile", action="store_true", help="also cProfile one engine pass (stderr)")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    stride = args.batch_stride or (30 if args.quick else 7)

    logs.configure("WARNING")  # the runtime's info logs would go to stderr anyway; keep them quiet
    settings = Settings(_env_file=None)
    tolerance, policy = settings.future_tolerance, settings.policy
    non_merch = frozenset(policy.non_merchandise) or DEFAULT_NON_MERCHANDISE
    bench_started = time.perf_counter()

    load_s, tables = timed("load parquet tables (excluded)", load_tables)
    build_s, source = timed("build CompleteJourneySource: sort + arrays (excluded)",
                            lambda: CompleteJourneySource(zone="UTC", tables=tables))
    _, bare = timed("pre-build bare tuples (excluded)", lambda: build_bare(source))
    n_baskets = len(bare)
    n_lines = sum(len(lines) for _, _, lines in bare)

    # 1. engine vs bare, alternating
    engine_s: list[float] = []
    bare_s: list[float] = []
    customers = 0
    for rep in range(reps):
        run = engine_pass(source, tolerance, policy)
        assert run.baskets == n_baskets, (run.baskets, n_baskets)
        customers = len(run.states)
        engine_s.append(run.seconds)
        del run
        seconds, bare_states = bare_pass(bare, non_merch)
        assert len(bare_states) == customers
        bare_s.append(seconds)
        del bare_states
        progress(f"run {rep + 1}/{reps}: engine {engine_s[-1]:.2f} s, bare {bare_s[-1]:.2f} s")
    engine_best, engine_median = n_baskets / min(engine_s), n_baskets / statistics.median(engine_s)
    bare_best, bare_median = n_baskets / min(bare_s), n_baskets / statistics.median(bare_s)
    ratio, ratio_median = engine_best / bare_best, engine_median / bare_median
    del bare
    gc.collect()

    if args.profile:
        progress("cProfile of one engine pass:\n" + profile_engine(source, tolerance, policy))

    runtime_rate = None
    checkpoint_every = settings.checkpoint_every
    if not args.quick:
        _, (rt_seconds, rt_purchases, checkpoint_every) = timed(
            "EmbeddedRuntime.replay with checkpoints", lambda: runtime_with_checkpoints(source))
        assert rt_purchases == n_baskets
        runtime_rate = n_baskets / rt_seconds

    # 2. incremental vs batch
    _, per_day = timed("incremental daily upkeep", lambda: incremental_pass(source, tolerance, policy))
    incremental_s = sum(per_day.values())
    _, batch = timed(f"daily batch recompute, every {stride}th day (frame prep excluded)",
                     lambda: batch_year(batch_frame(tables, non_merch), stride))
    batch_ratio = batch.total_s / incremental_s

    # 3. memory
    _, memory = timed("state memory (tracemalloc fold)", lambda: state_memory(source, tolerance, policy))
    per_customer = memory.total / memory.customers
    products_per_customer = memory.products / memory.customers
    ex_products = per_customer - products_per_customer
    progress(f"total bench time {time.perf_counter() - bench_started:.0f} s")

    figures: dict[str, float | int | None] = {
        "engine_baskets_per_s": round(engine_best, 1),
        "engine_baskets_per_s_median": round(engine_median, 1),
        "bare_baskets_per_s": round(bare_best, 1),
        "bare_baskets_per_s_median": round(bare_median, 1),
        "engine_vs_bare": round(ratio, 4),
        "engine_vs_bare_median": round(ratio_median, 4),
        "runtime_with_checkpoints_baskets_per_s": None if runtime_rate is None else round(runtime_rate, 1),
        "incremental_s": round(incremental_s, 3),
        "incremental_days": len(per_day),
        "batch_s": round(batch.total_s, 3),
        "batch_s_stride_estimate": round(batch.stride_total_s, 3),
        "batch_full_year_recompute_s": round(batch.full_year_day_s, 3),
        "batch_vs_incremental": round(batch_ratio, 2),
        "batch_days_sampled": batch.sampled_days,
        "batch_days_in_year": batch.year_days,
        "batch_stride": batch.stride,
        "state_bytes_per_customer": round(per_customer, 1),
        "state_bytes_per_customer_ex_products": round(ex_products, 1),
        "products_bytes_per_customer": round(products_per_customer, 1),
        "customers": memory.customers,
        "baskets": n_baskets,
        "lines": n_lines,
        "reps": reps,
        "load_excluded_s": round(load_s + build_s, 2),
    }
    print_table(figures, batch, checkpoint_every)
    print(json.dumps(figures))
    return figures


def _verdict(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def print_table(f: dict, batch: BatchEstimate, checkpoint_every: int) -> None:
    """The human table, on stdout."""
    console = Console(width=120, force_terminal=False, highlight=False)
    table = Table(title=f"nudge replay bench: The Complete Journey, {f['baskets']:,} baskets, {f['lines']:,} lines, "
                  f"{f['customers']:,} households")
    table.add_column("measure")
    table.add_column("figure", justify="right")
    table.add_column("target", justify="right")
    table.add_column("", justify="center")
    reps = f["reps"]
    table.add_row(f"engine path, baskets/s (best / median of {reps})",
                  f"{f['engine_baskets_per_s']:,.0f} / {f['engine_baskets_per_s_median']:,.0f}", "", "")
    table.add_row(f"bare-dict loop, baskets/s (best / median of {reps})",
                  f"{f['bare_baskets_per_s']:,.0f} / {f['bare_baskets_per_s_median']:,.0f}", "", "")
    table.add_row("engine / bare (best; median)", f"{f['engine_vs_bare']:.3f}; {f['engine_vs_bare_median']:.3f}",
                  f">= {TARGET_ENGINE_VS_BARE}", _verdict(f["engine_vs_bare"] >= TARGET_ENGINE_VS_BARE))
    rt = f["runtime_with_checkpoints_baskets_per_s"]
    table.add_row(f"EmbeddedRuntime.replay with SQLite checkpoints (every {checkpoint_every:,} records), baskets/s",
                  "skipped (--quick)" if rt is None else f"{rt:,.0f}", "info", "")
    table.add_section()
    table.add_row("incremental daily upkeep, year total s", f"{f['incremental_s']:.2f}", "", "")
    table.add_row(f"daily batch recompute, year total s (sampled {batch.sampled_days} of {batch.year_days} days)",
                  f"{f['batch_s']:.1f}", "", "")
    table.add_row("  (stride estimate: sum of measured x stride)", f"{f['batch_s_stride_estimate']:.1f}", "", "")
    table.add_row("  (one recompute over the full year's lines, s)", f"{f['batch_full_year_recompute_s']:.3f}", "", "")
    table.add_row("batch / incremental", f"{f['batch_vs_incremental']:.1f}", f">= {TARGET_BATCH_VS_INCREMENTAL:g}",
                  _verdict(f["batch_vs_incremental"] >= TARGET_BATCH_VS_INCREMENTAL))
    table.add_section()
    table.add_row("state KiB per customer, total", f"{f['state_bytes_per_customer'] / 1024:.2f}", "", "")
    table.add_row("state KiB per customer, excluding product counts",
                  f"{f['state_bytes_per_customer_ex_products'] / 1024:.2f}",
                  f"<= {TARGET_STATE_BYTES_EX_PRODUCTS / 1024:g}",
                  _verdict(f["state_bytes_per_customer_ex_products"] <= TARGET_STATE_BYTES_EX_PRODUCTS))
    table.add_row("product counts KiB per customer", f"{f['products_bytes_per_customer'] / 1024:.2f}", "info", "")
    console.print(table)
    a, b = batch.fit
    notes = [
        f"Excluded from every timing: parquet load + source construction (sort, per-line arrays), "
        f"{f['load_excluded_s']:.1f} s; the bare tuples and the batch's DataFrame are built before timing too.",
        "Engine path = records() -> decode (pydantic) -> pipeline.process into a dict + WatermarkClock, no SQLite; "
        "gc.collect() before each run; runs alternate engine/bare.",
        f"Incremental = the engine path over the year, timed per UTC day of event time and summed "
        f"({f['incremental_days']} days with baskets).",
        f"Batch = SAMPLED: pandas recompute from scratch over all lines up to day d, measured on every "
        f"{batch.stride}th day ending on the last ({batch.sampled_days} days, {batch.measured_s:.1f} s measured); "
        f"year total = sum over all {batch.year_days} days of a least-squares fit s = {a:.4f} + {b * 1e6:.4f} us x "
        f"rows. The batch computes fewer figures than the state (no product counts, no household gaps).",
        "Memory = tracemalloc growth while processing every decoded basket into fresh states (decoding done before "
        "tracing; source arrays, product-id strings, category names not counted; customer-id strings added), "
        "product counts = the drop after clearing every `products` dict.",
    ]
    for note in notes:
        console.print(f"- {note}", soft_wrap=True)


if __name__ == "__main__":
    main()
