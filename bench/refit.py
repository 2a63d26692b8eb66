"""Refit benchmark: every model that exists, fitted on the whole Complete Journey year: a benchmark, not a test.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/refit.py [--workers 2] [--models-dir DIR] [--until 2017-10-01]

First replays the year into a temporary engine home (timed apart: that is ingestion, not the refit), then
runs what `nudge refit` runs: the training data from the engine's own stores (states from the checkpoint,
lines from the line store), then `refit_all` fits, times and publishes each model through a registry (a
temporary one unless `--models-dir` is given) and writes its scores for every customer. The target is the
refit, reading the stores and writing the scores included, under 60 s on 2 cores: by default two models are
fitted at once, each single-threaded (`--workers 1` for one after the other).

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object of the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

from rich.console import Console
from rich.table import Table

from engine import logs
from engine.config import Settings
from engine.models.catalogue import CATALOGUE
from engine.models.data import from_stores
from engine.models.refit import refit_all
from engine.models.registry import Registry
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.store.scores import ScoreStore

TARGET_TOTAL_SECONDS = 60.0


def main() -> int:
    """Run the refit once and print per-model times, a verdict, and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="Registry root to publish into (default: a temp dir).")
    parser.add_argument("--workers", type=int, default=2, help="Models fitted at once (default 2: the 2 cores).")
    parser.add_argument("--until", help="Fit on events before this UTC date (default: the whole year).")
    args = parser.parse_args()
    logs.configure("WARNING")
    until = datetime.fromisoformat(args.until).replace(tzinfo=UTC) if args.until else None
    err = Console(stderr=True)
    out = Console(width=120)

    err.print(f"models: {', '.join(e.name for e in CATALOGUE)}")
    with tempfile.TemporaryDirectory(prefix="nudge-refit-") as tmp:
        root = args.models_dir or Path(tmp) / "models"
        settings = Settings(home=Path(tmp) / "home", db_url=None, _env_file=None)
        err.print("replaying the year into a temporary engine home ...")
        runtime = EmbeddedRuntime(settings)
        began = perf_counter()
        runtime.replay(CompleteJourneySource(zone=settings.cj_timezone), fresh=True)
        replay_seconds = perf_counter() - began
        err.print(f"replayed in {replay_seconds:.1f} s; reading the training data from the stores ...")
        began = perf_counter()
        data, _ = from_stores(runtime.checkpoints, runtime.lines, until, settings.policy)
        collect_seconds = perf_counter() - began
        err.print(f"read {len(data.states):,} customers, {len(data.lines):,} lines in {collect_seconds:.1f} s")
        # As `nudge refit` does: each published model's outputs for every customer go to the scores table.
        report = refit_all(data, Registry(root), workers=args.workers, scores=ScoreStore(runtime.engine))
        total = perf_counter() - began
        sizes = {o.name: _artifact_bytes(root, o.name, o.version) for o in report.outcomes}
        runtime.engine.dispose()

    table = Table(title=f"refit of {len(report.outcomes)} model(s) on {len(data.states):,} customers, "
                        f"{len(data.lines):,} lines" + (f" before {until.date()}" if until else " (full year)")
                        + f", {args.workers} worker(s)")
    for col in ("model", "outcome", "fit s", "publish s", "artifact MB", "reason"):
        table.add_column(col, justify="right" if col.endswith(("s", "MB")) else "left", overflow="fold")
    table.add_row("(replay the year into the stores: not the refit)", "", f"{replay_seconds:.2f}", "", "", "")
    table.add_row("(read the training data from the stores)", "", f"{collect_seconds:.2f}", "", "", "")
    for o in report.outcomes:
        table.add_row(o.name, o.status, _fmt(o.fit_seconds), _fmt(o.publish_seconds),
                      f"{sizes[o.name] / 1e6:.1f}" if sizes[o.name] else "-", o.reason or "")
    table.add_row("(write every model's scores for every customer)", "", f"{report.score_seconds:.2f}", "", "", "")
    verdict = "PASS" if total < TARGET_TOTAL_SECONDS and report.ok else "FAIL"
    table.add_row("total (read stores + fits + publishes + scores)", verdict, f"{total:.2f}", "", "",
                  f"target < {TARGET_TOTAL_SECONDS:.0f} s, every model published")
    out.print(table)
    figures = {
        "customers": len(data.states), "lines": len(data.lines), "until": until.isoformat() if until else None,
        "replay_seconds": round(replay_seconds, 3), "collect_seconds": round(collect_seconds, 3),
        "workers": args.workers,
        "fit_seconds_sum": round(sum(o.fit_seconds or 0.0 for o in report.outcomes), 3),
        "score_seconds": round(report.score_seconds, 3),
        "models": {o.name: {"status": o.status, "fit_seconds": _round(o.fit_seconds),
                            "publish_seconds": _round(o.publish_seconds), "artifact_bytes": sizes[o.name],
                            "reason": o.reason} for o in report.outcomes},
        "total_seconds": round(total, 3), "target_seconds": TARGET_TOTAL_SECONDS,
        "pass": verdict == "PASS",
    }
    print(json.dumps(figures))
    return 0 if verdict == "PASS" else 1


def _artifact_bytes(root: Path, name: str, version: str | None) -> int | None:
    path = root / name / version / "artifact.pkl" if version else None
    return path.stat().st_size if path and path.is_file() else None


def _fmt(seconds: float | None) -> str:
    return f"{seconds:.2f}" if seconds is not None else "-"


def _round(seconds: float | None) -> float | None:
    return round(seconds, 3) if seconds is not None else None


if __name__ == "__main__":
    sys.exit(main())
