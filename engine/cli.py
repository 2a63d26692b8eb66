"""The `nudge` command line."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine import logs, queries
from engine.config import Settings
from engine.errors import ConfigError, NudgeError
from engine.live.produce import produce_command
from engine.runtime.embedded import EmbeddedRuntime, ReplaySummary
from engine.sources import Source

if TYPE_CHECKING:
    import pandas as pd

    from engine.models.data import TrainingData
    from engine.models.serving import CustomerView

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
                encoding: str = "auto", households: int | None = None) -> Source:
    """The source a `--source` option names (`households`: cj only, its first N households by id)."""
    if households is not None and kind is not SourceKind.cj:
        raise ConfigError(f"--households is for --source cj, not {kind.value}")
    if kind is SourceKind.cj:
        from engine.sources.completejourney import CompleteJourneySource, load_tables

        if households is None:
            return CompleteJourneySource(zone=zone or settings.cj_timezone)
        tables = load_tables()
        ids = set(sorted(tables["transactions"]["household_id"].unique())[:households])
        return CompleteJourneySource(zone=zone or settings.cj_timezone, households=ids, tables=tables)
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
    letters = queries.dead_letters(EmbeddedRuntime(Settings()).engine, source, limit)
    if as_json:
        for d in letters:
            typer.echo(json.dumps(d.model_dump(mode="json"), ensure_ascii=False))
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
    figures = queries.population(runtime.checkpoints)
    if as_json:
        typer.echo(figures.model_dump_json())
        return
    head = Table(title="customers", show_header=False)
    for key in ("customers", "buyers", "baskets", "lines", "units"):
        head.add_row(key, f"{getattr(figures, key):,}")
    head.add_row("revenue", f"{figures.revenue:,.2f}")
    head.add_row("as of", figures.watermark.isoformat() if figures.watermark else "-")
    console.print(head)
    dist = Table(title="LRFMV distribution (recency at the watermark; length/recency in days)")
    dist.add_column("figure")
    columns = tuple(queries.FigureDistribution.model_fields)
    for col in columns:
        dist.add_column(col, justify="right")
    for name, row in figures.lrfmv.items():
        dist.add_row(name, *(f"{getattr(row, c):,.2f}" for c in columns))
    console.print(dist)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Where each source's replay stands (its checkpoint), and what the line store keeps."""
    runtime = EmbeddedRuntime(Settings())
    report = queries.replay_status(runtime.checkpoints, runtime.lines)
    if as_json:
        typer.echo(report.model_dump_json())
        return
    table = Table(title=f"replays into {runtime.settings.home} ({report.customers:,} customers)")
    for col in ("source", "position", "complete", "watermark", "purchases", "dead letters"):
        table.add_column(col, overflow="fold")
    for s in report.sources:
        table.add_row(s.source, f"{s.position:,}", "yes" if s.complete else "no",
                      s.watermark.isoformat() if s.watermark else "-", f"{s.counters['purchases']:,}",
                      f"{s.counters['dead_letters']:,}")
    console.print(table)
    store = report.line_store
    span = f"{store.first_time:%Y-%m-%d} .. {store.last_time:%Y-%m-%d}" if store.first_time else "empty"
    console.print(f"line store: {store.parts} part(s), {store.purchases:,} purchases, {store.lines:,} lines ({span})"
                  + (f"; dropped up to {store.dropped_until:%Y-%m-%d}" if store.dropped_until else ""))


DEMO_START, DEMO_END = "2017-11-01", "2018-01-01"


@app.command()
def demo(
    start: Annotated[str, typer.Option("--from", help="Campaigns run from this date (UTC); the year before builds "
                                        "the state the first refit fits on.")] = DEMO_START,
    end: Annotated[str, typer.Option("--until", help="No job runs from this date (UTC).")] = DEMO_END,
) -> None:
    """Backtest the example campaigns over the Complete Journey year: replay it on event time, refit monthly from
    --from, fire, judge and deliver (to file outboxes), and print what each campaign did."""
    _run_campaigns(SourceKind.cj, None, start, fresh=True, directory=None,
                   consent=Path("campaigns/consent/cj_consent.csv"), as_json=False, end=end)
    settings = Settings()
    console.print(f"console: [bold]nudge serve[/bold] serves the dashboard and the API over these results, at "
                  f"http://{settings.api_host}:{settings.api_port}/ (API docs at /docs)", soft_wrap=True)


@app.command()
def run(
    source: Annotated[SourceKind, typer.Option("--source", "-s", help="cj, lpoint or jsonl.")] = SourceKind.cj,
    path: Annotated[Path | None, typer.Argument(help="File or folder for lpoint and jsonl.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Campaigns run from this date (UTC); events before "
                                              "only build state. Default: from the first event.")] = None,
    end: Annotated[str | None, typer.Option("--until", help="No campaign job runs from this date (UTC).")] = None,
    follow: Annotated[Path | None, typer.Option(help="Follow this JSON Lines file as it grows, on the wall clock.")]
    = None,
    fresh: Annotated[bool, typer.Option(help="Start over: forget state, checkpoints, ledger and scores.")] = False,
    campaigns_dir: Annotated[Path | None, typer.Option("--campaigns", help="Campaign folder (default: settings).")]
    = None,
    consent: Annotated[Path | None, typer.Option(help="Import this consent CSV first.")] = None,
    households: Annotated[int | None, typer.Option(help="cj only: the first N households by id (a quick run).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Run the campaigns: replay a source on event time (a backtest, resumable), or follow a file live."""
    if follow is not None:
        _follow(follow, start, campaigns_dir, consent)
        return
    _run_campaigns(source, path, start, fresh=fresh, directory=campaigns_dir, consent=consent, as_json=as_json,
                   households=households, end=end)


def _run_campaigns(source: SourceKind, path: Path | None, start: str | None, *, fresh: bool,
                   directory: Path | None, consent: Path | None, as_json: bool,
                   households: int | None = None, end: str | None = None) -> None:
    from engine.runtime.campaigns import campaign_table, open_campaigns, reset_campaigns

    settings = Settings()
    runtime = EmbeddedRuntime(settings)
    try:
        begin = _utc_date(start, "--from") if start else None
        stop = _utc_date(end, "--until") if end else None
        src = open_source(source, path, settings, None, households=households if source is SourceKind.cj else None)
        if fresh:
            reset_campaigns(settings, runtime.engine)
        if consent is not None:
            _import_consent(runtime.engine, consent)
        campaigns = open_campaigns(settings, runtime.engine, start=begin, end=stop, directory=directory)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err, disable=as_json) as progress:
            task = progress.add_task(f"run {src.key}", total=len(src))
            result = runtime.replay(src, fresh=fresh, observer=campaigns,
                                    on_progress=lambda pos: progress.update(task, completed=pos))
    except NudgeError as exc:
        _fail(exc)
    rows = campaign_table(campaigns.ledger, campaigns.running(), campaigns.report.outranked)
    run = {"source": src.key, "from": begin.isoformat() if begin else None, "until": stop.isoformat() if stop else None,
           "backtest": True, "campaigns": str(directory or settings.campaigns_dir)}
    queries.remember_run(runtime.engine, run)
    from engine.report import terminal, write_html

    report = _report(runtime, run, campaigns.running())
    html_path = write_html(report, runtime.settings.home / "report.html")
    if as_json:
        typer.echo(json.dumps({"replay": _summary_dict(result), "campaigns": rows,
                               "jobs": campaigns.report.to_dict(), "report": report, "html": str(html_path)}))
        return
    _print_replay(result)
    _print_campaign_table(rows, campaigns.report, result.seconds)
    terminal(report, console)
    console.print(f"report: {html_path} (self-contained HTML: open it in any browser, offline)")


def _report(runtime: EmbeddedRuntime, run: dict | None, running: dict | None = None) -> dict:
    """The report of the last campaign run: the set it left in the database (the folder's files may have moved on
    since), unless `running` is given."""
    from engine.runtime.campaigns import stored_campaigns

    run = run or {}
    if running is None:
        running = stored_campaigns(runtime.settings, runtime.engine,
                                   Path(run["campaigns"]) if run.get("campaigns") else None)
    return queries.backtest_report(runtime.engine, runtime.lines, running, run)


@app.command()
def report(
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here (default: "
                                                   "<home>/report.html).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's figures as one JSON object.")] = False,
) -> None:
    """The last campaign run's report: sent and held out, conversions and uplift (an A/A check in a backtest),
    redemptions, missions, subscribers by tier, points, liability, timing, net revenue — in the terminal and as a
    self-contained HTML page with charts."""
    from engine.report import terminal, write_html

    runtime = EmbeddedRuntime(Settings())
    report_ = _report(runtime, queries.last_run(runtime.engine))
    path = write_html(report_, html_out or runtime.settings.home / "report.html")
    if as_json:
        typer.echo(json.dumps({"report": report_, "html": str(path)}))
        return
    terminal(report_, console)
    console.print(f"report: {path}")


@app.command()
def preview(
    campaign: Annotated[str, typer.Argument(help="Campaign name (its file in the campaign folder).")],
    customer: Annotated[str, typer.Argument(help="Customer id.")],
    at: Annotated[str | None, typer.Option(help="Event time to preview at (UTC date); default: the watermark.")]
    = None,
    campaigns_dir: Annotated[Path | None, typer.Option("--campaigns", help="Campaign folder (default: settings).")]
    = None,
) -> None:
    """Render the campaign's message for one customer from their state and scores, and say whether the audience,
    the trigger, the holdout and consent would let it go."""
    from engine.runtime.campaigns import preview_message

    settings = Settings()
    runtime = EmbeddedRuntime(settings)
    try:
        now = _utc_date(at, "--at") if at else runtime.checkpoints.watermark()
        if now is None:
            raise NudgeError("nothing was replayed into this engine home and no --at was given")
        shown = preview_message(settings, runtime, campaign, customer, now, campaigns_dir)
    except NudgeError as exc:
        _fail(exc)
    for label, value in shown.checks:
        console.print(f"[bold]{label}[/bold]: {value}", soft_wrap=True, highlight=False)
    console.print(f"[bold]title[/bold]: {shown.message.title}", highlight=False)
    console.print(shown.message.body, highlight=False, soft_wrap=True)


@app.command()
def worker(
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default: NUDGE_KAFKA_BOOTSTRAP).")]
    = None,
    topic: Annotated[str | None, typer.Option(help="The purchases topic (default: NUDGE_KAFKA_TOPIC).")] = None,
    group: Annotated[str | None, typer.Option(help="Consumer group (default: NUDGE_KAFKA_GROUP).")] = None,
    name: Annotated[str | None, typer.Option(help="This worker's stable name in the group (default: "
                                             "NUDGE_WORKER_NAME, else the host's).")] = None,
    log_level: Annotated[str, typer.Option(help="faust's log level.")] = "WARNING",
) -> None:
    """Consume the purchases topic into customer state, lines and dead letters (a faust-streaming worker; run
    several, one group: partitions are shared out and move when one stops). Stops on SIGTERM or Ctrl-C."""
    from engine.runtime.worker import WorkerOptions, run_worker

    settings = Settings()
    run_worker(settings, WorkerOptions(bootstrap or settings.kafka_bootstrap, topic or settings.kafka_topic,
                                       group or settings.kafka_group, name or settings.worker_name), log_level)


app.command("produce")(produce_command)


@app.command()
def scheduler(
    clock: Annotated[str, typer.Option(help="wall: the jobs on the wall clock (live); event: on the stream's "
                                       "watermark (a replay through Kafka is a backtest).")] = "wall",
    drain: Annotated[bool, typer.Option(help="Stop once the workers have read the whole topic, and print the "
                                        "campaign table.")] = False,
    start: Annotated[str | None, typer.Option("--from", help="Campaigns run from this date (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--until", help="No campaign job runs from this date (UTC).")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default: NUDGE_KAFKA_BOOTSTRAP).")]
    = None,
    topic: Annotated[str | None, typer.Option(help="The purchases topic (default: NUDGE_KAFKA_TOPIC).")] = None,
    campaigns_dir: Annotated[Path | None, typer.Option("--campaigns", help="Campaign folder (default: settings).")]
    = None,
    consent: Annotated[Path | None, typer.Option(help="Import this consent CSV first.")] = None,
    fresh: Annotated[bool, typer.Option(help="Start over: forget the replica, ledger and scores.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --drain: print the table as one JSON object.")]
    = False,
) -> None:
    """The campaign jobs of the live path: refits, due sweeps, arbitration, ledger and delivery over what the
    workers accepted (one scheduler per stream). Stops on SIGTERM or Ctrl-C after a checkpoint."""
    from engine.runtime.campaigns import campaign_table
    from engine.runtime.live import SchedulerOptions, run_scheduler, stop_on_signals

    if clock not in ("wall", "event"):
        raise typer.BadParameter(f"{clock!r} is not wall or event", param_hint="--clock")
    settings = Settings()
    try:
        options = SchedulerOptions(bootstrap or settings.kafka_bootstrap, topic or settings.kafka_topic,
                                   settings.kafka_messages_topic, clock, drain,
                                   _utc_date(start, "--from") if start else None,
                                   _utc_date(end, "--until") if end else None, campaigns_dir, fresh)
        campaigns, summary = run_scheduler(
            settings, options, stop=stop_on_signals(),
            before_start=None if consent is None else lambda engine: _import_consent(engine, consent))
    except NudgeError as exc:
        _fail(exc)
    rows = campaign_table(campaigns.ledger, campaigns.running(), campaigns.report.outranked)
    if as_json:
        typer.echo(json.dumps({"replay": _summary_dict(summary), "campaigns": rows,
                               "jobs": campaigns.report.to_dict()}))
        return
    _print_replay(summary)
    _print_campaign_table(rows, campaigns.report, summary.seconds)


@app.command("import-campaigns")
def import_campaigns(
    source: Annotated[SourceKind, typer.Argument(help="cj: The Complete Journey's own campaigns.")] = SourceKind.cj,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Read the source's own campaigns, coupons and redemptions, run the redemption detector over its
    transactions, and print its precision and recall against the recorded redemptions."""
    from engine.measure.redemptions import check, detect, load

    if source is not SourceKind.cj:
        _fail(NudgeError(f"import-campaigns: only cj ships its campaigns and redemptions (got {source.value})"))
    tables = load()
    result = check(detect(tables), tables["coupon_redemptions"])
    figures = {**vars(result), "precision": result.precision, "recall": result.recall,
               "precision_any_day": result.precision_any_day, "recall_any_day": result.recall_any_day}
    if as_json:
        typer.echo(json.dumps(figures))
        return
    table = Table(title=f"redemption detector vs Dunnhumby's {result.recorded:,} recorded redemptions "
                        f"({len(tables['campaign_descriptions'])} campaigns)")
    for col in ("match on", "detected", "recorded", "matched", "precision", "recall"):
        table.add_column(col, justify="left" if col == "match on" else "right")
    table.add_row("household, coupon, campaign, day", f"{result.detected:,}", f"{result.recorded:,}",
                  f"{result.matched:,}", f"{result.precision:.3f}", f"{result.recall:.3f}")
    table.add_row("household, coupon, campaign", f"{result.detected_any_day:,}", f"{result.recorded_any_day:,}",
                  f"{result.matched_any_day:,}", f"{result.precision_any_day:.3f}", f"{result.recall_any_day:.3f}")
    console.print(table)


def _follow(path: Path, start: str | None, directory: Path | None, consent: Path | None) -> None:
    """Follow a JSON Lines file live: new purchases as they are appended, the jobs on the wall clock."""
    import signal
    import threading

    from engine.clock import WallClock
    from engine.runtime.campaigns import open_campaigns
    from engine.sources.jsonl import JsonLinesSource

    settings = Settings()
    runtime = EmbeddedRuntime(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    clock = WallClock()
    try:
        begin = _utc_date(start, "--from") if start else None
        src = JsonLinesSource(path, follow=True)
        if consent is not None:
            _import_consent(runtime.engine, consent)
        campaigns = open_campaigns(settings, runtime.engine, start=begin, directory=directory, clock=clock)

        def idle() -> bool:
            campaigns.advance(clock.now())
            if stop.wait(settings.follow_poll_seconds):
                return False
            src.refresh()
            return True

        err.print(f"following {path} (Ctrl-C or SIGTERM stops after a checkpoint)")
        try:
            runtime.replay(src, observer=campaigns, idle=idle)
        except KeyboardInterrupt:
            err.print("stopped")
    except NudgeError as exc:
        _fail(exc)


def _import_consent(engine, path: Path) -> int:
    from engine.campaigns.consent import ConsentStore, read_csv

    return ConsentStore(engine).record(read_csv(path))


_COLUMNS = ("candidates", "sent", "held_out", "control", "deferred", "capped", "outranked", "over_budget",
            "no_consent", "paused", "aborted", "render_error", "failed")


def _print_campaign_table(rows: list[dict], report, seconds: float) -> None:
    # One column per campaign: thirteen outcomes across would not fit a terminal.
    table = Table(title="campaigns (backtest on event time): what became of each candidate")
    table.add_column("")
    for row in rows:
        table.add_column(row["campaign"].replace("_", " "), justify="right")
    for col in _COLUMNS:
        table.add_row(col.replace("_", " "), *(f"{row[col]:,}" for row in rows))
    console.print(table)
    jobs = ", ".join(f"{job} {n}" for job, n in sorted(report.fires.items()))
    missed = ", ".join(f"{job} {n}" for job, n in sorted(report.missed.items())) or "none"
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    console.print(f"jobs run: {jobs}; missed: {missed}")
    console.print(f"run {seconds:.1f} s; stages: {stages}")
    for name, error in sorted(report.reload_errors.items()):
        console.print(f"[red]campaign file rejected[/red] {name}: {error}", soft_wrap=True)


@app.command()
def customer(
    customer_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print what the models say as one JSON object.")] = False,
) -> None:
    """One customer's state (LRFMV, per-category intervals), their scores as the last refit wrote them, and the
    offers they hold: coupons, stamp cards, subscription, points."""
    from engine.db import connect
    from engine.offers.book import OfferBook
    from engine.queries import customer_view
    from engine.store.scores import ScoreStore

    runtime = EmbeddedRuntime(Settings())
    state = runtime.checkpoints.load_states().get(customer_id)
    view = customer_view(ScoreStore(connect(runtime.settings.database_url)), customer_id)
    book = OfferBook(runtime.engine)
    held = book.of_customer(customer_id)
    if state is None and not view.versions and not held:
        _fail(NudgeError(f"no customer {customer_id!r} in {runtime.settings.database_url}"))
    offers = [queries.offer_view(h).model_dump(mode="json") for h in held]
    if as_json:
        typer.echo(json.dumps({**view.model_dump(mode="json"), "offers": offers}))
        return
    now = runtime.checkpoints.watermark()
    if state is not None:
        console.print(state.lrfmv(now) if now else state)
        table = Table(title=f"customer {customer_id} by top category")
        for col in ("category", "spend", "baskets", "days", "last day", "gap mean", "gap var"):
            table.add_column(col)
        for name, c in sorted(state.categories.items(), key=lambda kv: -kv[1].spend):
            table.add_row(name, f"{c.spend / 100:,.2f}", str(c.baskets), str(c.purchase_days), str(c.last_day),
                          "-" if c.gap_mean is None else f"{c.gap_mean:.1f}",
                          "-" if c.gap_var is None else f"{c.gap_var:.1f}")
        console.print(table)
    _print_view(view)
    _print_offers(offers, book.steps(customer_id=customer_id))


def _print_offers(offers: list[dict], steps: list) -> None:
    if not offers:
        console.print("offers: none held")
        return
    table = Table(title="offers held")
    for col in ("code", "kind", "campaign", "status", "issued", "valid until", "face", "cost", "progress"):
        table.add_column(col, overflow="fold")
    for o in offers:
        until = o["valid_until"][:10] if o["kind"] != "subscription" or o["status"] == "offered" else "-"
        table.add_row(o["code"], o["kind"], o["campaign"], o["status"], o["issued_at"][:16], until,
                      f"{o['face_value']:g}", f"{o['cost']:g}", o["progress"])
    console.print(table)
    points = sum(s.amount for s in steps if s.kind == "points")
    fees = sum(s.amount for s in steps if s.kind == "fee")
    console.print(f"points earned {points:,.2f}; subscription fees charged {fees:,.2f}; "
                  f"{len(steps)} offer events (redemptions, stamps, months, expiries)")


def _print_view(view: CustomerView) -> None:
    as_of = f" (scored at {view.as_of:%Y-%m-%d %H:%M})" if view.as_of else ""
    table = Table(title=f"customer {view.customer_id}: scores{as_of}")
    table.add_column("model")
    table.add_column("says", overflow="fold")
    np_ = view.next_purchase or {}
    rows = [
        ("segments", f"{view.segment} (grade {view.grade or '-'})" if view.segment else None),
        ("clv", ", ".join(f"{k} {v:,.2f}" for k, v in view.clv.items()) or None),
        ("next_purchase", f"{np_.get('date')} (range {np_.get('low')} .. {np_.get('high')})" if np_ else None),
        ("recommend", ", ".join(view.recommended) or None),
        ("explore", ", ".join(view.explore) or None),
        ("recommend_category", ", ".join(view.recommended_categories) or None),
        ("rules", ", ".join(view.cross_sell) or "(no rule fires)"),
    ]
    for name, text in rows:
        model = "recommend" if name == "explore" else name  # explore is the recommend model's second list
        if model in view.versions:
            table.add_row(f"{name} {view.versions[model]}", text or "-")
    for c in view.categories:
        dates = c.get("next_purchase")
        table.add_row(f"  {c['category']}", f"preference {c.get('preference', '-')}"
                      + (f", next {dates.get('date')} ({dates.get('low')} .. {dates.get('high')})" if dates else ""))
    for name, reason in view.missing.items():
        table.add_row(name, f"[red]no answer[/red]: {reason}")
    console.print(table)


# --- models: registry, refit, evaluate ----------------------------------------------------------------------
# Added by the models issue (issue 4 §7, §8); the commands above are unchanged.

import math  # noqa: E402  (kept with the commands that need them)
from datetime import UTC, datetime  # noqa: E402
from time import perf_counter  # noqa: E402

from engine.models.registry import Registry  # noqa: E402

models_app = typer.Typer(help="Fitted model versions: list, activate, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")

ModelsDir = Annotated[Path | None, typer.Option("--models-dir",
                                                help="Root of the model registry (default: the models_dir setting).")]
KEY_METRICS_SHOWN = 3


def _registry(models_dir: Path | None) -> Registry:
    return Registry(models_dir or Settings().models_dir)


def _utc_date(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(NudgeError(f"{option} {text!r}: expected a date like 2017-10-01 or 2017-10-01T00:00:00+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _version_row(v: queries.ModelVersion) -> list[str]:
    metrics = ", ".join(f"{k}={val:.4g}" if val is not None else f"{k}=n/a"
                        for k, val in list(v.metrics.items())[:KEY_METRICS_SHOWN])
    return [v.name, v.version, "*" if v.active else "", v.created.strftime("%Y-%m-%d %H:%M:%S"),
            v.watermark.isoformat() if v.watermark else "-", metrics]


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    models_dir: ModelsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per version, a line each.")] = False,
) -> None:
    """Versions of each model: which serves, when it was fitted, on data up to when, key metrics."""
    registry = _registry(models_dir)
    models_dir = registry.root
    try:
        versions = queries.model_versions(registry, name)
    except NudgeError as exc:
        _fail(exc)
    if as_json:
        for v in versions:
            typer.echo(v.model_dump_json())
        return
    table = Table(title=f"models in {models_dir}")
    for col in ("name", "version", "active", "created (UTC)", "watermark", "key metrics"):
        table.add_column(col, overflow="fold")
    for v in versions:
        table.add_row(*_version_row(v))
    console.print(table)
    if not versions:
        console.print(f"no model versions in {models_dir}: run [bold]nudge refit[/bold]")


@models_app.command("activate")
def models_activate(name: str, version: str, models_dir: ModelsDir = None) -> None:
    """Make VERSION the one that serves NAME."""
    try:
        v = _registry(models_dir).activate(name, version)
    except NudgeError as exc:
        _fail(exc)
    console.print(f"{v.name}: {v.version} is active")


@models_app.command("rollback")
def models_rollback(name: str, models_dir: ModelsDir = None) -> None:
    """Serve the version of NAME that was active before the current one."""
    try:
        v = _registry(models_dir).rollback(name)
    except NudgeError as exc:
        _fail(exc)
    console.print(f"{v.name}: rolled back to {v.version}")


@models_app.command("history")
def models_history(name: str, models_dir: ModelsDir = None,
                   limit: Annotated[int, typer.Option(help="The last this many events.")] = 20) -> None:
    """Publishes, rejections, failures, activations and rollbacks of NAME, with the reasons."""
    registry = _registry(models_dir)
    table = Table(title=f"{name} history in {registry.root}")
    for col in ("time", "event", "version", "reason / detail"):
        table.add_column(col, overflow="fold")
    for h in registry.history(name)[-limit:]:
        detail = h.get("reason") or h.get("replaced") or h.get("removed") or ""
        table.add_row(h["time"][:19], h["event"], h.get("version") or "", str(detail))
    console.print(table)


@app.command()
def refit(
    until: Annotated[str | None, typer.Option(help="Fit on events before this date (UTC); default: all.")] = None,
    models_dir: ModelsDir = None,
    source: Annotated[SourceKind | None, typer.Option(
        "--source", "-s", help="Fit once on this source (cj, lpoint or jsonl) instead of what was replayed.")] = None,
    path: Annotated[Path | None, typer.Argument(help="File or folder for lpoint and jsonl.")] = None,
    workers: Annotated[int, typer.Option(help="Models fitted at once, each in its own process.")] = 1,
    models: Annotated[str | None, typer.Option(help="Only these models, comma-separated (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Fit every model on what was replayed (or on `--source`), publish each through the registry and write its
    scores; failures keep the old version."""
    from engine.db import connect
    from engine.models.catalogue import entries
    from engine.models.refit import refit_all
    from engine.store.scores import ScoreStore

    cutoff = _utc_date(until, "--until") if until else None
    registry = _registry(models_dir)
    models_dir = registry.root
    settings = Settings()
    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    scores = ScoreStore(connect(settings.database_url))
    try:
        entries(names)  # a typo in a model name is an error before the training data is read
        with err.status("refit: collecting training data and fitting models", spinner="dots"):
            started = perf_counter()
            data, _ = _training_data(source, path, cutoff)
            collected = perf_counter() - started
            report = refit_all(data, registry, until=cutoff, models=names, workers=workers,
                               scores=scores)
            report.collect_seconds += collected
            report.total_seconds += collected
    except NudgeError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        table = Table(title=f"refit into {models_dir} ({report.customers:,} customers, {report.lines:,} lines, "
                            f"collected in {report.collect_seconds:.1f} s)")
        for col in ("model", "outcome", "version", "serving", "fit s", "scores", "reason"):
            table.add_column(col, overflow="fold")
        for o in report.outcomes:
            table.add_row(o.name, o.status, o.version or "-", o.serving or "-",
                          f"{o.fit_seconds:.2f}" if o.fit_seconds is not None else "-",
                          f"{o.scored:,}" if o.scored is not None else "-",
                          "; ".join(r for r in (o.reason, o.score_error) if r))
        console.print(table)
        console.print(f"total {report.total_seconds:.1f} s")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def evaluate(
    split: Annotated[str, typer.Option(help="Fit before this date (UTC), test on and after it.")] = "2017-10-01",
    source: Annotated[SourceKind | None, typer.Option(
        "--source", "-s", help="Evaluate on this source (cj, lpoint or jsonl) instead of what was replayed.")] = None,
    path: Annotated[Path | None, typer.Argument(help="File or folder for lpoint and jsonl.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every figure as one JSON object.")] = False,
) -> None:
    """Every model module's figures on a temporal split of what was replayed, each next to its baselines."""
    from engine.models.evaluation import evaluate_all, group_baselines

    cutoff = _utc_date(split, "--split")
    try:
        with err.status(f"evaluate: collecting the split at {cutoff.date()}", spinner="dots") as status:
            train, test_lines = _training_data(source, path, cutoff)
            report = evaluate_all(train, test_lines, split=cutoff,
                                  on_module=lambda m: status.update(f"evaluate: {m}"))
    except NudgeError as exc:
        _fail(exc)
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    else:
        table = Table(title=f"evaluation on the split at {cutoff.date()} (fit before, test on and after)")
        table.add_column("module")
        table.add_column("figure", no_wrap=True)
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("baselines (same run)", overflow="fold")
        table.add_column("s", justify="right")
        for module, figures in report.figures.items():
            for i, (key, value, baselines) in enumerate(group_baselines(figures)):
                shown = "  ".join(f"{b} {_figure(v)}" for b, v in baselines)
                table.add_row(module if i == 0 else "", key, _figure(value), shown,
                              f"{report.seconds[module]:.1f}" if i == 0 else "")
            table.add_section()
        for module, reason in report.errors.items():
            table.add_row(module, "[red]error[/red]", "", reason, "")
        console.print(table)
    if report.errors:
        raise typer.Exit(1)


def _training_data(source: SourceKind | None, path: Path | None,
                   until: datetime | None) -> tuple[TrainingData, pd.DataFrame]:
    """Training data before `until` and the lines after: from `source` once, or from the engine's stores."""
    from engine.models.data import collect, from_stores

    settings = Settings()
    if source is not None:
        return collect(open_source(source, path, settings, None), until, settings.policy, settings.future_tolerance)
    runtime = EmbeddedRuntime(settings)
    return from_stores(runtime.checkpoints, runtime.lines, until, settings.policy)


def _figure(value: float) -> str:
    # Counts and sizes read as whole numbers; rates and errors keep four decimals.
    if not math.isfinite(value):
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:.4f}"


# --- files commands ---
campaigns_app = typer.Typer(help="Campaign files: schema, check, the running set, pause/resume, audit.",
                            no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")


def _campaign_set(directory: Path | None):
    """The campaign set of `directory` (default: settings) on the engine's database."""
    from engine.campaigns.running import CampaignSet
    from engine.db import connect

    settings = Settings()
    return CampaignSet(directory or settings.campaigns_dir, settings.templates_dir, connect(settings.database_url))


def _plain(line: str) -> None:
    """One line as written: no markup, highlighting or wrapping (file paths and brackets stay whole)."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


@campaigns_app.command("schema")
def campaigns_schema(
    out: Annotated[Path | None, typer.Option(help="Write the JSON Schema here instead of printing it.")] = None,
) -> None:
    """The JSON Schema of a campaign file (what editors validate against)."""
    from engine.campaigns.files import schema_json

    text = schema_json()
    if out is None:
        _plain(text.rstrip("\n"))
    else:
        out.write_text(text, encoding="utf-8")
        err.print(f"wrote {out}", markup=False, highlight=False, soft_wrap=True)


@campaigns_app.command("check")
def campaigns_check(
    paths: Annotated[list[Path] | None, typer.Argument(help="Campaign folders or files (default: the "
                                                            "campaigns folder).")] = None,
    templates: Annotated[Path | None, typer.Option(help="The templates folder (default: settings).")] = None,
) -> None:
    """Validate campaign files; print each problem as <file>:<line>: <field>: <problem>; exit 1 on any."""
    from engine.campaigns.files import CheckReport, check_dir
    from engine.errors import CampaignError

    settings = Settings()
    templates = templates or settings.templates_dir
    report = CheckReport()
    try:
        for path in paths or [settings.campaigns_dir]:
            if path.is_dir():
                check_dir(path, templates, report)
            elif path.exists():
                report.add_file(path, templates)
            else:
                raise CampaignError(f"{path}: no such file or folder")
    except CampaignError as exc:
        _fail(exc)
    for line in report.lines():
        _plain(line)
    files = len(report.files) + len([p for p in report.errors if p not in report.files.values()])
    summary = f"{len(report.campaigns)} of {files} campaign files valid"
    if not report.ok:
        err.print(f"{summary}; {len(report.lines())} problems", markup=False, highlight=False)
        raise typer.Exit(1)
    err.print(f"{summary}: {', '.join(sorted(report.campaigns))}", markup=False, highlight=False, soft_wrap=True)


@campaigns_app.command("list")
def campaigns_list(
    directory: Annotated[Path | None, typer.Argument(help="The campaign folder (default: settings).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per campaign.")] = False,
) -> None:
    """The campaigns in the folder: trigger, offer, channel, priority, and whether each is valid, running, paused."""
    from rich.text import Text

    from engine.campaigns.files import check_dir
    from engine.campaigns.running import file_hash

    try:
        cs = _campaign_set(directory)
        report = check_dir(cs.directory, cs.templates)
    except NudgeError as exc:
        _fail(exc)
    paused = cs.paused()
    rows = []
    names = sorted(set(report.files) | set(cs.campaigns) | {p.stem for p in report.errors})
    for name in names:
        campaign = report.campaigns.get(name) or cs.campaigns.get(name)
        path = report.files.get(name) or next((p for p in report.errors if p.stem == name), None)
        on_disk = file_hash(path.read_bytes()) if path is not None and path.exists() else None
        running = cs.hash_of(name)
        state = "paused" if name in paused else "invalid" if path in report.errors else \
            "not loaded" if running is None else "changed" if running != on_disk else "running"
        rows.append({
            "name": name, "state": state,
            "trigger": campaign.trigger.type if campaign else None,
            "offer": campaign.offer.type if campaign and campaign.offer else None,
            "channel": campaign.channel if campaign else None,
            "language": campaign.language if campaign else None,
            "priority": campaign.priority if campaign else None,
            "kind": campaign.kind if campaign else None,
            "hash": (running or on_disk or "")[:12],
        })
    if as_json:
        for row in rows:
            _plain(json.dumps(row, ensure_ascii=False))
        return
    table = Table(title=f"campaigns in {cs.directory}")
    for column in ("name", "state", "trigger", "offer", "channel", "language", "priority", "kind", "hash"):
        table.add_column(column, justify="right" if column == "priority" else "left")
    for row in rows:
        table.add_row(*(Text("" if v is None else str(v)) for v in row.values()))
    console.print(table)


def _who(by: str | None) -> str:
    import getpass

    return by or f"cli:{getpass.getuser()}"


@campaigns_app.command("pause")
def campaigns_pause(
    name: Annotated[str, typer.Argument(help="The campaign to stop.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit).")],
    by: Annotated[str | None, typer.Option(help="Who pauses (default: cli:<user>).")] = None,
) -> None:
    """Kill switch: the campaign sends nothing more, queued messages included."""
    from datetime import UTC, datetime

    try:
        changed = _campaign_set(None).pause(name, _who(by), reason, datetime.now(UTC))
    except NudgeError as exc:
        _fail(exc)
    err.print(f"paused {name}" if changed else f"{name} was already paused", markup=False, highlight=False)


@campaigns_app.command("resume")
def campaigns_resume(
    name: Annotated[str, typer.Argument(help="The campaign to let send again.")],
    by: Annotated[str | None, typer.Option(help="Who resumes (default: cli:<user>).")] = None,
) -> None:
    """Undo a pause; what the campaign already sent is never sent again."""
    from datetime import UTC, datetime

    try:
        changed = _campaign_set(None).resume(name, _who(by), datetime.now(UTC))
    except NudgeError as exc:
        _fail(exc)
    err.print(f"resumed {name}" if changed else f"{name} was not paused", markup=False, highlight=False)


@campaigns_app.command("audit")
def campaigns_audit(
    campaign: Annotated[str | None, typer.Option(help="Only this campaign.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per entry.")] = False,
) -> None:
    """Every change to the running set: loaded, changed, rejected, retired, paused, resumed."""
    from rich.text import Text

    try:
        entries = _campaign_set(None).audit(campaign)
    except NudgeError as exc:
        _fail(exc)
    if as_json:
        for e in entries:
            _plain(json.dumps({"at": e.at.isoformat(), "campaign": e.campaign, "action": e.action, "by": e.by,
                               "hash": e.hash, "file": e.file, "detail": e.detail}, ensure_ascii=False))
        return
    table = Table(title="campaign audit")
    for column in ("at", "campaign", "action", "by", "hash", "detail"):
        table.add_column(column, overflow="fold")
    for e in entries:
        cells = (e.at.isoformat(timespec="seconds"), e.campaign, e.action, e.by, (e.hash or "")[:12],
                 e.detail.splitlines()[0] if e.detail else "")
        table.add_row(*(Text(c) for c in cells))  # Text: a detail's [brackets] are not markup
    console.print(table)
# --- end files commands ---
# --- policy commands ---
consent_app = typer.Typer(help="Consent per customer and channel (advertising, night): import, show.",
                          no_args_is_help=True)
app.add_typer(consent_app, name="consent")


@consent_app.command("import")
def consent_import(
    file: Annotated[Path, typer.Argument(help="CSV: customer_id,channel,purpose,granted,at,source ('#' comments).")],
) -> None:
    """Append a file's consent changes to the store; changes already stored are skipped."""
    from engine.campaigns.consent import ConsentStore, read_csv
    from engine.db import connect

    try:
        changes = read_csv(file)
        added = ConsentStore(connect(Settings().database_url)).record(changes)
    except NudgeError as exc:
        _fail(exc)
    customers = len({c.customer_id for c in changes})
    typer.echo(f"consent import: {added} change(s) added, {len(changes) - added} already stored, "
               f"{customers} customer(s), from {file}")


@consent_app.command("show")
def consent_show(
    customer_id: Annotated[str, typer.Argument(help="The customer id.")],
    at: Annotated[str | None, typer.Option(help="Consent in effect at this time (default: after the last change).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """A customer's consent history, what is in effect, and when the two-yearly reconfirmation falls due."""
    from engine.campaigns.consent import ConsentStore
    from engine.db import connect

    store = ConsentStore(connect(Settings().database_url))
    view = queries.consent_view(store, customer_id, _utc_date(at, "--at") if at else None)
    if view is None:
        _fail(NudgeError(f"consent show: no consent recorded for customer {customer_id!r}"))
    if as_json:
        typer.echo(view.model_dump_json())
        return
    table = Table(title=f"consent of customer {customer_id} at {view.at.isoformat()}")
    for column in ("channel", "purpose", "in effect", "since", "source"):
        table.add_column(column)
    for c in view.in_effect:
        table.add_row(c.channel, c.purpose, "granted" if c.granted else "withdrawn", c.since.isoformat(), c.source)
    console.print(table)
    due_at = view.reconfirmation_due
    typer.echo(f"reconfirmation due: {due_at.isoformat() if due_at else '- (nothing granted)'}; "
               f"{len(view.history)} change(s) recorded")
# --- end policy commands ---
# --- delivery commands ---
delivery_app = typer.Typer(help="The delivery ledger: what every campaign decided and sent.", no_args_is_help=True)


@delivery_app.command("ledger")
def delivery_ledger(
    customer: Annotated[str | None, typer.Option(help="List this customer's rows instead of the counts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as one JSON object.")] = False,
) -> None:
    """Rows per campaign and verdict (and how many waited for quiet hours or the night), or one customer's rows."""
    from engine.campaigns.candidates import Verdict
    from engine.db import connect
    from engine.delivery.ledger import Ledger

    try:
        ledger = Ledger(connect(Settings().database_url))
    except NudgeError as exc:
        _fail(exc)
    if customer is not None:
        rows = ledger.entries(customer_id=customer)
        if as_json:
            typer.echo(json.dumps([{"key": e.key, "verdict": e.verdict.value, "decided_at": e.decided_at.isoformat(),
                                    "sent_at": e.sent_at.isoformat() if e.sent_at else None, "detail": e.detail}
                                   for e in rows]))
            return
        table = Table(title=f"ledger rows of customer {customer}")
        for column in ("key", "verdict", "decided", "sent", "detail"):
            table.add_column(column, overflow="fold")
        for e in rows:
            table.add_row(e.key, e.verdict.value, e.decided_at.isoformat(), e.sent_at.isoformat() if e.sent_at else "",
                          e.detail)
        console.print(table)
        return
    counts, deferrals = ledger.counts(), ledger.deferrals()
    if as_json:
        typer.echo(json.dumps({"counts": counts, "deferred": deferrals}))
        return
    verdicts = [v.value for v in Verdict if any(v.value in c for c in counts.values())]
    table = Table(title="delivery ledger")
    table.add_column("campaign")
    for v in verdicts:
        table.add_column(v.replace("_", " "), justify="right")
    table.add_column("deferred q.h./night", justify="right")
    for name in sorted(counts):
        waited = deferrals.get(name, {})
        table.add_row(name, *(f"{counts[name].get(v, 0):,}" for v in verdicts),
                      f"{waited.get('quiet_hours', 0):,} / {waited.get('night', 0):,}")
    console.print(table)


app.add_typer(delivery_app, name="delivery")
# --- end delivery commands ---

# --- api commands ---


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: NUDGE_API_HOST, 127.0.0.1).")]
    = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: NUDGE_API_PORT, 8000).")] = None,
) -> None:
    """Serve the API (and the dashboard, when built) over this engine home; OpenAPI docs at /docs. Writes need
    NUDGE_API_WRITE_TOKEN, customer-level reads NUDGE_API_READ_TOKEN (or the write token)."""
    import uvicorn

    from engine.api.app import create_app

    settings = Settings()
    host, port = host or settings.api_host, port or settings.api_port
    try:
        application = create_app(settings)
    except NudgeError as exc:
        _fail(exc)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"nudge API on http://{shown}:{port}/ (docs: http://{shown}:{port}/docs) over {settings.home}",
                  soft_wrap=True, highlight=False)
    if settings.api_write_token is None:
        err.print("no NUDGE_API_WRITE_TOKEN: writes (POST, DELETE) are refused", highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")
# --- end api commands ---


if __name__ == "__main__":
    app()
