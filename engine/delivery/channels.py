"""Channels: where a rendered message goes. Each carries the message's idempotency key so a receiver can drop a
key it has seen (a crash between sending and marking the ledger may send a key again); the wallet and the file
outbox drop repeated keys themselves.

A channel's `send` returns the provider's id for the message, or raises `DeliveryError` (`retryable` False for
an answer that trying again cannot change, such as HTTP 400 or SMTP 550).
"""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
from sqlalchemy import Engine, select

from engine.config import Settings
from engine.db import insert_ignoring_duplicates, wallet_offer
from engine.delivery.message import Message
from engine.errors import DeliveryError


class Channel(Protocol):
    """Sends one message; returns the provider's id or raises DeliveryError."""

    def send(self, message: Message) -> str:
        """Deliver the message (a repeated key must not reach the customer twice where the channel can tell)."""
        ...


def _http_error(where: str, response: httpx.Response) -> DeliveryError:
    code = response.status_code
    retryable = code == 429 or code >= 500
    text = response.text[:200].replace("\n", " ")
    return DeliveryError(f"{where}: HTTP {code} {response.reason_phrase} ({text})", retryable)


class _Http:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.client = httpx.Client(timeout=timeout)

    def post(self, where: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        try:
            response = self.client.post(self.url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
        if not response.is_success:
            raise _http_error(where, response)
        return response

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


class PushChannel(_Http):
    """FCM HTTP v1 `messages:send` JSON posted to `url`; a customer's topic unless the data carries a token."""

    def __init__(self, url: str, topic: str = "customer-{customer_id}", timeout: float = 10.0,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(url, timeout)
        self.topic = topic
        self.headers = dict(headers or {})

    def body(self, message: Message) -> dict[str, Any]:
        """The FCM v1 request body: target, notification, and string data holding the key."""
        target = ({"token": message.data["push_token"]} if "push_token" in message.data
                  else {"topic": self.topic.format(customer_id=message.customer_id)})
        data = {k: str(v) for k, v in message.data.items() if k != "push_token"}
        data["key"] = message.key
        return {"message": {**target, "notification": {"title": message.title, "body": message.body},
                            "data": data}}

    def send(self, message: Message) -> str:
        """POST the message; FCM's answer names it ("projects/.../messages/...")."""
        response = self.post(f"push {self.url} key {message.key}", self.body(message),
                             {**self.headers, "Idempotency-Key": message.key})
        try:
            return str(response.json().get("name") or message.key)
        except ValueError:
            return message.key


class WebhookChannel(_Http):
    """The message as JSON POSTed to `url` with an `Idempotency-Key` header."""

    def __init__(self, url: str, timeout: float = 10.0, headers: dict[str, str] | None = None) -> None:
        super().__init__(url, timeout)
        self.headers = dict(headers or {})

    def send(self, message: Message) -> str:
        """POST the message; the receiver's `X-Request-Id` (or the key) back."""
        response = self.post(f"webhook {self.url} key {message.key}", message.to_dict(),
                             {**self.headers, "Idempotency-Key": message.key})
        return response.headers.get("X-Request-Id") or message.key


def message_id(key: str, domain: str) -> str:
    """An email Message-ID derived from the idempotency key: the same key always has the same id."""
    return f"<{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}@{domain}>"


class EmailChannel:
    """SMTP with smtplib: one session per message, Message-ID from the key (receivers dedup on it)."""

    def __init__(self, host: str, port: int, sender: str, recipient: str = "{customer_id}@customers.invalid",
                 timeout: float = 10.0, unsubscribe_url: str | None = None) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.recipient = recipient
        self.timeout = timeout
        self.unsubscribe_url = unsubscribe_url
        self.domain = sender.rpartition("@")[2] or "nudge.invalid"

    def email(self, message: Message) -> EmailMessage:
        """The email for a message: headers carry the key; advertising gets List-Unsubscribe."""
        mail = EmailMessage(policy=SMTP)
        mail["From"] = formataddr((message.sender, self.sender)) if message.sender else self.sender
        mail["To"] = message.data.get("email") or self.recipient.format(customer_id=message.customer_id)
        mail["Subject"] = message.title
        mail["Message-ID"] = message_id(message.key, self.domain)
        mail["X-Nudge-Key"] = message.key
        if message.kind == "advertising" and self.unsubscribe_url:
            mail["List-Unsubscribe"] = f"<{self.unsubscribe_url}>"
        mail.set_content(message.body)
        return mail

    def send(self, message: Message) -> str:
        """Send over SMTP; the Message-ID back. 5xx answers are final, 4xx and lost connections retry."""
        mail = self.email(message)
        where = f"email {self.host}:{self.port} key {message.key}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(f"{where}: recipients refused {exc.recipients}",
                                retryable=all(400 <= c < 500 for c in codes)) from None
        except smtplib.SMTPResponseException as exc:
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else exc.smtp_error
            raise DeliveryError(f"{where}: SMTP {exc.smtp_code} {text}", retryable=exc.smtp_code < 500) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}") from None
        return str(mail["Message-ID"])


class WalletChannel:
    """The coupon wallet: a table of the offers issued to each customer, one row per key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        wallet_offer.create(engine, checkfirst=True)

    def send(self, message: Message) -> str:
        """Put the message's offer in the customer's wallet (a key already there is left as it is)."""
        data = message.data
        valid = data.get("offer.valid_until")
        row = {"key": message.key, "customer_id": message.customer_id, "campaign": message.campaign,
               "code": data.get("offer.code"), "kind": data.get("offer.kind"),
               "face_value": float(data["offer.face_value"]) if "offer.face_value" in data else None,
               "currency": data.get("offer.currency"),
               "valid_until": datetime.fromisoformat(valid) if valid else None,
               "title": message.title, "body": message.body,
               "data": json.dumps(data, ensure_ascii=False, sort_keys=True),
               "issued_at": message.at}
        if message.at is None:
            raise DeliveryError(f"wallet key {message.key}: the message has no time (Message.at)", retryable=False)
        try:
            with self.engine.begin() as conn:
                conn.execute(insert_ignoring_duplicates(self.engine, wallet_offer), [row])
        except Exception as exc:  # a database error is the channel failing: retry, then dead-letter
            raise DeliveryError(f"wallet key {message.key}: {type(exc).__name__}: {exc}") from None
        return f"wallet:{message.key}"

    def offers(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's wallet, oldest first."""
        t = wallet_offer.c
        query = select(wallet_offer).where(t.customer_id == customer_id).order_by(t.issued_at, t.key)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]


class FileOutbox:
    """JSON Lines, one message a line, fsynced; a key already in the file is not written again.

    One writer per file. A torn last line (a crash mid-write) is cut off when the outbox opens: it never counted.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._seen: set[str] = set()
        self._file: IO[str] | None = None
        if self.path.exists():
            raw = self.path.read_bytes()
            end = raw.rfind(b"\n") + 1
            if end < len(raw):
                with self.path.open("r+b") as f:
                    f.truncate(end)
            for line in raw[:end].splitlines():
                if line.strip():
                    self._seen.add(json.loads(line)["key"])

    def send(self, message: Message) -> str:
        """Append the message unless its key is already in the file (durable at the next `flush`)."""
        if message.key not in self._seen:
            line = json.dumps(message.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
            try:
                if self._file is None:
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(line)
                self._file.flush()  # in the OS's hands: a killed process loses nothing written
            except OSError as exc:
                raise DeliveryError(f"file outbox {self.path} key {message.key}: {exc}") from None
            self._seen.add(message.key)
        return f"file:{message.key}"

    def flush(self) -> None:
        """fsync what was written: delivery calls this before it marks the messages sent."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """fsync and close the file."""
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def keys(self) -> list[str]:
        """The keys in the file, in the order written (a repeat would show twice)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line)["key"] for line in f if line.strip()]


def channels_from_settings(settings: Settings, engine: Engine) -> dict[str, Channel]:
    """The channels the settings configure: wallet and file always; push, webhook and email when given."""
    timeout = settings.delivery_timeout_seconds
    channels: dict[str, Channel] = {"wallet": WalletChannel(engine), "file": FileOutbox(settings.outbox_file)}
    if settings.push_url:
        channels["push"] = PushChannel(settings.push_url, timeout=timeout)
    if settings.webhook_url:
        channels["webhook"] = WebhookChannel(settings.webhook_url, timeout=timeout)
    if settings.smtp_host:
        channels["email"] = EmailChannel(settings.smtp_host, settings.smtp_port, settings.email_sender,
                                         timeout=timeout, unsubscribe_url=settings.unsubscribe_url)
    return channels
