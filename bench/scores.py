"""Scores benchmark: re-scoring 1,000 changed customers vs scoring every customer, on real Complete Journey data.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/scores.py [--until 2017-10-01] [--households N] [--changed 1000]

Refits every catalogue model (`refit_all`, writing the scores table in a temporary SQLite database) on the
data before `--until` (the year to October by default; `--households` for the first N only), then changes
`--changed` customers the way the engine would — each one's first real basket after `--until` applied to
its state — and times `rescore` of those customers alone against `score_all` of every customer with the same
serving models at the same time. Progress goes to stderr; stdout holds the figures and, last, one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import copy
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

import pandas as pd
from rich.console import Console
from rich.table import Table

from engine import logs
from engine.db import connect
from engine.events import Purchase
from engine.models.data import collect
from engine.models.outputs import outputs_of
from engine.models.refit import refit_all
from engine.models.registry import Registry
from engine.models.serving import SCORED_MODELS, rescore, write_scores
from engine.sources.completejourney import CompleteJourneySource, load_tables
from engine.state import apply
from engine.store.scores import ScoreStore


def main() -> int:
    """Refit, change customers, time re-scoring them against scoring everyone; print a table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--until", default="2017-10-01", help="Fit on events before this UTC date.")
    parser.add_argument("--households", type=int, help="Only the first N households by id (default: all).")
    parser.add_argument("--changed", type=int, default=1000, help="Customers changed and re-scored.")
    parser.add_argument("--workers", type=int, default=2, help="Models fitted at once by the refit.")
    args = parser.parse_args()
    logs.configure("WARNING")
    err = Console(stderr=True)
    until = datetime.fromisoformat(args.until).replace(tzinfo=UTC)
    tables = load_tables()
    households = None
    if args.households:
        households = set(sorted(tables["transactions"]["household_id"].unique())[: args.households])
    err.print("collecting the training data ...")
    train, after = collect(CompleteJourneySource(households=households, tables=tables), until)

    with tempfile.TemporaryDirectory(prefix="nudge-scores-") as tmp:
        registry = Registry(Path(tmp) / "models")
        store = ScoreStore(connect(f"sqlite:///{tmp}/engine.db"))
        err.print(f"refitting on {len(train.states):,} customers ...")
        report = refit_all(train, registry, scores=store, workers=args.workers)
        if not report.ok:
            err.print([(o.name, o.reason, o.score_error) for o in report.outcomes if not report.ok])
            return 1
        states, changed, now = _changed_states(train.states, after, args.changed)
        err.print(f"re-scoring {len(changed):,} changed customers at {now:%Y-%m-%d} ...")
        began = perf_counter()
        rows = rescore(store, registry, states, changed, now)
        rescore_seconds = perf_counter() - began

        err.print(f"scoring all {len(states):,} customers ...")
        full = ScoreStore(connect(f"sqlite:///{tmp}/full.db"))
        per_model: dict[str, dict[str, float]] = {}
        for name in SCORED_MODELS:
            version = registry.active_version(name).version
            model = registry.load(name, version)
            began = perf_counter()
            written = write_scores(full, name, version, model, states, now)
            per_model[name] = {"full_seconds": perf_counter() - began, "full_rows": written,
                               "rescored_rows": rows.get(name, 0)}
            if any(o.rescored for o in outputs_of(name)):
                began = perf_counter()
                model.score({c: states[c] for c in changed}, now)
                per_model[name]["rescore_score_seconds"] = perf_counter() - began
        full_seconds = sum(m["full_seconds"] for m in per_model.values())
        refit_score_seconds = report.score_seconds

    out = Console(width=120)
    table = Table(title=f"scores: {len(changed):,} changed of {len(states):,} customers, fitted before "
                        f"{until.date()}, scored at {now:%Y-%m-%d}")
    for col in ("model", "all customers s", "rows", "score of the changed s", "rows re-scored"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in per_model.items():
        table.add_row(name, f"{m['full_seconds']:.3f}", f"{m['full_rows']:,}",
                      f"{m['rescore_score_seconds']:.3f}" if "rescore_score_seconds" in m else "(fixed at fit)",
                      f"{m['rescored_rows']:,}")
    all_rows = sum(int(m["full_rows"]) for m in per_model.values())
    table.add_row("total (score + write)", f"{full_seconds:.3f}", f"{all_rows:,}", f"{rescore_seconds:.3f} (rescore)",
                  f"{sum(rows.values()):,}")
    out.print(table)
    out.print(f"re-scoring {len(changed):,} changed customers: {rescore_seconds:.2f} s, scoring all "
              f"{len(states):,}: {full_seconds:.2f} s ({full_seconds / rescore_seconds:.1f}x); the refit wrote "
              f"its scores in {refit_score_seconds:.2f} s")
    figures = {
        "customers": len(states), "changed": len(changed), "until": until.isoformat(), "now": now.isoformat(),
        "rescore_seconds": round(rescore_seconds, 3), "score_all_seconds": round(full_seconds, 3),
        "speedup": round(full_seconds / rescore_seconds, 2), "refit_score_seconds": round(refit_score_seconds, 3),
        "refit_total_seconds": round(report.total_seconds, 3),
        "rows_rescored": sum(rows.values()), "rows_all": all_rows,
        "models": {n: {k: round(v, 3) for k, v in m.items()} for n, m in per_model.items()},
    }
    print(json.dumps(figures))
    return 0


def _changed_states(states: dict, after: pd.DataFrame, count: int) -> tuple[dict, list[str], datetime]:
    """States with `count` customers' first basket after the training period applied, and the time to score at."""
    first = after.sort_values("event_time").drop_duplicates("customer_id")[["customer_id", "event_id"]]
    chosen = [str(c) for c in first["customer_id"] if str(c) in states][:count]
    baskets = after[after["event_id"].isin(set(first["event_id"]))
                    & after["customer_id"].astype(str).isin(set(chosen))]
    changed = dict(states)
    latest = None
    for (cid, event_id), lines in baskets.groupby(["customer_id", "event_id"], observed=True):
        time = lines["event_time"].iloc[0].to_pydatetime()
        event = Purchase(event_id=str(event_id), customer_id=str(cid), event_time=time,
                         lines=tuple((str(r.product_id), (str(r.category),), int(r.quantity), float(r.amount))
                                     for r in lines.itertuples(index=False)))
        changed[str(cid)] = apply(copy.deepcopy(changed[str(cid)]), event)
        latest = time if latest is None else max(latest, time)
    now = (pd.Timestamp(latest).tz_convert("UTC").normalize() + pd.Timedelta(days=1)).to_pydatetime()
    return changed, chosen, now


if __name__ == "__main__":
    sys.exit(main())
