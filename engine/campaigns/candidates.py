"""What flows between the campaign stages: a customer's context, a candidate message, and the verdict on it.

Triggers make `Candidate`s; arbitration turns them into `Decision`s; the ledger records each decision under
the candidate's idempotency key, and delivery acts on the ones to send. All pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from engine.events import CustomerProfile
from engine.state import CustomerState


@dataclass(frozen=True)
class CustomerContext:
    """Everything a rule, a trigger or a template may read about one customer."""

    customer_id: str
    state: CustomerState | None = None
    profile: CustomerProfile | None = None
    scores: Mapping[str, Any] = field(default_factory=dict)  # customer-level outputs by name
    categories: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # category -> output -> value

    @property
    def zone(self) -> str:
        """The customer's zone: the profile's, else the first purchase's, else UTC."""
        if self.profile is not None and self.profile.time_zone:
            return self.profile.time_zone
        if self.state is not None and self.state.zone:
            return self.state.zone
        return "UTC"


def idempotency_key(campaign: str, customer_id: str, occurrence: str) -> str:
    """The ledger's unique key: campaign, customer, and the occurrence the trigger fixed."""
    return f"{campaign}|{customer_id}|{occurrence}"


@dataclass(frozen=True)
class Candidate:
    """A campaign wanting to message a customer for one occurrence of its trigger."""

    campaign: str
    customer_id: str
    occurrence: str  # event id, "category@opening purchase id", or the schedule's fire time (ISO)
    at: datetime  # event time the trigger became true
    reason: str = ""  # for people: why the trigger fired
    category: str | None = None

    @property
    def key(self) -> str:
        """The idempotency key (see `idempotency_key`)."""
        return idempotency_key(self.campaign, self.customer_id, self.occurrence)


class Verdict(Enum):
    """What became of a candidate. QUEUED ones are delivered when `not_before` arrives."""

    QUEUED = "queued"  # to send now, or at not_before (quiet hours, night)
    SENT = "sent"
    HELD_OUT = "held_out"  # campaign holdout: would have been sent; its cap slot counts as used
    CONTROL = "control"  # global control group: no advertising at all
    CAPPED = "capped"
    OVER_BUDGET = "over_budget"
    NO_CONSENT = "no_consent"
    OUTRANKED = "outranked"  # another campaign won this customer at this moment
    PAUSED = "paused"
    ABORTED = "aborted"  # deferred past the campaign's max delay
    RENDER_ERROR = "render_error"
    FAILED = "failed"  # delivery retried and gave up: dead-lettered


@dataclass(frozen=True)
class Decision:
    """A verdict on a candidate, when it may be delivered, and why."""

    candidate: Candidate
    verdict: Verdict
    decided_at: datetime
    not_before: datetime | None = None  # a deferred message waits until then
    deferred: str | None = None  # "quiet_hours" or "night" when it waits
    detail: str = ""
