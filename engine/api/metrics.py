"""GET /metrics: the engine's figures in the Prometheus text format, read from the stores at scrape time.

A custom collector rather than counters kept in the API process: the figures are what the stores hold (every
runtime writes them), so a scrape of any API process over the home says the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from engine.api.home import Home
from engine.db import checkpoint as checkpoint_table
from engine.db import customer_state, dead_letter, delivery_ledger, suppression
from engine.errors import NudgeError


class EngineCollector(Collector):
    """Events, dead letters, messages by outcome, lag and refit durations of one engine home."""

    def __init__(self, home: Home) -> None:
        self.home = home

    def collect(self) -> Iterator[Metric]:
        """Every figure, read now."""
        home = self.home
        now = datetime.now(UTC)
        events = CounterMetricFamily("nudge_records", "Records read per source and what became of them",
                                     labels=["source", "outcome"])
        watermark = GaugeMetricFamily("nudge_watermark_seconds", "The source's watermark (latest event time), "
                                      "Unix seconds", labels=["source"])
        lag = GaugeMetricFamily("nudge_event_lag_seconds", "Wall clock minus the source's watermark (a backtest's "
                                "is its age)", labels=["source"])
        age = GaugeMetricFamily("nudge_checkpoint_age_seconds", "Seconds since the source's last checkpoint",
                                labels=["source"])
        for cp in home.checkpoints.load_all():
            for outcome, n in vars(cp.counters).items():
                events.add_metric([cp.source, outcome], n)
            if cp.watermark is not None:
                watermark.add_metric([cp.source], cp.watermark.timestamp())
                lag.add_metric([cp.source], (now - cp.watermark).total_seconds())
        with home.engine.connect() as conn:
            for source, updated in conn.execute(select(checkpoint_table.c.source, checkpoint_table.c.updated_at)):
                age.add_metric([source], (now - updated).total_seconds())
            letters = conn.execute(select(dead_letter.c.source, func.count()).group_by(dead_letter.c.source)).all()
            sends = conn.execute(select(delivery_ledger.c.campaign, delivery_ledger.c.verdict, func.count())
                                 .group_by(delivery_ledger.c.campaign, delivery_ledger.c.verdict)).all()
            customers = conn.execute(select(func.count()).select_from(customer_state)).scalar_one()
            erased = conn.execute(select(func.count()).select_from(suppression)).scalar_one()
        yield from (events, watermark, lag, age)
        dead = CounterMetricFamily("nudge_dead_letters", "Dead letters per source (delivery:<channel> for messages "
                                   "that failed)", labels=["source"])
        for source, n in letters:
            dead.add_metric([source], n)
        yield dead
        messages = CounterMetricFamily("nudge_messages", "Ledger rows per campaign and outcome (verdict)",
                                       labels=["campaign", "verdict"])
        for campaign, verdict, n in sends:
            messages.add_metric([campaign, verdict], n)
        yield messages
        yield GaugeMetricFamily("nudge_customers", "Customers with a state", value=customers)
        yield GaugeMetricFamily("nudge_erased_customers", "Customers erased on request (the suppression list)",
                                value=erased)
        fit = GaugeMetricFamily("nudge_model_fit_seconds", "Fit time of each model's serving version",
                                labels=["model", "version"])
        fitted = GaugeMetricFamily("nudge_model_fitted_seconds", "When each model's serving version was fitted, "
                                   "Unix seconds", labels=["model", "version"])
        for name in home.registry.names():
            try:
                active = home.registry.active_version(name)
            except NudgeError:
                continue
            if active.fit_seconds is not None:
                fit.add_metric([name, active.version], active.fit_seconds)
            fitted.add_metric([name, active.version], active.created.timestamp())
        yield fit
        yield fitted
