"""Backtest benchmark: the example campaigns over the Complete Journey year, and the two hot paths in it.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/backtest.py [--from 2017-02-01] [--until 2018-01-01] [--households N]

1. The backtest: `nudge run` as the engine runs it — replay on event time into a temporary engine home, the
   campaigns' models refitted at --from and on the 1st of every month, the changed customers re-scored and the
   due sweep run daily, arbitration, the ledger and delivery to file outboxes — with the seconds of each stage
   and their shares of the run.
2. The due sweep over every customer, from the backtest's last scores: `DueIndex.sweep` against the baseline of
   asking `due()` customer by customer (the same candidates, tested), at 30 sweep times.
3. The ledger: recording decisions on SQLite in one batch per sweep (as the runtime does) against the baseline
   of one transaction per decision.

Progress goes to stderr; stdout holds the figures and, last, one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter

from rich.console import Console
from rich.table import Table

from engine import logs
from engine.campaigns.candidates import Candidate, Decision, Verdict
from engine.campaigns.consent import ConsentStore, read_csv
from engine.campaigns.triggers import DueIndex, due
from engine.config import Settings
from engine.db import connect
from engine.delivery.ledger import Ledger
from engine.runtime.campaigns import campaign_table, open_campaigns, reset_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource, load_tables
from engine.store.scores import ScoreStore

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Run the backtest, time the sweep and the ledger; print tables and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", default="2017-02-01", help="Campaigns run from this UTC date.")
    parser.add_argument("--until", dest="end", default="2018-01-01", help="No job runs from this UTC date.")
    parser.add_argument("--households", type=int, help="Only the first N households by id (default: all).")
    parser.add_argument("--ledger-rows", type=int, default=50_000, help="Decisions recorded in the ledger bench.")
    args = parser.parse_args()
    logs.configure("WARNING")
    err = Console(stderr=True)
    out = Console(width=120)
    figures: dict = {}
    tables = load_tables()
    households = None
    if args.households:
        households = set(sorted(tables["transactions"]["household_id"].unique())[: args.households])
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    end = datetime.fromisoformat(args.end).replace(tzinfo=UTC)

    with tempfile.TemporaryDirectory(prefix="nudge-backtest-") as tmp:
        settings = Settings(home=Path(tmp) / "home", campaigns_dir=ROOT / "campaigns",
                            templates_dir=ROOT / "templates")
        runtime = EmbeddedRuntime(settings)
        reset_campaigns(settings, runtime.engine)
        ConsentStore(runtime.engine).record(read_csv(ROOT / "campaigns" / "consent" / "cj_consent.csv"))
        campaigns = open_campaigns(settings, runtime.engine, start=start, end=end)
        source = CompleteJourneySource(households=households, tables=tables)
        err.print(f"backtest: replaying {len(source):,} records, campaigns from {start:%Y-%m-%d} ...")
        began = perf_counter()
        summary = runtime.replay(source, fresh=True, observer=campaigns)
        run_seconds = perf_counter() - began
        stages = dict(campaigns.report.seconds)
        stages["ingest+checkpoints"] = max(run_seconds - sum(stages.values()), 0.0)
        rows = campaign_table(campaigns.ledger, campaigns.running(), campaigns.report.outranked)
        _print_backtest(out, rows, stages, run_seconds, summary.run.records, campaigns.report)
        figures["backtest"] = {
            "from": start.date().isoformat(), "records": summary.run.records, "customers": summary.customers,
            "seconds": round(run_seconds, 1), "records_per_s": round(summary.run.records / run_seconds, 1),
            "stages_s": {k: round(v, 2) for k, v in stages.items()},
            "stage_shares": {k: round(v / run_seconds, 3) for k, v in stages.items()},
            "refits": len(campaigns.report.refits), "fires": dict(campaigns.report.fires),
            "sent": sum(r["sent"] for r in rows), "candidates": sum(r["candidates"] for r in rows),
            "campaigns": rows,
        }

        err.print("due sweep: every customer, index vs customer by customer ...")
        figures["sweep"] = _bench_sweep(out, runtime, campaigns)

    with tempfile.TemporaryDirectory(prefix="nudge-ledger-") as tmp:
        err.print(f"ledger: {args.ledger_rows:,} decisions ...")
        figures["ledger"] = _bench_ledger(out, Path(tmp), args.ledger_rows)
    print(json.dumps(figures, default=str))
    return 0


def _print_backtest(out: Console, rows: list[dict], stages: dict[str, float], seconds: float, records: int,
                    report) -> None:
    table = Table(title=f"backtest: {records:,} records in {seconds:.1f} s")
    cols = ("candidates", "sent", "held_out", "control", "deferred", "capped", "outranked", "over_budget",
            "no_consent", "paused", "aborted", "failed")
    table.add_column("campaign")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for r in rows:
        table.add_row(r["campaign"], *(f"{r[c]:,}" for c in cols))
    out.print(table)
    shares = Table(title="stages")
    for c in ("stage", "seconds", "share"):
        shares.add_column(c, justify="right" if c != "stage" else "left")
    for name, value in sorted(stages.items(), key=lambda kv: -kv[1]):
        shares.add_row(name, f"{value:.2f}", f"{value / seconds:.1%}")
    out.print(shares)
    out.print(f"refits: {[(r['at'][:10], r['seconds']) for r in report.refits]}")


def _bench_sweep(out: Console, runtime: EmbeddedRuntime, campaigns) -> dict:
    frame = ScoreStore(runtime.engine).frame()
    states = runtime.checkpoints.load_states()
    profiles = runtime.checkpoints.load_profiles()
    running = campaigns.campaign_set.campaigns
    began = perf_counter()
    index = DueIndex.build(frame, states, profiles)
    build = perf_counter() - began
    contexts = [index.context(cid) for cid in sorted(states)]
    times = [datetime(2017, 12, 1, tzinfo=UTC) + timedelta(days=i) for i in range(30)]
    index_s, base_s, found, base_found = [], [], 0, 0
    for now in times:
        t = perf_counter()
        got = index.sweep(running, now)
        index_s.append(perf_counter() - t)
        t = perf_counter()
        want = [c for ctx in contexts for c in due(running, ctx, now)]
        base_s.append(perf_counter() - t)
        found += len(got)
        base_found += len(want)
    worst, mean, base = max(index_s), sum(index_s) / len(index_s), sum(base_s) / len(base_s)
    table = Table(title=f"due sweep over {len(states):,} customers ({len(frame):,} score rows), 30 days")
    for c in ("", "mean s", "worst s", "candidates"):
        table.add_column(c, justify="right")
    table.add_row("DueIndex.sweep", f"{mean:.4f}", f"{worst:.4f}", f"{found:,}")
    table.add_row("due() per customer", f"{base:.4f}", f"{max(base_s):.4f}", f"{base_found:,}")
    out.print(table)
    out.print(f"index built in {build:.2f} s; sweep {base / mean:.1f}x faster than customer by customer")
    return {"customers": len(states), "score_rows": len(frame), "build_s": round(build, 3),
            "sweep_mean_s": round(mean, 4), "sweep_worst_s": round(worst, 4), "baseline_mean_s": round(base, 4),
            "speedup": round(base / mean, 1), "candidates": found, "baseline_candidates": base_found,
            "target_s": 1.0}


def _decisions(n: int, tag: str) -> list[Decision]:
    at = datetime(2017, 6, 1, tzinfo=UTC)
    verdicts = (Verdict.QUEUED, Verdict.HELD_OUT, Verdict.CAPPED, Verdict.NO_CONSENT)
    return [Decision(Candidate(f"bench_{i % 7}", str(i), f"{tag}@{i}", at, "bench"), verdicts[i % 4], at)
            for i in range(n)]


def _bench_ledger(out: Console, tmp: Path, n: int) -> dict:
    channel_of = {f"bench_{i}": "push" for i in range(7)}
    batch_ledger = Ledger(connect(f"sqlite:///{tmp}/batch.db"))
    decisions = _decisions(n, "a")
    t = perf_counter()
    for start in range(0, n, 2_000):  # a sweep's decisions are recorded together
        batch_ledger.record(decisions[start:start + 2_000], channel_of)
    batch = perf_counter() - t
    again = perf_counter()
    repeated = batch_ledger.record(decisions[: n // 2], channel_of)  # a replay: every key already there
    repeat = perf_counter() - again
    single_n = min(n, 5_000)
    single_ledger = Ledger(connect(f"sqlite:///{tmp}/single.db"))
    singles = _decisions(single_n, "b")
    t = perf_counter()
    for d in singles:
        single_ledger.record([d], channel_of)
    single = perf_counter() - t
    rate, base_rate = n / batch, single_n / single
    table = Table(title="ledger on SQLite")
    for c in ("", "records", "seconds", "records/s"):
        table.add_column(c, justify="right")
    table.add_row("batched per sweep", f"{n:,}", f"{batch:.2f}", f"{rate:,.0f}")
    table.add_row("replayed (all known)", f"{n // 2:,}", f"{repeat:.2f}", f"{(n // 2) / repeat:,.0f}")
    table.add_row("one transaction each", f"{single_n:,}", f"{single:.2f}", f"{base_rate:,.0f}")
    out.print(table)
    if repeated:
        out.print(f"[red]replayed decisions inserted {repeated} rows[/red]")
    return {"records": n, "seconds": round(batch, 3), "records_per_s": round(rate), "replay_inserted": repeated,
            "replay_records_per_s": round((n // 2) / repeat), "baseline_records_per_s": round(base_rate),
            "speedup": round(rate / base_rate, 1), "target_records_per_s": 5000}


if __name__ == "__main__":
    raise SystemExit(main())
