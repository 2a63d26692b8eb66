"""The engine home the API serves: its stores opened once, and what is costly to read kept until the stores change.

A read is cached against the stores' version: a handful of counts and latest times, read in one query per request,
that every write the engine makes moves (a checkpoint, a ledger mark, an offer step, a refit's scores, an erasure).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from sqlalchemy import text

from engine import queries
from engine.campaigns.consent import ConsentStore
from engine.campaigns.running import CampaignSet
from engine.campaigns.schema import Campaign
from engine.campaigns.suppression import Suppression, erasure_key
from engine.config import Settings
from engine.delivery.ledger import Ledger
from engine.events import CustomerProfile
from engine.models.registry import Registry
from engine.offers.book import OfferBook
from engine.runtime.campaigns import stored_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.state import CustomerState
from engine.store.scores import ScoreStore

T = TypeVar("T")

_VERSION = text("""
SELECT (SELECT count(*) FROM delivery_ledger), (SELECT max(updated_at) FROM delivery_ledger),
       (SELECT count(*) FROM offer), (SELECT count(*) FROM offer_step),
       (SELECT max(updated_at) FROM checkpoint), (SELECT count(*) FROM customer_state),
       (SELECT count(*) FROM customer_profile), (SELECT max(written_at) FROM score_version),
       (SELECT count(*) FROM line_part), (SELECT sum(purchases) FROM line_part),
       (SELECT count(*) FROM suppression), (SELECT count(*) FROM consent_change),
       (SELECT max(since) FROM campaign_running), (SELECT count(*) FROM campaign_running),
       (SELECT value FROM store_meta WHERE key = 'report:run')
""")


class Home:
    """The stores of one engine home, and the reads the API keeps while they stay as they are."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = EmbeddedRuntime(settings)
        self.engine = self.runtime.engine
        self.checkpoints = self.runtime.checkpoints
        self.lines = self.runtime.lines
        self.scores = ScoreStore(self.engine)
        self.ledger = Ledger(self.engine)
        self.consent = ConsentStore(self.engine)
        self.registry = Registry(settings.models_dir)
        self.suppression = Suppression(self.engine, lambda: erasure_key(settings))
        OfferBook(self.engine)  # its tables, so the version query finds them
        # Ingest and erasure one at a time: a replay's checkpoint and a part rewrite are not shared work.
        self.writes = threading.Lock()
        self._cache: dict[str, tuple[tuple, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def version(self) -> tuple:
        """What the stores are now: equal versions, equal reads."""
        with self.engine.connect() as conn:
            return tuple(conn.execute(_VERSION).one())

    def cached(self, name: str, build: Callable[[], T]) -> T:
        """`build()`, or what it gave last while the stores have not changed since."""
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one build at a time per read: a second request waits for the first's answer
            version = self.version()
            held = self._cache.get(name)
            if held is not None and held[0] == version:
                return held[1]
            value = build()
            self._cache[name] = (version, value)
            return value

    def states(self) -> dict[str, CustomerState]:
        """Every customer's state (shared between requests: read, never change)."""
        return self.cached("states", self.checkpoints.load_states)

    def profiles(self) -> dict[str, CustomerProfile]:
        """Every customer's profile (shared between requests)."""
        return self.cached("profiles", self.checkpoints.load_profiles)

    def score_frame(self) -> pd.DataFrame:
        """Every score row (`ScoreStore.frame`)."""
        return self.cached("scores", self.scores.frame)

    def offers(self) -> OfferBook:
        """The offer book as stored (read only)."""
        return self.cached("offers", lambda: OfferBook(self.engine))

    def entries(self) -> list:
        """Every ledger row, in the order recorded."""
        return self.cached("entries", self.ledger.entries)

    def watermark(self) -> datetime | None:
        """The replay clock's now: the latest watermark of any source."""
        return self.checkpoints.watermark()

    def campaign_folder(self) -> Path:
        """The campaign folder the last run judged with, else the configured one."""
        run = queries.last_run(self.engine) or {}
        return Path(run["campaigns"]) if run.get("campaigns") else self.settings.campaigns_dir

    def campaign_set(self) -> CampaignSet:
        """The running set of the campaign folder, as the database holds it (pause state read on every ask)."""
        return CampaignSet(self.campaign_folder(), self.settings.templates_dir, self.engine)

    def running(self) -> dict[str, Campaign]:
        """The campaigns the ledger was judged with: the running set and the consent notice."""
        return stored_campaigns(self.settings, self.engine, self.campaign_folder())

    def report(self) -> dict[str, Any]:
        """The last campaign run's report (`nudge report --json`'s figures)."""
        return self.cached("report", lambda: queries.backtest_report(self.engine, self.lines, self.running(),
                                                                     queries.last_run(self.engine)))
