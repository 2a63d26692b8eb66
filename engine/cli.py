"""The `nudge` command line."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine import logs
from engine.config import Settings
from engine.errors import NudgeError
from engine.runtime.embedded import EmbeddedRuntime, ReplaySummary
from engine.sources import Source
from engine.summary import population_summary

app = typer.Typer(help="nudge: purchase events -> customer state -> campaigns, live or replayed on event time.",
                  no_args_is_help=True, add_completion=False)
console = Console()
if console.width < 110:  # tables of figures are wider than a pipe's default 80 columns
    console = Console(width=110)
err = Console(stderr=True)


class SourceKind(StrEnum):
    cj = "cj"
    lpoint = "lpoint"
    jsonl = "jsonl"


@app.callback()
def main(log_level: Annotated[str, typer.Option(help="Log level on stderr.")] = "WARNING") -> None:
    """Configure logging for every command."""
    logs.configure(log_level)


def open_source(kind: SourceKind, path: Path | None, settings: Settings, zone: str | None,
                encoding: str = "auto") -> Source:
    """The source a `--source` option names."""
    if kind is SourceKind.cj:
        from engine.sources.completejourney import CompleteJourneySource

        return CompleteJourneySource(zone=zone or settings.cj_timezone)
    if path is None:
        raise NudgeError(f"--source {kind.value} needs a PATH")
    if kind is SourceKind.jsonl:
        from engine.sources.jsonl import JsonLinesSource

        return JsonLinesSource(path, zone=zone or "UTC")
    from engine.sources.lpoint import LPointSource

    return LPointSource(path, zone=zone or settings.lpoint_timezone, encoding=encoding)


@app.command()
def replay(
    source: Annotated[SourceKind, typer.Option("--source", "-s", help="cj, lpoint or jsonl.")],
    path: Annotated[Path | None, typer.Argument(help="File or folder for lpoint and jsonl.")] = None,
    fresh: Annotated[bool, typer.Option(help="Start over: forget state and checkpoints.")] = False,
    tz: Annotated[str | None, typer.Option(help="Zone of naive timestamps (default: the source's).")] = None,
    encoding: Annotated[str, typer.Option(help="CSV encoding for lpoint: auto, utf-8 or cp949.")] = "auto",
    checkpoint_every: Annotated[int | None, typer.Option(help="Records between checkpoints.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Replay a source on event time into customer state, resuming from its last checkpoint."""
    settings = Settings()
    if checkpoint_every:
        settings = settings.model_copy(update={"checkpoint_every": checkpoint_every})
    try:
        src = open_source(source, path, settings, tz, encoding)
        summary = _replay_with_progress(EmbeddedRuntime(settings), src, fresh, show=not as_json)
    except NudgeError as exc:
        _fail(exc)
    if as_json:
        console.print_json(json.dumps(_summary_dict(summary)))
    else:
        _print_replay(summary)


def _fail(exc: Exception) -> None:
    """Print a clear one-line error (never wrapped, so paths stay whole) and exit 2."""
    err.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
    raise typer.Exit(2) from None


def _replay_with_progress(runtime: EmbeddedRuntime, src: Source, fresh: bool, show: bool) -> ReplaySummary:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(),
                  console=err, disable=not show, transient=False) as progress:
        task = progress.add_task(f"replay {src.key}", total=len(src))
        return runtime.replay(src, fresh=fresh, on_progress=lambda pos: progress.update(task, completed=pos))


def _summary_dict(s: ReplaySummary) -> dict:
    return {
        "source": s.source, "resumed_from": s.resumed_from, "position": s.position,
        "records": s.run.records, "purchases": s.run.purchases, "profiles": s.run.profiles,
        "late": s.run.late, "duplicates": s.run.duplicates, "dead_letters": s.run.dead_letters,
        "customers": s.customers, "seconds": round(s.seconds, 3), "records_per_s": round(s.throughput, 1),
        "watermark": s.watermark.isoformat() if s.watermark else None,
        "total": vars(s.total),
    }


def _print_replay(s: ReplaySummary) -> None:
    table = Table(title=f"replay {s.source}", show_header=True)
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("source total", justify="right")
    for name in ("records", "purchases", "profiles", "late", "duplicates", "dead_letters"):
        table.add_row(name.replace("_", " "), f"{getattr(s.run, name):,}", f"{getattr(s.total, name):,}")
    table.add_row("customers", "", f"{s.customers:,}")
    table.add_row("resumed from", f"{s.resumed_from:,}", "")
    table.add_row("throughput", f"{s.throughput:,.0f} rec/s", "")
    table.add_row("watermark", "", s.watermark.isoformat() if s.watermark else "-")
    console.print(table)
    if s.run.dead_letters:
        console.print(f"{s.run.dead_letters} dead letter(s): see [bold]nudge deadletters[/bold]")


@app.command()
def deadletters(
    source: Annotated[str | None, typer.Option(help="Only this source key (e.g. cj, jsonl:/path).")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List records that could not become events, with the reason."""
    from engine.db import connect
    from engine.deadletters import list_dead_letters

    letters = list_dead_letters(connect(Settings().database_url), source, limit)
    if as_json:
        for d in letters:
            typer.echo(json.dumps({"source": d.source, "position": d.position, "where": d.where,
                                   "reason": d.reason, "raw": d.raw}, ensure_ascii=False))
        return
    table = Table(title=f"dead letters ({len(letters)} shown)")
    for col in ("source", "position", "where", "reason"):
        table.add_column(col, overflow="fold")
    for d in letters:
        table.add_row(d.source, str(d.position), d.where, d.reason)
    console.print(table)


@app.command()
def summary(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Customers, baskets, revenue and the LRFMV distribution of the current state."""
    _print_population(EmbeddedRuntime(Settings()), as_json)


def _print_population(runtime: EmbeddedRuntime, as_json: bool) -> None:
    states = runtime.checkpoints.load_states()
    now = runtime.checkpoints.watermark()
    figures = population_summary(states, now)
    if as_json:
        typer.echo(json.dumps(figures))
        return
    head = Table(title="customers", show_header=False)
    for key in ("customers", "buyers", "baskets", "units"):
        head.add_row(key, f"{figures[key]:,}")
    head.add_row("revenue", f"{figures['revenue']:,.2f}")
    head.add_row("as of", figures["watermark"] or "-")
    console.print(head)
    dist = Table(title="LRFMV distribution (recency at the watermark; length/recency in days)")
    dist.add_column("figure")
    columns = ("mean", "p0", "p25", "p50", "p75", "p90", "p100")
    for col in columns:
        dist.add_column(col, justify="right")
    for name, row in figures["lrfmv"].items():
        dist.add_row(name, *(f"{row[c]:,.2f}" for c in columns))
    console.print(dist)


@app.command()
def demo() -> None:
    """Replay the whole Complete Journey year on the embedded runtime, then print the summary."""
    settings = Settings()
    runtime = EmbeddedRuntime(settings)
    try:
        src = open_source(SourceKind.cj, None, settings, None)
        result = _replay_with_progress(runtime, src, fresh=True, show=True)
    except NudgeError as exc:
        _fail(exc)
    _print_replay(result)
    _print_population(runtime, as_json=False)


@app.command()
def customer(customer_id: str) -> None:
    """One customer's state: LRFMV and per-category intervals."""
    runtime = EmbeddedRuntime(Settings())
    state = runtime.checkpoints.load_states().get(customer_id)
    if state is None:
        _fail(NudgeError(f"no customer {customer_id!r} in {runtime.settings.database_url}"))
    now = runtime.checkpoints.watermark()
    console.print(state.lrfmv(now) if now else state)
    table = Table(title=f"customer {customer_id} by top category")
    for col in ("category", "spend", "baskets", "days", "last day", "gap mean", "gap var"):
        table.add_column(col)
    for name, c in sorted(state.categories.items(), key=lambda kv: -kv[1].spend):
        table.add_row(name, f"{c.spend / 100:,.2f}", str(c.baskets), str(c.purchase_days), str(c.last_day),
                      "-" if c.gap_mean is None else f"{c.gap_mean:.1f}",
                      "-" if c.gap_var is None else f"{c.gap_var:.1f}")
    console.print(table)


if __name__ == "__main__":
    app()
