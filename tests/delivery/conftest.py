"""Real local receivers for the delivery tests: an HTTP server on 127.0.0.1 and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from engine.campaigns.candidates import CustomerContext
from engine.campaigns.schema import Campaign
from engine.events import CustomerProfile, Line, Purchase
from engine.state import apply

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
NOW = datetime(2017, 6, 15, 3, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """An HTTP receiver: answers `statuses` in turn (then `then`), records every request."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    then: int = 200
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self) -> list[str]:
        """The idempotency keys received, in order (repeats included)."""
        return [r["headers"].get("Idempotency-Key") for r in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server on 127.0.0.1 (an ephemeral port) in a thread."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "json": json.loads(body or b"null")})
                status = state.statuses.pop(0) if state.statuses else state.then
                n = len(state.requests)
            answer = json.dumps({"name": f"projects/test/messages/{n}"} if status < 300 else
                                {"error": {"code": status}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            if status < 300:
                self.send_header("X-Request-Id", f"req-{n}")
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1/projects/test/messages:send"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    """What the SMTP server received."""

    host: str
    port: int
    messages: list[Any] = field(default_factory=list)
    refuse: int | None = None  # answer every RCPT with this code when set


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """An aiosmtpd Controller on 127.0.0.1 that keeps every message it accepts."""
    from email import message_from_bytes
    from email.policy import default

    from aiosmtpd.controller import Controller

    box = Mailbox("127.0.0.1", 0)

    class Handler:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if box.refuse:
                return f"{box.refuse} mailbox unavailable"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            box.messages.append(message_from_bytes(envelope.original_content, policy=default))
            return "250 Message accepted"

    with socket.socket() as probe:  # a free port: the controller's start-up check connects to the port it is given
        probe.bind(("127.0.0.1", 0))
        box.port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def campaign(name: str = "cj_repurchase_coupon", **fields: Any) -> Campaign:
    """A campaign like the examples: a coupon on push in English unless told otherwise."""
    spec: dict[str, Any] = {
        "name": name, "template": name, "sender": "Complete Journey", "channel": "push",
        "trigger": {"type": "repurchase_due", "top_k": 3},
        "offer": {"type": "coupon", "percent_off": 15, "max_discount": 5, "min_spend": 30, "validity_days": 7,
                  "code_prefix": "CJ"},
    }
    spec.update(fields)
    return Campaign.model_validate(spec)


def lpoint(name: str = "lpoint_repurchase_coupon", **fields: Any) -> Campaign:
    """A Korean L.POINT campaign in KRW."""
    base: dict[str, Any] = {"language": "ko", "currency": "KRW", "zone": "Asia/Seoul", "sender": "롯데멤버스",
                            "offer": {"type": "coupon", "amount_off": 3000, "min_spend": 30000}}
    base.update(fields)
    return campaign(name, **base)


def context(customer_id: str = "1001", zone: str = "America/Chicago", days: int = 60,
            categories: tuple[str, ...] = ("GROCERY", "PRODUCE", "MEAT"), amount: float = 20.0,
            scores: dict[str, Any] | None = None,
            preference: dict[str, int] | None = None) -> CustomerContext:
    """A real state from a purchase a week for `days` days (one line per category), and the given scores."""
    state = None
    for i in range(0, days, 7):
        lines = tuple(Line(f"P{j}", (c,), 1, amount) for j, c in enumerate(categories))
        state = apply(state, Purchase(event_id=f"{customer_id}-{i}", customer_id=customer_id,
                                      event_time=datetime(2017, 4, 1, 15, tzinfo=UTC) + timedelta(days=i),
                                      lines=lines))
    profile = CustomerProfile(customer_id=customer_id, time_zone=zone)
    cats = {c: {"category.preference": p} for c, p in (preference or {}).items()}
    return CustomerContext(customer_id, state, profile, scores or {"segment": "loyal"}, cats)

