"""The backtest report for people: rich tables in the terminal, or one HTML page that needs nothing from the network.

Both renderers read the same sections (`_sections`), so a figure is worded once; the page adds matplotlib charts as
inline SVG.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape
from pathlib import Path
from typing import Any

from matplotlib import rc_context
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, DayLocator
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.offers.issue import money

AA_CHECK = "A/A check"
AA_NOTE = ("backtest: nobody received these messages, so each 95 % interval should contain 0; "
           "about one in twenty will not, by chance")
REVENUE_NOTE = ("incremental revenue: treated against held-out spend per customer from their first entry to the end "
                "of the run, times the treated customers; net of what the offers cost (discounts redeemed, points, "
                "less fees)")
REVENUE_AA_NOTE = ("backtest: these differences are A/A noise too — nobody received the messages, so only the "
                   "offer cost (what the coupons would have cost) is a measurement")
HOLDS, MISSES = "holds 0", "misses 0"
NO_DATA = "no data"
NONE = "-"

# Text as <text> rather than glyph paths keeps each chart a few kB; a fixed salt keeps the SVG ids (and so the
# page) the same from run to run.
_RC = {"svg.fonttype": "none", "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Arial"],
       "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}
_NO_METADATA = {"Creator": None, "Date": None, "Format": None, "Type": None}
_TREATED, _HELD_OUT, _MISS, _MUTED = "#1f5fbf", "#8a8f98", "#d9480f", "#444444"
_STAGES = (("issued", "issued"), ("with_stamps", "with ≥1 stamp"), ("completed", "completed"),
           ("rewards_redeemed", "reward redeemed"))
_FUNNEL_COLOURS = ("#c6d4ea", "#8eaad6", "#4f7fc4", "#1f5fbf")
_LIABILITY = (("coupons", "open coupons", "#1f5fbf"), ("rewards", "open rewards", "#6fa0dc"),
              ("points", "points", "#f0a35e"))
_SKIPPED = (("control", "control"), ("capped", "capped"), ("over_budget", "over budget"),
            ("no_consent", "no consent"))


@dataclass(frozen=True)
class Section:
    """One part of the report as text: a heading, a table when it has columns, and lines under it."""

    key: str
    heading: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    lines: tuple[str, ...] = ()
    text_columns: tuple[str, ...] = ("campaign",)  # left-aligned; the other columns are figures
    chart_notes: tuple[str, ...] = ()  # what the chart leaves out; the page only, the table already says it


def terminal(report: dict[str, Any], console: Console) -> None:
    """Print the report as rich tables: campaigns, missions, subscriptions, points, liability, timing."""
    console.print(Text(report.get("title") or "nudge report", style="bold"))
    console.print(Text(_subtitle(report)))
    for section in _sections(report):
        if not section.columns and not section.lines and section.key in _CHARTS:
            continue  # a chart only (the daily conversions): the page has it
        console.print()
        if not section.columns:
            console.print(Text(section.heading, style="bold"))
            for line in section.lines or (NO_DATA,):
                console.print(Text(line))
            continue
        if not section.rows:
            console.print(Text(f"{section.heading}: {NO_DATA}", style="bold"))
            continue
        table = Table(title=Text(section.heading, style="bold"), title_justify="left", caption_justify="left",
                      caption=Text("\n".join(section.lines)) if section.lines else None)
        for i, column in enumerate(section.columns):  # a narrow terminal wraps the figures, not the campaign
            table.add_column(Text(column), justify="left" if column in section.text_columns else "right",
                             overflow="fold", no_wrap=i == 0)
        for row in section.rows:  # Text, not markup: a campaign named "[b]x" prints as it is
            table.add_row(*(Text(cell, style="yellow" if cell == MISSES else "") for cell in row))
        console.print(table)


def html(report: dict[str, Any]) -> str:
    """The report as one self-contained HTML page: inline CSS, charts as inline SVG, no URL fetched to view it."""
    title = report.get("title") or "nudge report"
    parts = [f'<!doctype html>\n<html lang="{escape(report.get("language") or "en")}">\n<head>\n'
             f'<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n'
             f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
             f"<h1>{escape(title)}</h1>\n<p class=\"meta\">{escape(_subtitle(report))}</p>\n"]
    if report.get("backtest"):
        parts.append(f'<p class="banner">backtest: the uplift below is an {AA_CHECK}, not a message\'s effect</p>\n')
    for section in _sections(report):
        parts.append(f'<section id="{section.key}">\n<h2>{escape(section.heading)}</h2>\n')
        if section.columns:
            parts.append(_table(section) if section.rows else f'<p class="empty">{NO_DATA}</p>\n')
        parts.extend(f"<p>{escape(line)}</p>\n" for line in section.lines)
        draw = _CHARTS.get(section.key)
        if draw is not None and (section.rows or not section.columns):
            svg = _svg(section.key, draw, report)
            parts.append(f'<figure>{svg}</figure>\n' if svg else f'<p class="empty">{NO_DATA}</p>\n')
            parts.extend(f"<p>{escape(note)}</p>\n" for note in section.chart_notes)
        elif not section.columns and not section.lines and draw is None:
            parts.append(f'<p class="empty">{NO_DATA}</p>\n')
        parts.append("</section>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def write_html(report: dict[str, Any], path: Path) -> Path:
    """Write the report's HTML page to `path`, creating its folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html(report), encoding="utf-8")
    return path


# --- sections: the report's figures worded once, for both renderers ---

def _sections(report: Mapping[str, Any]) -> list[Section]:
    daily = Section("conversions", "conversions over time, treated against held out")  # a chart, no table
    return [_uplift(report), _revenue(report), daily, _missions(report), _subscriptions(report), _points(report),
            _liability(report), _timing(report)]


def _subtitle(report: Mapping[str, Any]) -> str:
    period = report.get("period") or {}
    window = report.get("window_days")
    bits = [f"{period.get('from') or NONE} to {period.get('until') or NONE}",
            f"conversion window {window:g} days" if window is not None else None,
            report.get("currency"), f"generated {report['generated_at']}" if report.get("generated_at") else None]
    return " · ".join(b for b in bits if b)


def _uplift(report: Mapping[str, Any]) -> Section:
    backtest = bool(report.get("backtest"))
    columns = ("campaign", "sent", "held out", "treated conv. (customers)", "held-out conv. (customers)",
               "uplift [95 % interval]",
               *((AA_CHECK,) if backtest else ()))
    rows = []
    for c in report.get("campaigns") or []:
        u = c.get("uplift") or {}
        rows.append((str(c.get("campaign", "")), _count(c.get("sent")), _count(c.get("held_out")),
                     _conversions_cell(c.get("treated_converted"), c.get("treated_customers", c.get("sent")),
                                       c.get("rate_treated")),
                     _conversions_cell(c.get("held_out_converted"), c.get("held_out_customers", c.get("held_out")),
                                       c.get("rate_held_out")),
                     _uplift_text(u), *((_aa_cell(u),) if backtest else ())))
    heading = "uplift with its 95 % interval, treated against held out"
    if report.get("window_days") is not None:
        heading += f", conversions within {report['window_days']:g} days"
    if backtest:
        heading += f" — {AA_CHECK}"
    unmeasured = tuple(f"{c.get('campaign', '')}: {_uplift_text(c.get('uplift') or {})}"
                       for c in report.get("campaigns") or [] if not _measurable(c.get("uplift") or {}))
    return Section("uplift", heading, columns, tuple(rows), (AA_NOTE,) if backtest else (), chart_notes=unmeasured)


def _revenue(report: Mapping[str, Any]) -> Section:
    columns = ("campaign", "offer", "reminders", "redeemed", "offer cost", "incr. revenue", "net incr. revenue",
               "cost / incr. conv.", "not sent")
    rows = tuple((str(c.get("campaign", "")), c.get("offer") or NONE, _count(c.get("reminders", 0)),
                  _count(c.get("redemptions")),
                  *(_money(c.get(k), report) for k in ("offer_cost", "incremental_revenue",
                                                       "net_incremental_revenue", "cost_per_incremental_conversion")),
                  " · ".join(f"{label} {_count(c[key])}" for key, label in _SKIPPED if c.get(key)) or NONE)
                 for c in report.get("campaigns") or [])
    notes = (REVENUE_NOTE, REVENUE_AA_NOTE) if report.get("backtest") else (REVENUE_NOTE,)
    return Section("revenue", "offers, cost and incremental revenue", columns, rows, notes,
                   text_columns=("campaign", "offer", "not sent"))


def _missions(report: Mapping[str, Any]) -> Section:
    columns = ("campaign", "issued", "with ≥1 stamp", "completed", "reward redeemed", "expired", "stamps")
    keys = ("issued", "with_stamps", "completed", "rewards_redeemed", "expired", "stamps")
    rows = tuple((str(m.get("campaign", "")), *(_count(m.get(k)) for k in keys)) for m in report.get("missions") or [])
    return Section("missions", "stamp missions: issued → with a stamp → completed → reward redeemed", columns, rows)


def _subscriptions(report: Mapping[str, Any]) -> Section:
    subs = report.get("subscriptions") or []
    tiers = _tiers(subs)
    columns = ("campaign", "offered", "taken up", "active", "churned", *tiers, "fees", "points")
    rows = tuple((str(s.get("campaign", "")), *(_count(s.get(k)) for k in ("offered", "taken_up", "active", "churned")),
                  *(_count((s.get("by_tier") or {}).get(t, 0)) for t in tiers),
                  _money(s.get("fees"), report), _count(s.get("points"))) for s in subs)
    heading = "subscriptions, subscribers by tier" if tiers else "subscriptions"
    return Section("subscriptions", heading, columns, rows)


def _points(report: Mapping[str, Any]) -> Section:
    points = report.get("points")
    if not points:
        return Section("points", "points")
    return Section("points", "points", lines=(f"{_count(points.get('earned'))} points earned by "
                                              f"{_count(points.get('customers'))} customers",))


def _liability(report: Mapping[str, Any]) -> Section:
    columns = ("campaign", "open coupons", "open rewards", "points", "total", "budget", "of budget")
    rows = []
    for row in report.get("liability") or []:
        total, budget = row.get("total"), row.get("budget")
        share = f"{total / budget:.0%}" if total is not None and budget else NONE
        rows.append((str(row.get("campaign", "")), *(_money(row.get(k), report) for k in ("coupons", "rewards",
                                                                                          "points", "total")),
                     _money(budget, report), share))
    return Section("liability", "liability: what the open offers could still cost", columns, tuple(rows))


def _timing(report: Mapping[str, Any]) -> Section:
    t = report.get("timing")
    heading = "timing of the repurchase-due messages"
    if not t:
        return Section("timing", heading)
    lift = f"{t['lift']:.2f}x" if t.get("lift") is not None else "n/a"
    return Section("timing", heading, lines=(
        f"{_count(t.get('sent'))} sent: {_share(t.get('before_purchase'))} went within {t.get('days')} days before a "
        f"real purchase in their category, against {_share(t.get('random_day'))} at a random time in the same month "
        f"(timing lift {lift}); {_share(t.get('bought_at_all'))} of them bought in that category afterwards at all",))


def _uplift_text(u: Mapping[str, Any]) -> str:
    """An uplift for people: "+0.012 [-0.010, +0.034]", or "not measurable: <reason>"."""
    if not _measurable(u):
        return f"not measurable: {u.get('reason') or 'no interval'}"
    return f"{u['estimate']:+.3f} [{u['low']:+.3f}, {u['high']:+.3f}]"


def _measurable(u: Mapping[str, Any]) -> bool:
    return bool(u.get("measurable")) and all(u.get(k) is not None for k in ("estimate", "low", "high"))


def _holds_zero(u: Mapping[str, Any]) -> bool:
    held = u.get("contains_zero")
    return u["low"] <= 0 <= u["high"] if held is None else bool(held)


def _aa_cell(u: Mapping[str, Any]) -> str:
    return (HOLDS if _holds_zero(u) else MISSES) if _measurable(u) else NONE


def _conversions_cell(converted: int | None, group: int | None, rate: float | None) -> str:
    if converted is None:
        return NONE
    text = f"{converted:,}/{group:,}" if group is not None else f"{converted:,}"
    return f"{text} ({rate:.1%})" if rate is not None else text


def _count(n: float | None) -> str:
    return NONE if n is None else f"{n:,.0f}"


def _share(x: float | None) -> str:
    return NONE if x is None else f"{x:.1%}"


def _money(amount: float | None, report: Mapping[str, Any]) -> str:
    if amount is None:
        return NONE
    return money(amount, report.get("currency") or "USD", report.get("language") or "en")


def _tiers(subs: list[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(t for s in subs for t in s.get("by_tier") or {}))


# --- the page ---

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;margin:2rem auto;
max-width:1200px;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:2rem 0 .5rem;border-bottom:1px solid #d0d7de}
.meta{color:#57606a;margin:0 0 1rem}.banner{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem .75rem}
.empty{color:#6e7781;font-style:italic}.miss{color:#bc4c00;font-weight:600}
table{border-collapse:collapse;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap}
th{background:#f6f8fa}th.text,td.text{text-align:left}
figure{margin:.5rem 0}svg{max-width:100%;height:auto}
"""


def _table(section: Section) -> str:
    def cls(i: int) -> str:
        return ' class="text"' if section.columns[i] in section.text_columns else ""

    head = "".join(f"<th{cls(i)}>{escape(c)}</th>" for i, c in enumerate(section.columns))
    body = "".join("<tr>" + "".join(
        f'<td class="miss">{escape(cell)}</td>' if cell == MISSES else f"<td{cls(i)}>{escape(cell)}</td>"
        for i, cell in enumerate(row)) + "</tr>\n" for row in section.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def _svg(key: str, draw: Callable[[Mapping[str, Any]], Figure | None], report: Mapping[str, Any]) -> str | None:
    # A bare Figure, not pyplot: no global figure registry to leak into or close, no GUI backend chosen.
    with rc_context({**_RC, "svg.hashsalt": "nudge"}):
        fig = draw(report)
        if fig is None:
            return None
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata=_NO_METADATA, bbox_inches="tight")
    text = out.getvalue()
    text = text[text.index("<svg"):].strip()  # the XML prolog and DOCTYPE do not belong inside HTML
    return re.sub(r'(\sid="|url\(#|href="#)', rf"\g<1>{key}-", text)  # one page, many SVGs: ids stay unique


def _label(text: Any) -> str:
    """Text for matplotlib as written: "$5 off $20" would otherwise be read as mathtext."""
    return str(text).replace("$", r"\$")


def _money_axis(report: Mapping[str, Any]) -> FuncFormatter:
    return FuncFormatter(lambda x, _pos: _label(_money(x, report)))


def _conversions_chart(report: Mapping[str, Any]) -> Figure | None:
    rows = report.get("conversions_over_time") or []
    if not rows:
        return None
    daily: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        day = daily[date.fromisoformat(str(r["date"])[:10])]
        day[0] += r.get("treated") or 0
        day[1] += r.get("held_out") or 0
    first, last = min(daily), max(daily)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]  # a day without a row had none
    # The groups differ in size (the holdout is a few percent), so raw counts would always put treated on top:
    # per 1,000 customers of each group when every campaign's group sizes are known.
    by_name = {c.get("campaign"): c for c in report.get("campaigns") or []}
    names = {r.get("campaign") for r in rows}
    sizes = None
    if names <= by_name.keys():
        sizes = (sum(by_name[n].get("sent") or 0 for n in names), sum(by_name[n].get("held_out") or 0 for n in names))
    fig = Figure(figsize=(8, 3))
    ax = fig.subplots()
    for i, (name, colour) in enumerate((("treated", _TREATED), ("held out", _HELD_OUT))):
        values = [daily[d][i] if d in daily else 0 for d in days]
        if sizes is not None and all(sizes):
            values = [1000 * v / sizes[i] for v in values]
            name = f"{name} ({sizes[i]:,} customers)"
        elif sizes is not None and not sizes[i]:
            continue
        ax.plot(days, values, label=name, color=colour, marker="o" if len(days) <= 31 else None, markersize=3)
    ax.set_ylabel("conversions per 1,000 in the group" if sizes is not None and all(sizes) else "conversions")
    locator = DayLocator(interval=max(1, len(days) // 8)) if len(days) <= 62 else AutoDateLocator()  # no 12:00 ticks
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylim(bottom=0)
    ax.set_title("daily conversions, all campaigns", loc="left")
    ax.legend(frameon=False)
    return fig


def _uplift_chart(report: Mapping[str, Any]) -> Figure | None:
    measured = [c for c in report.get("campaigns") or [] if _measurable(c.get("uplift") or {})]
    if not measured:
        return None
    fig = Figure(figsize=(8, 1.2 + 0.45 * len(measured)))
    ax = fig.subplots()
    for i, c in enumerate(measured):
        u = c["uplift"]
        colour = _TREATED if _holds_zero(u) else _MISS
        ax.errorbar(u["estimate"], i, xerr=[[u["estimate"] - u["low"]], [u["high"] - u["estimate"]]], fmt="o",
                    color=colour, capsize=4)
    ax.axvline(0, color=_MUTED, linewidth=1, linestyle="--")
    ax.set_yticks(range(len(measured)), [_label(c.get("campaign", "")) for c in measured])
    ax.set_ylim(len(measured) - 0.5, -0.5)  # the first campaign on top, as in the table
    ax.set_xlabel("treated minus held-out conversion rate")
    title = "uplift with its 95 % interval"
    missed = not all(_holds_zero(c["uplift"]) for c in measured)
    if report.get("backtest"):
        title = f"{AA_CHECK}: {title}; each should contain 0" + (" (orange: misses it)" if missed else "")
    elif missed:
        title += " (orange: excludes 0)"
    ax.set_title(title, loc="left")
    return fig


def _funnel_chart(report: Mapping[str, Any]) -> Figure | None:
    missions = report.get("missions") or []
    if not missions:
        return None
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    width = 0.8 / len(_STAGES)
    for s, ((key, label), colour) in enumerate(zip(_STAGES, _FUNNEL_COLOURS, strict=True)):
        xs = [i + (s - (len(_STAGES) - 1) / 2) * width for i in range(len(missions))]
        bars = ax.bar(xs, [m.get(key) or 0 for m in missions], width, label=label, color=colour)
        ax.bar_label(bars, fmt="{:,.0f}", fontsize=7, padding=1)
    ax.set_xticks(range(len(missions)), [_label(m.get("campaign", "")) for m in missions])
    ax.set_ylabel("customers")
    ax.set_title("stamp mission funnel", loc="left")
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _tiers_chart(report: Mapping[str, Any]) -> Figure | None:
    subs = [s for s in report.get("subscriptions") or [] if s.get("by_tier")]
    tiers = _tiers(subs)
    if not tiers:
        return None
    fig = Figure(figsize=(8, 0.9 + 0.45 * len(subs)))
    ax = fig.subplots()
    left = [0.0] * len(subs)
    colours = ("#1f5fbf", "#6fa0dc", "#f0a35e", "#c2410c", "#8a8f98", "#2f855a")
    for t, tier in enumerate(tiers):
        values = [(s["by_tier"].get(tier) or 0) for s in subs]
        ax.barh(range(len(subs)), values, left=left, label=_label(tier), color=colours[t % len(colours)])
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(range(len(subs)), [_label(s.get("campaign", "")) for s in subs])
    ax.set_ylim(len(subs) - 0.5, -0.5)
    ax.set_xlabel("subscribers")
    ax.set_title("subscribers by tier", loc="left")
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def _liability_chart(report: Mapping[str, Any]) -> Figure | None:
    rows = report.get("liability") or []
    if not rows:
        return None
    fig = Figure(figsize=(8, 0.9 + 0.45 * len(rows)))
    ax = fig.subplots()
    left = [0.0] * len(rows)
    for key, label, colour in _LIABILITY:
        values = [row.get(key) or 0.0 for row in rows]
        ax.barh(range(len(rows)), values, left=left, label=label, color=colour)
        left = [a + b for a, b in zip(left, values, strict=True)]
    budgets = [(i, row["budget"]) for i, row in enumerate(rows) if row.get("budget") is not None]
    if budgets:
        ax.scatter([b for _, b in budgets], [i for i, _ in budgets], marker="|", s=500, linewidths=2,
                   color="#111111", label="budget", zorder=3)
    ax.set_yticks(range(len(rows)), [_label(row.get("campaign", "")) for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.xaxis.set_major_formatter(_money_axis(report))
    ax.set_xlim(left=0)
    ax.set_title("open liability by campaign", loc="left")
    ax.legend(frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


_CHARTS: dict[str, Callable[[Mapping[str, Any]], Figure | None]] = {
    "uplift": _uplift_chart, "conversions": _conversions_chart, "missions": _funnel_chart,
    "subscriptions": _tiers_chart, "liability": _liability_chart,
}
