"""Delivery end to end on real receivers: sent once, retried then dead-lettered, render errors recorded,
stale and paused rows handled, and a crash between sending and marking re-sends only under the same key."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from engine.campaigns.candidates import Candidate, Decision, Verdict
from engine.db import connect, delivery_ledger
from engine.deadletters import list_dead_letters
from engine.delivery.channels import FileOutbox, PushChannel, WalletChannel
from engine.delivery.deliver import Deliverer, RetryPolicy
from engine.delivery.ledger import Ledger
from engine.delivery.render import Renderer
from tests.delivery.conftest import NOW, TEMPLATES, Receiver, campaign, context, lpoint

FAST = RetryPolicy(attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.05)
CAMPAIGNS = {c.name: c for c in (campaign(), lpoint(channel="wallet"),
                                 campaign("cj_winback", channel="file", trigger={"type": "lapse", "p_alive_below": 0.3},
                                          offer={"type": "coupon", "amount_off": 5}))}
CHANNELS = {name: c.channel for name, c in CAMPAIGNS.items()}
CONTEXTS = {i: context(i, zone="Asia/Seoul" if i.startswith("K") else "America/Chicago")
            for i in ("1001", "1002", "1003", "K1")}


@pytest.fixture
def engine(tmp_path: Path):
    return connect(f"sqlite:///{tmp_path}/nudge.db")


def queue(ledger: Ledger, campaign_name: str, customer: str, hours_ago: float = 0.0,
          category: str = "MEAT") -> str:
    """Record one queued decision made `hours_ago` before NOW; its key."""
    at = NOW - timedelta(hours=hours_ago)
    candidate = Candidate(campaign_name, customer, f"{category}@2017-06-01", at, "due", category)
    ledger.record([Decision(candidate, Verdict.QUEUED, at)], CHANNELS)
    return candidate.key


def deliverer(engine, channels, root: Path = TEMPLATES, **kw) -> Deliverer:
    return Deliverer(Ledger(engine), Renderer(root), channels, engine, kw.pop("retry", FAST), **kw)


@pytest.mark.parametrize("batch", [1, 200])
def test_a_queued_message_is_sent_once_and_marked(engine, receiver: Receiver, batch: int) -> None:
    ledger = Ledger(engine)
    keys = [queue(ledger, "cj_repurchase_coupon", c) for c in ("1001", "1002")]
    d = deliverer(engine, {"push": PushChannel(receiver.url)}, batch=batch)
    report = d.deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.due == 2 and report.sent == 2 and report.face_value == {"cj_repurchase_coupon": 10.0}
    assert receiver.keys() == keys
    entry = ledger.entry(keys[0])
    assert entry is not None and entry.verdict is Verdict.SENT and entry.sent_at == NOW and entry.attempts == 1
    assert entry.provider_id == "projects/test/messages/1" and entry.offer_code.startswith("CJ-")
    assert entry.offer_code in receiver.requests[0]["json"]["message"]["notification"]["body"]
    again = d.deliver(NOW + timedelta(hours=1), CONTEXTS.__getitem__, CAMPAIGNS)
    assert again.due == 0 and len(receiver.requests) == 2  # nothing re-sent


def test_a_flaky_endpoint_is_retried_with_growing_waits(engine, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    key = queue(Ledger(engine), "cj_repurchase_coupon", "1001")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    report = deliverer(engine, {"push": PushChannel(receiver.url)}, sleep=sleep).deliver(
        NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.sent == 1 and report.retries == 2 and receiver.keys() == [key] * 3
    assert waits == [0.01, 0.02]
    entry = Ledger(engine).entry(key)
    assert entry is not None and entry.verdict is Verdict.SENT and entry.attempts == 3


def test_a_failing_endpoint_is_retried_then_dead_lettered(engine, receiver: Receiver) -> None:
    receiver.then = 500
    key = queue(Ledger(engine), "cj_repurchase_coupon", "1001")
    report = deliverer(engine, {"push": PushChannel(receiver.url)}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.sent == 0 and report.total("failed") == 1 and len(receiver.requests) == 3
    entry = Ledger(engine).entry(key)
    assert entry is not None and entry.verdict is Verdict.FAILED and entry.attempts == 3
    assert "HTTP 500" in entry.detail and "after 3 attempt(s)" in entry.detail
    letters = list_dead_letters(engine, "delivery:push")
    assert len(letters) == 1 and letters[0].where == key and "HTTP 500" in letters[0].reason
    assert key in letters[0].raw and letters[0].recorded_at == NOW
    assert deliverer(engine, {"push": PushChannel(receiver.url)}).deliver(
        NOW, CONTEXTS.__getitem__, CAMPAIGNS).due == 0  # a failed row is not retried forever


def test_a_final_refusal_is_not_retried(engine, receiver: Receiver) -> None:
    receiver.then = 400
    queue(Ledger(engine), "cj_repurchase_coupon", "1001")
    report = deliverer(engine, {"push": PushChannel(receiver.url)}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.total("failed") == 1 and len(receiver.requests) == 1 and report.retries == 0


def test_a_template_error_is_recorded_and_nothing_is_sent(engine, receiver: Receiver, tmp_path: Path) -> None:
    root = tmp_path / "templates"
    root.mkdir()
    (root / "cj_repurchase_coupon.en.j2").write_text(
        "{% block title %}x{% endblock %}{% block body %}{{ offer.nothing }}\nunsubscribe{% endblock %}",
        encoding="utf-8")
    key = queue(Ledger(engine), "cj_repurchase_coupon", "1001")
    report = deliverer(engine, {"push": PushChannel(receiver.url)}, root).deliver(
        NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.total("render_error") == 1 and receiver.requests == []
    entry = Ledger(engine).entry(key)
    assert entry is not None and entry.verdict is Verdict.RENDER_ERROR
    assert "cj_repurchase_coupon.en.j2:1: block body: UndefinedError" in entry.detail
    assert report.problems == [f"{key}: {entry.detail}"]


def test_a_message_waiting_past_its_max_delay_is_aborted(engine, receiver: Receiver) -> None:
    ledger = Ledger(engine)
    stale = queue(ledger, "cj_repurchase_coupon", "1001", hours_ago=73)
    fresh = queue(ledger, "cj_repurchase_coupon", "1002", hours_ago=71)
    retired = queue(ledger, "cj_repurchase_coupon", "1003")
    report = deliverer(engine, {"push": PushChannel(receiver.url)}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert receiver.keys() == [fresh, retired]
    entry = ledger.entry(stale)
    assert entry is not None and entry.verdict is Verdict.ABORTED
    assert entry.detail == "waited 73.0 h since the decision, more than max_delay_hours 72"
    assert report.total("aborted") == 1
    gone = queue(ledger, "cj_repurchase_coupon", "1001", category="DELI")
    without = {k: v for k, v in CAMPAIGNS.items() if k != "cj_repurchase_coupon"}
    deliverer(engine, {"push": PushChannel(receiver.url)}).deliver(NOW, CONTEXTS.__getitem__, without)
    entry = ledger.entry(gone)
    assert entry is not None and entry.verdict is Verdict.ABORTED and "is not running" in entry.detail


def test_pause_holds_queued_rows_and_resume_sends_each_once(engine, receiver: Receiver) -> None:
    ledger = Ledger(engine)
    keys = [queue(ledger, "cj_repurchase_coupon", c) for c in ("1001", "1002")]
    d = deliverer(engine, {"push": PushChannel(receiver.url)})
    held = d.deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS, paused={"cj_repurchase_coupon"})
    assert held.total("held") == 2 and held.sent == 0 and receiver.requests == []
    assert {e.key for e in ledger.queued(NOW)} == set(keys)
    assert d.deliver(NOW + timedelta(hours=1), CONTEXTS.__getitem__, CAMPAIGNS).sent == 2  # resumed
    assert d.deliver(NOW + timedelta(hours=2), CONTEXTS.__getitem__, CAMPAIGNS).sent == 0
    assert sorted(receiver.keys()) == sorted(keys)


def test_consent_withdrawn_after_the_decision_stops_the_send(engine, receiver: Receiver) -> None:
    ledger = Ledger(engine)
    blocked = queue(ledger, "cj_repurchase_coupon", "1001")
    allowed = queue(ledger, "cj_repurchase_coupon", "1002")

    def gate(entry, campaign, now):
        return "push advertising consent withdrawn" if entry.customer_id == "1001" else None

    report = deliverer(engine, {"push": PushChannel(receiver.url)}, gate=gate).deliver(
        NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert receiver.keys() == [allowed] and report.total("no_consent") == 1
    entry = ledger.entry(blocked)
    assert entry is not None and entry.verdict is Verdict.NO_CONSENT and "withdrawn" in entry.detail


def test_a_crash_between_send_and_mark_resends_only_under_the_same_key(engine, tmp_path: Path) -> None:
    ledger = Ledger(engine)
    keys = [queue(ledger, "cj_winback", c) for c in ("1001", "1002")]
    outbox = tmp_path / "outbox.jsonl"
    assert deliverer(engine, {"file": FileOutbox(outbox)}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS).sent == 2
    # What a SIGKILL after the send and before the mark's commit leaves: the row still queued.
    with engine.begin() as conn:
        conn.execute(update(delivery_ledger).where(delivery_ledger.c.key == keys[1])
                     .values(verdict="queued", sent_at=None))
    report = deliverer(engine, {"file": FileOutbox(outbox)}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.sent == 1  # sent again, under the same key ...
    assert FileOutbox(outbox).keys() == keys  # ... which the outbox had: each key once
    assert ledger.keys(Verdict.SENT) == set(keys)


def test_a_korean_coupon_lands_in_the_wallet(engine) -> None:
    key = queue(Ledger(engine), "lpoint_repurchase_coupon", "K1")
    wallet = WalletChannel(engine)
    report = deliverer(engine, {"wallet": wallet}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    assert report.sent == 1 and report.face_value == {"lpoint_repurchase_coupon": 3000.0}
    (offer,) = wallet.offers("K1")
    assert offer["key"] == key and offer["currency"] == "KRW" and offer["body"].startswith("(광고) 롯데멤버스")
    assert offer["code"] == Ledger(engine).entry(key).offer_code


def test_a_missing_channel_is_a_dead_letter(engine) -> None:
    key = queue(Ledger(engine), "cj_repurchase_coupon", "1001")
    deliverer(engine, {}).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    entry = Ledger(engine).entry(key)
    assert entry is not None and entry.verdict is Verdict.FAILED and "no channel 'push' configured" in entry.detail
    assert [d.where for d in list_dead_letters(engine, "delivery:push")] == [key]
