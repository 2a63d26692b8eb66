"""One real engine home for the API tests: a campaign backtest over a few hundred Complete Journey households, built
once per session; tests that write (erasure, the schema fuzzer) take a copy of it."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine import queries
from engine.api.app import create_app
from engine.campaigns.consent import ConsentStore, read_csv
from engine.config import Settings
from engine.runtime.campaigns import open_campaigns, reset_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = ROOT / "campaigns"
CONSENT = CAMPAIGNS / "consent" / "cj_consent.csv"
HOUSEHOLDS = 200
START, END = datetime(2017, 12, 1, tzinfo=UTC), datetime(2018, 1, 1, tzinfo=UTC)
WRITE, READ = "write-token-for-the-api-tests", "read-token-for-the-api-tests"


@dataclass(frozen=True)
class Built:
    """An engine home after a backtest, and the source it replayed."""

    settings: Settings
    source: CompleteJourneySource


def home_settings(home: Path, **extra) -> Settings:
    """Settings of an engine home with the repository's campaigns and templates, and both API tokens."""
    return Settings(home=home, campaigns_dir=CAMPAIGNS, templates_dir=ROOT / "templates", checkpoint_every=5_000,
                    api_write_token=WRITE, api_read_token=READ, **extra)


def run_campaigns(settings: Settings, source, *, fresh: bool, reset: bool | None = None,
                  **options) -> EmbeddedRuntime:
    """A campaign backtest as `nudge run` does it: consent imported, December 2017, file outboxes. `fresh` replays
    the state from the start; `reset` (default: as `fresh`) forgets the ledger, offers and scores too."""
    runtime = EmbeddedRuntime(settings)
    if fresh if reset is None else reset:
        reset_campaigns(settings, runtime.engine)
    ConsentStore(runtime.engine).record(read_csv(CONSENT))
    campaigns = open_campaigns(settings, runtime.engine, start=START, end=END, **options)
    runtime.replay(source, fresh=fresh, observer=campaigns)
    queries.remember_run(runtime.engine, {"source": source.key, "from": START.isoformat(), "until": END.isoformat(),
                                          "backtest": True, "campaigns": str(CAMPAIGNS)})
    return runtime


@pytest.fixture(scope="session")
def built(cj_tables, tmp_path_factory) -> Built:
    ids = set(sorted(cj_tables["transactions"]["household_id"].unique())[:HOUSEHOLDS])
    source = CompleteJourneySource(households=ids, tables=cj_tables)
    settings = home_settings(tmp_path_factory.mktemp("api") / "home")
    run_campaigns(settings, source, fresh=True)
    return Built(settings, source)


def copy_home(settings: Settings, to: Path) -> Settings:
    """A copy of an engine home (database by SQLite's backup, so a consistent one; lines, models, outboxes)."""
    to.mkdir(parents=True)
    for name in ("lines", "models", "outbox"):
        if (settings.home / name).is_dir():
            shutil.copytree(settings.home / name, to / name)
    source, target = sqlite3.connect(settings.home / "nudge.db"), sqlite3.connect(to / "nudge.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    return settings.model_copy(update={"home": to, "models_dir": to / "models"})


@pytest.fixture(scope="session")
def client(built: Built) -> TestClient:
    """The API over the shared home (tests that change it change only what they add, and undo a pause)."""
    return TestClient(create_app(built.settings))


def read_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {READ}"}


def write_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {WRITE}"}
