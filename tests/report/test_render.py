"""The backtest report as a reader sees it: the terminal tables and the self-contained HTML page."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from engine.report import html, terminal, write_html


def _campaign(name: str, offer: str | None, sent: int, held_out: int, treated_converted: int,
              held_out_converted: int, uplift: dict[str, Any], **money: float | None) -> dict[str, Any]:
    return {"campaign": name, "offer": offer, "sent": sent, "held_out": held_out, "control": 0, "capped": 12,
            "over_budget": 0, "no_consent": 31, "treated_converted": treated_converted,
            "held_out_converted": held_out_converted,
            "rate_treated": treated_converted / sent,
            "rate_held_out": held_out_converted / held_out if held_out else None,
            "uplift": uplift, "redemptions": 41, "liability": 120.0, "budget": 500.0,
            "incremental_revenue": None, "offer_cost": 0.0, "net_incremental_revenue": None,
            "incremental_conversions": None, "cost_per_incremental_conversion": None} | money


def _sample() -> dict[str, Any]:
    """A Complete Journey backtest over two months: three campaigns, a mission, a subscription, a budget."""
    holds = {"estimate": 0.012, "low": -0.010, "high": 0.034, "measurable": True, "reason": None,
             "contains_zero": True}
    misses = {"estimate": 0.041, "low": 0.006, "high": 0.077, "measurable": True, "reason": None,
              "contains_zero": False}
    empty = {"estimate": None, "low": None, "high": None, "measurable": False, "reason": "holdout empty",
             "contains_zero": None}
    return {
        "title": "nudge backtest — Complete Journey, 2017-11-01 to 2018-01-01",
        "generated_at": "2018-01-02T08:00:00+00:00",
        "period": {"from": "2017-11-01", "until": "2018-01-01"},
        "backtest": True, "currency": "USD", "language": "en", "window_days": 14.0,
        "campaigns": [
            _campaign("meat-repurchase", "coupon", 1840, 96, 212, 10, holds, incremental_revenue=310.5,
                      offer_cost=61.0, net_incremental_revenue=249.5, incremental_conversions=21.5,
                      cost_per_incremental_conversion=2.84),
            _campaign("<b>x</b>", "stamp_mission", 920, 48, 131, 4, misses, incremental_revenue=402.0,
                      offer_cost=88.25, net_incremental_revenue=313.75, incremental_conversions=37.7,
                      cost_per_incremental_conversion=2.34),
            _campaign("vip-club", "subscription", 300, 0, 40, 0, empty, offer_cost=12.0),
        ],
        "conversions_over_time": [
            {"date": "2017-11-05", "campaign": "meat-repurchase", "treated": 14, "held_out": 1},
            {"date": "2017-11-05", "campaign": "<b>x</b>", "treated": 9, "held_out": 0},
            {"date": "2017-11-07", "campaign": "meat-repurchase", "treated": 11, "held_out": 0},
            {"date": "2017-11-08", "campaign": "vip-club", "treated": 3, "held_out": 0},
        ],
        "missions": [{"campaign": "<b>x</b>", "issued": 920, "with_stamps": 410, "completed": 133,
                      "rewards_redeemed": 71, "expired": 40, "stamps": 1502}],
        "subscriptions": [{"campaign": "vip-club", "offered": 300, "taken_up": 57, "active": 49, "churned": 8,
                           "by_tier": {"Basic": 38, "Plus": 11}, "fees": 245.0, "points": 5120.0}],
        "points": {"earned": 18250.0, "customers": 403},
        "liability": [
            {"campaign": "meat-repurchase", "coupons": 180.0, "rewards": 0.0, "points": 15.0, "total": 195.0,
             "budget": 500.0},
            {"campaign": "<b>x</b>", "coupons": 0.0, "rewards": 142.0, "points": 30.0, "total": 172.0,
             "budget": None},
        ],
        "timing": {"sent": 1840, "days": 3, "before_purchase": 0.214, "random_day": 0.118, "lift": 1.81,
                   "bought_at_all": 0.52},
    }


@pytest.fixture
def report() -> dict[str, Any]:
    return _sample()


@pytest.fixture(scope="module")
def page() -> str:
    """The sample's page, rendered once: the charts are most of the tests' time."""
    return html(_sample())


@pytest.fixture
def empty_report(report: dict[str, Any]) -> dict[str, Any]:
    """The same backtest with nothing in it: no campaign ran, so every list is empty."""
    return {**report, "campaigns": [], "conversions_over_time": [], "missions": [], "subscriptions": [],
            "liability": [], "timing": None, "points": None}


def _text(report: dict[str, Any]) -> str:
    console = Console(record=True, width=200)
    terminal(report, console)
    return console.export_text()


def test_the_page_has_one_chart_per_section_with_data_and_needs_no_network(page: str) -> None:
    assert page.count("<svg") == 5
    assert page.startswith("<!doctype html>") and "<style>" in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "<!DOCTYPE svg" not in page and "<?xml" not in page  # the SVG prologs are dropped inside the page


def test_a_backtest_is_labelled_an_aa_check_and_a_live_report_is_not(report: dict[str, Any], page: str) -> None:
    text = _text(report)
    for out in (page, text):
        assert "A/A check" in out
        assert "nobody received these messages, so each 95 % interval should contain 0" in out
    assert "A/A check: uplift with its 95 % interval" in page  # the chart's own title
    live = {**report, "backtest": False}
    assert "A/A" not in html(live) and "A/A" not in _text(live)


def test_the_page_escapes_the_report_text(report: dict[str, Any], page: str) -> None:
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    hostile = copy.deepcopy(report)
    hostile["title"] = '"><script>alert(1)</script>'
    hostile["campaigns"][2]["uplift"]["reason"] = "<i>holdout</i> & empty"
    page = html(hostile)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "not measurable: &lt;i&gt;holdout&lt;/i&gt; &amp; empty" in page


def test_the_page_shows_the_figures(page: str) -> None:
    assert "+0.012 [-0.010, +0.034]" in page and "+0.041 [+0.006, +0.077]" in page
    assert "vip-club: not measurable: holdout empty" in page
    assert '<td class="miss">misses 0</td>' in page
    assert "$249.50" in page and "$2.84" in page and "capped 12 · no consent 31" in page
    assert "18,250 points earned by 403 customers" in page
    assert "<td>39%</td>" in page  # $195.00 of the $500.00 budget
    assert "timing lift 1.81x" in page


def test_dollar_signs_in_names_do_not_turn_into_mathtext(report: dict[str, Any]) -> None:
    report["missions"][0]["campaign"] = "$5 off a $20 basket"
    page = html(report)
    assert page.count("<svg") == 5 and ">$5 off a $20 basket</text>" in page


def test_empty_sections_say_no_data_instead_of_failing(empty_report: dict[str, Any]) -> None:
    page = html(empty_report)
    assert "<svg" not in page
    sections = re.findall(r'<section id="(\w+)">(.*?)</section>', page, re.DOTALL)
    assert [key for key, _ in sections] == ["uplift", "revenue", "conversions", "missions", "subscriptions",
                                           "points", "liability", "timing"]
    assert all("no data" in body for _, body in sections)
    text = _text(empty_report)
    assert "treated against held out, conversions within 14 days — A/A check: no data" in text
    assert text.count("no data") == 7  # every section but the daily chart, which only the page has


def test_a_report_with_only_unmeasurable_campaigns_lists_them_without_a_chart(report: dict[str, Any]) -> None:
    report["campaigns"] = report["campaigns"][2:]
    page = html(report)
    uplift = re.search(r'<section id="uplift">(.*?)</section>', page, re.DOTALL).group(1)
    assert "<svg" not in uplift and "no data" in uplift and "vip-club: not measurable: holdout empty" in uplift


def test_missing_optional_keys_are_tolerated() -> None:
    bare = {"title": "nudge report", "campaigns": [{"campaign": "c1", "sent": 10, "uplift": {}}]}
    page, text = html(bare), _text(bare)
    assert "c1" in page and "not measurable: no interval" in page
    assert "c1" in text


def test_the_terminal_shows_every_section(report: dict[str, Any]) -> None:
    text = _text(report)
    for name in ("meat-repurchase", "<b>x</b>", "vip-club"):
        assert name in text
    assert "+0.012 [-0.010, +0.034]" in text
    assert "not measurable: holdout empty" in text
    assert "misses 0" in text and "holds 0" in text
    assert "212/1,840 (11.5%)" in text and "$249.50" in text
    assert re.search(r"Basic\s.*Plus", text) and re.search(r"vip-club\s.*\b38\b.*\b11\b", text)
    assert "18,250 points earned by 403 customers" in text
    assert "$195.00" in text and "$500.00" in text and "39%" in text
    assert "timing lift 1.81x" in text and "21.4% went within 3 days" in text


def test_the_page_is_the_same_for_the_same_report_and_written_where_asked(report: dict[str, Any], page: str,
                                                                           tmp_path: Path) -> None:
    path = write_html(report, tmp_path / "reports" / "2018-01-01" / "backtest.html")
    assert path == tmp_path / "reports" / "2018-01-01" / "backtest.html"
    assert path.read_text(encoding="utf-8") == page  # deterministic SVG ids: reports diff cleanly
    ids = re.findall(r'\sid="([^"]+)"', path.read_text(encoding="utf-8"))
    assert len(ids) == len(set(ids))  # five SVGs in one document must not share an id
