"""The overview, models and Prometheus metrics say what the stores say."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, timedelta

import pyarrow.compute as pc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.db import connect
from engine.delivery.ledger import Ledger
from engine.models.registry import Registry
from engine.queries import model_versions
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore

pytestmark = pytest.mark.slow  # the session's backtest


def test_the_overview_is_the_stores(client, built) -> None:
    engine = connect(built.settings.database_url)
    checkpoints = CheckpointStore(engine)
    states, watermark = checkpoints.load_states(), checkpoints.watermark()
    shown = client.get("/api/overview", params={"hours": 72}).json()
    assert shown["customers"] == len(states) and shown["revenue"] == pytest.approx(
        sum(s.spend for s in states.values()) / 100)
    verdicts = Counter()
    for by in Ledger(engine).counts().values():
        verdicts.update(by)
    assert shown["sends"] == dict(verdicts) and shown["sends"]["sent"] > 0
    hours = shown["events_per_hour"]
    assert len(hours) == 72 and hours[-1]["hour"] == watermark.replace(minute=0, second=0, microsecond=0).isoformat()
    times = LineStore(built.settings.lines_dir, engine).read().column("event_time")
    first = watermark.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=71)
    inside = pc.sum(pc.and_(pc.greater_equal(times, first), pc.less(times, watermark.replace(
        minute=0, second=0, microsecond=0) + timedelta(hours=1)))).as_py()
    assert sum(h["events"] for h in hours) == inside > 0


def test_models_list_every_version_and_the_serving_one(client, built) -> None:
    shown = client.get("/api/models").json()
    versions = model_versions(Registry(built.settings.models_dir))
    assert [(m["name"], m["version"], m["active"]) for m in shown] == [(v.name, v.version, v.active)
                                                                       for v in versions]
    assert all(m["created_at"] == m["created"] for m in shown)
    assert {m["name"] for m in shown if m["active"]} == {"clv", "segments", "next_purchase",
                                                          "next_purchase_category", "preference"}
    assert client.get("/api/models", params={"name": "nope"}).status_code == 404


def test_metrics_are_prometheus_text_of_the_stores(client, built) -> None:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(answer.text) for s in family.samples}
    engine = connect(built.settings.database_url)
    cj = CheckpointStore(engine).load("cj")
    assert samples[("nudge_records_total", (("outcome", "purchases"), ("source", "cj")))] == cj.counters.purchases
    for campaign, by in Ledger(engine).counts().items():
        for verdict, n in by.items():
            assert samples[("nudge_messages_total", (("campaign", campaign), ("verdict", verdict)))] == n
    registry = Registry(built.settings.models_dir)
    for name in registry.names():
        active = registry.active_version(name)
        assert samples[("nudge_model_fit_seconds", (("model", name), ("version", active.version)))] == \
            pytest.approx(active.fit_seconds)
    lag = samples[("nudge_event_lag_seconds", (("source", "cj"),))]
    assert lag > 0 and samples[("nudge_customers", ())] == CheckpointStore(engine).customers()
