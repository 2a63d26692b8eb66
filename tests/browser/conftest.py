"""The dashboard in a real browser: Debian's Chromium (installed by tools/browser/install.sh when missing) driven by
Playwright, against the real app served by uvicorn over an engine home built by a short campaign backtest of a few
hundred Complete Journey households. Screenshots are kept under test-artifacts/browser/."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine.campaigns.consent import ConsentStore, read_csv
from engine.config import Settings
from engine.live.postgres import free_port
from engine.runtime.campaigns import CAMPAIGN_MODELS, open_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from tests.browser.served import READ_TOKEN, ROOT, Home, Served, screenshot

CHROMIUM = Path(os.environ.get("NUDGE_CHROMIUM", "/usr/bin/chromium"))
CONSENT = ROOT / "campaigns" / "consent" / "cj_consent.csv"
HOUSEHOLDS = 200
# A month of campaigns: the refit at its start fits the models once, so each customer has scores to show.
START, END = datetime(2017, 11, 1, tzinfo=UTC), datetime(2017, 12, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed first when missing (as root)."""
    if not CHROMIUM.exists():
        done = subprocess.run(["bash", str(ROOT / "tools" / "browser" / "install.sh")], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.fail(f"tools/browser/install.sh failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def backtest_home(tmp_path_factory, cj_tables) -> Home:
    """An engine home after a month's backtest of the first HOUSEHOLDS households, with the read token set."""
    settings = Settings(home=tmp_path_factory.mktemp("browser-home"), api_read_token=READ_TOKEN)
    households = sorted(cj_tables["transactions"]["household_id"].unique())[:HOUSEHOLDS]
    runtime = EmbeddedRuntime(settings)
    ConsentStore(runtime.engine).record(read_csv(CONSENT))
    # `recommend` too, which a backtest leaves out by default: the 360 view shows its products.
    campaigns = open_campaigns(settings, runtime.engine, start=START, end=END, models=(*CAMPAIGN_MODELS, "recommend"))
    runtime.replay(CompleteJourneySource(households=set(households), tables=cj_tables), fresh=True,
                   observer=campaigns)
    runtime.engine.dispose()
    return Home(settings, [str(h) for h in households])


@pytest.fixture(scope="session")
def served(backtest_home: Home) -> Iterator[Served]:
    """The real app (`create_app`) under uvicorn on a free loopback port, in a thread of this process."""
    import uvicorn

    from engine.api.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(backtest_home.settings), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start the app within 30 s")
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {READ_TOKEN}"}, timeout=30) as api:
        yield Served(url, backtest_home, api)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium: Path):
    """Headless Chromium: --no-sandbox since the tests run as root, and no /dev/shm, which containers keep small.

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is open, so every
    later `asyncio.run` in the session (the live-path tests) would fail if it stayed open."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield instance
        instance.close()


@pytest.fixture
def page(browser, served: Served, request) -> Iterator:
    """A fresh browser context (no stored token or language) and its page; every request it makes is kept in
    `page.requests`, and a screenshot of where the test left it goes to test-artifacts/browser/<test>.png."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.requests = []
    page.errors = []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    try:
        screenshot(page, request.node.name)
    finally:
        context.close()

