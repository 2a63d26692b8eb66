"""The dashboard as a marketer uses it, in headless Chromium: the overview, a customer looked up, a campaign's report,
the language switched; every number on the page is the API's. The app and the engine home are real (conftest.py)."""

from __future__ import annotations

import os
import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.served import READ_TOKEN, ROOT, Served, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS_SCREENSHOT = ROOT / "docs" / "images" / "customer-360.png"


def _open(page: Page, served: Served, route: str) -> None:
    """Open `#/<route>`, the token given once in the address (as a link from `nudge serve` would), and wait for it."""
    page.goto(f"{served.url}/?token={READ_TOKEN}#/{route}")
    _ready(page, route.split("/")[0])


def _ready(page: Page, route: str) -> None:
    expect(page.locator("#view")).to_have_attribute("data-route", route)
    expect(page.locator("#view")).to_have_attribute("data-state", "ready")


def _text(page: Page, testid: str) -> str:
    return page.get_by_test_id(testid).inner_text().strip()


def _number(text: str) -> float:
    """A number as the page shows it (grouping commas, a % or pp unit) as a float."""
    found = re.search(r"-?[\d,]*\.?\d+", text.replace("\u2212", "-"))
    if not found:
        raise ValueError(f"no number in {text!r}")
    return float(found.group().replace(",", ""))


def _shows(text: str, value: float, decimals: int) -> bool:
    """Whether `text` shows `value` to `decimals` places (within half a unit of the last one shown)."""
    return abs(_number(text) - value) <= 0.5 * 10 ** -decimals + 1e-9


@pytest.fixture(scope="module")
def customer(served: Served) -> dict:
    """The API's 360 view of a customer with every part filled — segment, CLV, P(alive), next purchases,
    recommendations, offers, consent — and, among the first 60 by id, a stamp mission and a subscription too."""
    full = None
    for customer_id in served.home.customers[:60]:
        view = served.api.get(f"/api/customers/{customer_id}")
        if view.status_code != 200:
            continue
        body = view.json()
        if all(body.get(k) not in (None, [], {}) for k in ("segment", "grade", "clv", "p_alive", "next_purchase",
                                                             "recommendations", "offers", "consent")):
            if body.get("missions") and body.get("subscription"):
                return body
            full = full or body
    if full is None:
        pytest.fail("no customer among the first 60 has a full 360 view")
    return full


def test_overview_shows_the_api_numbers(page: Page, served: Served) -> None:
    overview = served.api.get("/api/overview").json()
    _open(page, served, "overview")
    assert "token=" not in page.url  # taken out of the address bar once kept
    assert page.evaluate("sessionStorage.getItem('nudge.token')") == READ_TOKEN
    assert _number(_text(page, "overview-customers")) == overview["customers"]
    assert _shows(_text(page, "overview-revenue"), overview["revenue"], 2)
    assert _number(_text(page, "overview-dead-letters")) == overview["dead_letters"]
    assert _number(_text(page, "overview-events")) == sum(h["events"] for h in overview["events_per_hour"])
    assert overview["sends"].get("sent", 0) > 0
    for verdict, count in overview["sends"].items():
        assert _number(_text(page, f"sends-{verdict}")) == count, verdict
    expect(page.get_by_test_id("chart-events-per-hour")).to_have_attribute("data-drawn", "true")
    # Everything came from the app itself: the chart library is vendored, nothing is fetched from elsewhere.
    assert all(url.startswith(served.url) or url.startswith("data:") for url in page.requests), page.requests
    assert not page.errors


def test_a_customer_looked_up_shows_the_360_view(page: Page, served: Served, customer: dict) -> None:
    _open(page, served, "overview")
    page.get_by_placeholder("Customer id").fill(customer["customer_id"])
    page.get_by_placeholder("Customer id").press("Enter")
    _ready(page, "customer")
    assert page.url.endswith(f"#/customer/{customer['customer_id']}")
    assert _text(page, "customer-id") == customer["customer_id"]
    assert _text(page, "customer-segment") == customer["segment"]
    if customer.get("grade"):
        assert _text(page, "customer-grade") == customer["grade"]
    assert _shows(_text(page, "customer-clv"), customer["clv"], 2)
    assert _shows(_text(page, "customer-p-alive"), customer["p_alive"] * 100, 1)
    for row in customer["next_purchase"]:
        assert _text(page, f"next-date:{row['category']}") == (row["date"] or "—")
    products = page.get_by_test_id("recommendations").locator("li")
    assert products.all_inner_texts() == customer["recommendations"]
    assert page.get_by_test_id("offers").locator("tbody tr").count() == len(customer["offers"])
    for offer in customer["offers"]:
        assert _text(page, f"offer-status:{offer['code']}").lower() == offer["status"]
    for mission in customer["missions"]:
        assert _text(page, f"mission:{mission['code']}") == f"{mission['stamps']} / {mission['needed']}"
    for consent in customer["consent"]["in_effect"]:
        assert _text(page, f"consent:{consent['channel']}:{consent['purpose']}") == (
            "yes" if consent["granted"] else "no")
    assert _number(_text(page, "customer-events")) == customer["events"]
    expect(page.get_by_test_id("chart-next-purchase")).to_have_attribute("data-drawn", "true")
    screenshot(page, "customer-360")
    if os.environ.get("NUDGE_DOCS_SCREENSHOTS"):  # refresh the README's picture from this run: down to consent
        page.locator("#lookup-id").blur()
        consent = page.locator("section.card", has=page.get_by_test_id("consent")).bounding_box()
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True,
                        clip={"x": 0, "y": 0, "width": 1280, "height": consent["y"] + consent["height"] + 12})
    assert not page.errors


def test_an_unknown_customer_says_so(page: Page, served: Served) -> None:
    assert served.api.get("/api/customers/no-such-customer").status_code == 404
    _open(page, served, "customer/no-such-customer")
    expect(page.locator("#view .message.error")).to_contain_text("no-such-customer")


def test_a_campaign_report_shows_the_api_numbers(page: Page, served: Served) -> None:
    campaigns = served.api.get("/api/campaigns").json()
    _open(page, served, "campaigns")
    for campaign in campaigns:
        assert _number(_text(page, f"campaign-sent:{campaign['name']}")) == campaign["sent"]
        assert _number(_text(page, f"campaign-held-out:{campaign['name']}")) == campaign["held_out"]
    reports = {c["name"]: served.api.get(f"/api/campaigns/{c['name']}/report").json() for c in campaigns}
    # The campaign with a measured uplift and the most sent: its report has every part to check.
    name = max(campaigns, key=lambda c: (reports[c["name"]]["uplift"]["value"] is not None, c["sent"]))["name"]
    report = reports[name]
    for other in reports.values():
        uplift = other["uplift"]["value"]
        shown = _text(page, f"campaign-uplift:{other['name']}")
        assert (shown == "not measurable") if uplift is None else _shows(shown, uplift * 100, 2), other["name"]
    page.get_by_test_id(f"campaign-link:{name}").click()
    _ready(page, "campaigns")
    assert _text(page, "report-name") == name
    assert _number(_text(page, "report-sent")) == report["sent"]
    assert _number(_text(page, "report-held-out")) == report["held_out"]
    uplift = report["uplift"] or {}
    if uplift.get("value") is None:
        assert _text(page, "report-uplift") == "not measurable"
    else:
        assert _shows(_text(page, "report-uplift"), uplift["value"] * 100, 2)
        low, high = (_number(part) for part in _text(page, "report-interval").split(" – "))
        assert abs(low - uplift["low"] * 100) <= 0.005 + 1e-9 and abs(high - uplift["high"] * 100) <= 0.005 + 1e-9
        expect(page.get_by_test_id("chart-uplift")).to_have_attribute("data-drawn", "true")
    if report.get("net_revenue") is not None:
        assert _shows(_text(page, "report-net-revenue"), report["net_revenue"], 2)
    assert page.get_by_test_id("conversions-table").locator("tbody tr").count() == len(report["conversions"])
    expect(page.get_by_test_id("chart-conversions")).to_have_attribute("data-drawn", "true")
    assert not page.errors


def test_switching_to_korean_keeps_the_numbers_and_the_choice(page: Page, served: Served) -> None:
    overview = served.api.get("/api/overview").json()
    _open(page, served, "overview")
    expect(page.locator("nav a[data-page=overview]")).to_have_text("Overview")
    page.get_by_role("button", name="한국어").click()
    _ready(page, "overview")
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator("nav a[data-page=overview]")).to_have_text("개요")
    expect(page.locator("main h1")).to_contain_text("개요")
    assert page.evaluate("import('./i18n.js').then((m) => m.untranslated())") == []
    assert _number(_text(page, "overview-customers")) == overview["customers"]
    assert _shows(_text(page, "overview-revenue"), overview["revenue"], 2)
    screenshot(page, "overview-ko")
    page.reload()  # the choice is remembered
    _ready(page, "overview")
    expect(page.locator("nav a[data-page=overview]")).to_have_text("개요")
    page.goto(f"{served.url}/#/campaigns")
    _ready(page, "campaigns")
    expect(page.locator("main h1")).to_have_text("캠페인")
    page.get_by_role("button", name="EN").click()
    _ready(page, "campaigns")
    expect(page.locator("main h1")).to_have_text("Campaigns")
    assert not page.errors


def test_segments_and_models_show_the_api_numbers(page: Page, served: Served) -> None:
    segments = served.api.get("/api/segments").json()
    _open(page, served, "segments")
    assert segments["segments"]
    for segment in segments["segments"]:
        assert _number(_text(page, f"segment-size:{segment['name']}")) == segment["size"]
        mean, shown = segment["clv"]["mean"], _text(page, f"segment-clv-mean:{segment['name']}")
        assert (shown == "—") if mean is None else _shows(shown, mean, 2), segment["name"]
    assert page.get_by_test_id("cohorts-table").locator("tbody tr").count() == len(segments["cohorts"])
    expect(page.get_by_test_id("chart-segment-sizes")).to_have_attribute("data-drawn", "true")

    models = served.api.get("/api/models").json()
    page.goto(f"{served.url}/#/models")
    _ready(page, "models")
    assert models
    for version in models:
        testid = f"model-version:{version['name']}:{version['version']}"
        assert _text(page, testid) == version["version"]
        for metric, value in version["metrics"].items():
            if isinstance(value, int | float):
                shown = _text(page, f"model-metric:{version['name']}:{version['version']}:{metric}")
                assert _shows(shown, value, 0 if float(value).is_integer() else 2), (version["name"], metric)
    assert not page.errors


def test_without_a_token_the_dashboard_asks_for_one(page: Page, served: Served, customer: dict) -> None:
    customer_id = customer["customer_id"]
    assert served.api.get(f"/api/customers/{customer_id}", headers={"Authorization": ""}).status_code == 401
    page.goto(f"{served.url}/#/customer/{customer_id}")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("input").fill("not-the-token")
    dialog.get_by_role("button").click()
    expect(page.locator("#token-refused")).to_be_visible()
    dialog.locator("input").fill(READ_TOKEN)
    dialog.get_by_role("button").click()
    _ready(page, "customer")
    assert _text(page, "customer-id") == customer_id
    assert page.evaluate("sessionStorage.getItem('nudge.token')") == READ_TOKEN
