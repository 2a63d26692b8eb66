"""Channels against real receivers: FCM v1 JSON and webhooks over HTTP on 127.0.0.1, email through aiosmtpd,
the wallet table and the JSONL outbox — every one carrying the idempotency key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.db import connect
from engine.delivery.channels import (
    EmailChannel,
    FileOutbox,
    PushChannel,
    WalletChannel,
    WebhookChannel,
    channels_from_settings,
    message_id,
)
from engine.delivery.message import Message
from engine.errors import DeliveryError
from tests.delivery.conftest import NOW, Mailbox, Receiver


def message(key: str = "cj_repurchase_coupon|1001|MEAT@2017-06-01", **fields) -> Message:
    base = dict(key=key, campaign="cj_repurchase_coupon", customer_id="1001", channel="push", language="en",
                title="Time to restock", body="Code CJ-X\nunsubscribe at u", sender="Complete Journey", at=NOW,
                data={"key": key, "offer.code": "CJ-X", "offer.kind": "coupon", "offer.face_value": "5",
                      "offer.currency": "USD", "offer.valid_until": "2017-06-22T23:59:59-05:00"})
    base.update(fields)
    return Message(**base)


def test_push_posts_an_fcm_v1_message_with_the_key(receiver: Receiver) -> None:
    channel = PushChannel(receiver.url)
    assert channel.send(message()) == "projects/test/messages/1"
    sent = receiver.requests[0]
    assert sent["path"] == "/v1/projects/test/messages:send"
    assert sent["headers"]["Idempotency-Key"] == "cj_repurchase_coupon|1001|MEAT@2017-06-01"
    body = sent["json"]["message"]
    assert body["topic"] == "customer-1001"
    assert body["notification"] == {"title": "Time to restock", "body": "Code CJ-X\nunsubscribe at u"}
    assert body["data"]["key"] == "cj_repurchase_coupon|1001|MEAT@2017-06-01"
    assert all(isinstance(v, str) for v in body["data"].values())  # FCM data values are strings
    channel.send(message(data={"push_token": "tok-1"}))
    assert receiver.requests[1]["json"]["message"]["token"] == "tok-1"
    assert "topic" not in receiver.requests[1]["json"]["message"]


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (400, False),
                                                    (404, False)])
def test_http_failures_say_whether_a_retry_can_help(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.then = status
    with pytest.raises(DeliveryError, match=f"push http://127.0.0.1:.* key .*: HTTP {status}") as info:
        PushChannel(receiver.url).send(message())
    assert info.value.retryable is retryable


def test_an_unreachable_endpoint_is_a_retryable_failure() -> None:
    with pytest.raises(DeliveryError, match=r"webhook http://127\.0\.0\.1:9/ key k: ConnectError") as info:
        WebhookChannel("http://127.0.0.1:9/", timeout=2).send(message("k"))
    assert info.value.retryable


def test_a_webhook_posts_the_message_with_an_idempotency_key(receiver: Receiver) -> None:
    assert WebhookChannel(receiver.url).send(message()) == "req-1"
    sent = receiver.requests[0]
    assert sent["headers"]["Idempotency-Key"] == message().key
    assert sent["json"]["key"] == message().key and sent["json"]["body"] == message().body
    assert sent["json"]["at"] == NOW.isoformat()


def test_email_goes_over_smtp_with_a_message_id_from_the_key(smtp: Mailbox) -> None:
    channel = EmailChannel(smtp.host, smtp.port, "offers@lotte.example", unsubscribe_url="https://u.example/x")
    ko = message(key="lpoint_subscription|C1|2017-06-01T10:00:00+09:00", customer_id="C1", language="ko",
                 title="(광고) 실버 등급 구독 혜택 안내", body="(광고) 롯데멤버스\n혜택\n무료수신거부 080-000-0000",
                 sender="롯데멤버스", channel="email")
    provider_id = channel.send(ko)
    assert provider_id == message_id(ko.key, "lotte.example") == channel.send(ko)  # the same key, the same id
    got = smtp.messages[0]
    assert got["Message-ID"] == provider_id and got["X-Nudge-Key"] == ko.key
    assert got["Subject"] == "(광고) 실버 등급 구독 혜택 안내"
    assert got["To"] == "C1@customers.invalid" and "롯데멤버스" in got["From"]
    assert got["List-Unsubscribe"] == "<https://u.example/x>"
    assert got.get_content().strip().endswith("무료수신거부 080-000-0000")


def test_a_refused_recipient_is_a_final_failure(smtp: Mailbox) -> None:
    smtp.refuse = 550
    with pytest.raises(DeliveryError, match="recipients refused") as info:
        EmailChannel(smtp.host, smtp.port, "o@x.example").send(message())
    assert not info.value.retryable
    smtp.refuse = 451
    with pytest.raises(DeliveryError) as info:
        EmailChannel(smtp.host, smtp.port, "o@x.example").send(message())
    assert info.value.retryable


def test_the_wallet_keeps_one_offer_per_key(tmp_path: Path) -> None:
    wallet = WalletChannel(connect(f"sqlite:///{tmp_path}/nudge.db"))
    wallet.send(message())
    wallet.send(message())
    wallet.send(message(key="other"))
    offers = wallet.offers("1001")
    assert [o["key"] for o in offers] == ["cj_repurchase_coupon|1001|MEAT@2017-06-01", "other"]
    assert offers[0]["code"] == "CJ-X" and offers[0]["face_value"] == 5.0 and offers[0]["issued_at"] == NOW
    assert offers[0]["valid_until"].isoformat() == "2017-06-23T04:59:59+00:00"


def test_the_file_outbox_writes_a_key_once_across_reopening_and_drops_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "out" / "outbox.jsonl"
    FileOutbox(path).send(message("k1"))
    FileOutbox(path).send(message("k1"))  # a restart re-sending k1
    outbox = FileOutbox(path)
    outbox.send(message("k2"))
    outbox.send(message("k2"))
    with path.open("a", encoding="utf-8") as f:
        f.write('{"key": "k3", "bo')  # a crash mid-write
    reopened = FileOutbox(path)
    assert reopened.keys() == ["k1", "k2"]
    reopened.send(message("k3"))
    assert FileOutbox(path).keys() == ["k1", "k2", "k3"]
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[2])["title"] == "Time to restock"


def test_channels_from_settings(tmp_path: Path, receiver: Receiver) -> None:
    from engine.config import Settings

    s = Settings(home=tmp_path, push_url=receiver.url)
    channels = channels_from_settings(s, connect(s.database_url))
    assert sorted(channels) == ["file", "push", "wallet"]
    channels["file"].send(message())
    assert (tmp_path / "outbox.jsonl").exists()
