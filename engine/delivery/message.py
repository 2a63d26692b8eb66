"""A rendered message, as every channel receives it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Message:
    """One message for one customer; `key` is the ledger's idempotency key, carried by every channel."""

    key: str
    campaign: str
    customer_id: str
    channel: str
    language: str
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)  # flat strings: the key, the offer's code, ...
    kind: str = "advertising"  # or "transactional"
    sender: str = ""
    at: datetime | None = None  # the event time it was rendered for sending


    def to_dict(self) -> dict[str, Any]:
        """The message as plain JSON-able data."""
        return {"key": self.key, "campaign": self.campaign, "customer_id": self.customer_id, "channel": self.channel,
                "language": self.language, "title": self.title, "body": self.body, "data": dict(self.data),
                "kind": self.kind, "sender": self.sender, "at": self.at.isoformat() if self.at is not None else None}
