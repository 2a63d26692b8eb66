"""A subscription offer taken up by an accept event in the stream, through the real embedded runtime, campaign jobs,
ledger, file outbox and offer book: the same data path a live feed takes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.campaigns.candidates import Verdict
from engine.config import Settings
from engine.offers.book import OfferBook
from engine.runtime.campaigns import open_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.jsonl import JsonLinesSource

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGN = """
name: members
kind: transactional
trigger: {type: schedule, cron: "0 10 * * *"}
offer:
  type: subscription
  fee: 9.99
  tiers:
    - {name: Basic, min_monthly_spend: 500, coupons: [{amount_off: 2, code_prefix: MB}], extra_points_percent: 2}
channel: file
template: cj_subscription
sender: Shop
caps: [{sends: 1, days: 30}]
"""
T0 = datetime(2017, 11, 1, 8, tzinfo=UTC)


def _purchase(i: int, when: datetime, amount: float) -> str:
    return json.dumps({"event_id": f"p{i}", "customer_id": "c1", "event_time": when.isoformat(),
                       "lines": [[f"sku{i}", ["GROCERY"], 1, amount]]})


def _run(settings: Settings, path: Path, start: datetime) -> tuple[EmbeddedRuntime, object]:
    runtime = EmbeddedRuntime(settings)
    campaigns = open_campaigns(settings, runtime.engine, start=start, models=())
    runtime.replay(JsonLinesSource(path), observer=campaigns)
    return runtime, campaigns


def test_an_accept_event_takes_a_subscription_up_once_and_its_purchases_earn_points(tmp_path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "members.yaml").write_text(CAMPAIGN)
    settings = Settings(home=tmp_path / "home", campaigns_dir=folder, templates_dir=ROOT / "templates")
    stream = tmp_path / "events.jsonl"
    lines = [_purchase(i, T0 + timedelta(days=i), 20.0) for i in range(3)]
    stream.write_text("\n".join(lines) + "\n")
    runtime, campaigns = _run(settings, stream, T0 + timedelta(days=1))
    [entry] = campaigns.ledger.entries(verdict=Verdict.SENT)
    code = entry.offer_code
    assert OfferBook(runtime.engine).offers[code].status == "offered"  # 40 spent since: under the first tier
    accepted = T0 + timedelta(days=3, hours=1)
    more = [json.dumps({"type": "offer_response", "event_id": "r1", "customer_id": "c1",
                        "event_time": accepted.isoformat(), "code": code}),
            json.dumps({"type": "offer_response", "event_id": "r1", "customer_id": "c1",  # delivered twice
                        "event_time": accepted.isoformat(), "code": code}),
            _purchase(9, accepted + timedelta(hours=2), 50.0)]
    with stream.open("a") as f:
        f.write("\n".join(more) + "\n")
    runtime, campaigns = _run(settings, stream, T0 + timedelta(days=1))  # resumes and reads on
    book = OfferBook(runtime.engine)
    sub = book.offers[code]
    assert sub.status == "active" and sub.progress["tier"] == "Basic"
    steps = [(s.kind, s.ref, s.amount) for s in book.steps(customer_id="c1") if s.code == code]
    assert ("taken_up", "accept:r1", 0.0) in steps
    assert [k for k, _, _ in steps].count("taken_up") == 1
    assert ("points", "points:p9", 1.0) in steps  # 2 % of the 50 bought after the take-up
    assert [h.kind for h in book.of_customer("c1")].count("tier_coupon") == 1  # Basic's coupon at the take-up
