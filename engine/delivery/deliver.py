"""Delivery: the ledger's queued rows that are due become messages on their channels, each marked once.

Record the intent (arbitration wrote the row), deliver, mark: the ledger is the outbox. A crash between sending
and marking leaves the row queued, so it is sent again on restart under the same key — which every channel
carries, so the receiver (or the wallet and file outbox themselves) drops the repeat.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine
from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from engine.campaigns.candidates import CustomerContext, Verdict
from engine.campaigns.schema import Campaign
from engine.config import Settings
from engine.db import dead_letter, insert_ignoring_duplicates
from engine.deadletters import DeadLetter
from engine.delivery.channels import Channel
from engine.delivery.ledger import Claim, Entry, Ledger, Mark
from engine.delivery.message import Message
from engine.delivery.render import Renderer
from engine.errors import DeliveryError, NudgeError
from engine.offers.book import OfferBook, reminder_campaign, reminder_code
from engine.offers.issue import IssuedOffer, issue_offer

log = structlog.get_logger("nudge.delivery")

# A last look before sending, e.g. consent withdrawn since the decision: the reason not to send, or None.
Gate = Callable[[Entry, Campaign, datetime], str | None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often a send is tried and how long to wait between tries (exponential, capped)."""

    attempts: int = 4
    backoff_seconds: float = 0.5  # the first wait; doubles each retry
    backoff_max_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the settings' delivery_* fields describe."""
        return cls(settings.delivery_attempts, settings.delivery_backoff_seconds,
                   settings.delivery_backoff_max_seconds)


@dataclass
class DeliveryReport:
    """What one `deliver` call did, overall and per campaign (verdict values; "held" for paused waits)."""

    due: int = 0
    by_campaign: dict[str, Counter] = field(default_factory=dict)
    retries: int = 0  # sends tried again after a retryable failure
    face_value: dict[str, float] = field(default_factory=dict)  # issued with the messages sent, per campaign
    problems: list[str] = field(default_factory=list)  # render errors and failures, one line each

    def count(self, campaign: str, outcome: str) -> None:
        """Count one outcome for a campaign."""
        self.by_campaign.setdefault(campaign, Counter())[outcome] += 1

    def total(self, outcome: str) -> int:
        """One outcome summed over campaigns."""
        return sum(c[outcome] for c in self.by_campaign.values())

    @property
    def sent(self) -> int:
        """Messages sent."""
        return self.total(Verdict.SENT.value)


class Deliverer:
    """Sends the ledger's due rows: issue the offer, render, send with retries, mark; dead-letter what fails."""

    def __init__(self, ledger: Ledger, renderer: Renderer, channels: Mapping[str, Channel], dead_letters: Engine,
                 retry: RetryPolicy | None = None, gate: Gate | None = None,
                 sleep: Callable[[float], None] = time.sleep, batch: int = 200,
                 extra: Callable[[Entry, Campaign, datetime], Mapping[str, Any]] | None = None,
                 offers: OfferBook | None = None) -> None:
        self.ledger = ledger
        self.renderer = renderer
        self.channels = channels
        self.dead_letters = dead_letters
        self.retry = retry or RetryPolicy()
        self.gate = gate
        self.sleep = sleep  # between retries only; no decision reads the wall clock
        self.batch = max(1, batch)  # rows claimed and marked together, after the channels have flushed
        self._marks: list[Mark] = []
        self.extra = extra  # template variables beyond the customer's (the consent notice's `consent`)
        self.offers = offers  # holds what each sent message issued; a reminder shows the coupon held

    def deliver(self, now: datetime, contexts: Callable[[str], CustomerContext], campaigns: Mapping[str, Campaign],
                paused: Collection[str] = (), limit: int | None = None) -> DeliveryReport:
        """Deliver every queued row due at `now`; a paused campaign's rows stay queued ("held").

        Rows are claimed `batch` at a time (`Ledger.claim`: a second process delivering from the same ledger
        gets other rows) and marked together after every channel's `flush` (the file outbox's fsync): a crash
        loses at most a batch of marks, and those rows are re-sent under their keys.
        """
        report = DeliveryReport()
        after = None
        while limit is None or report.due < limit:
            size = self.batch if limit is None else min(self.batch, limit - report.due)
            with self.ledger.claim(now, size, after) as claim:
                try:
                    for entry in claim.entries:
                        report.due += 1
                        report.count(entry.campaign, self._one(entry, now, contexts, campaigns, paused, report))
                finally:
                    self._commit(claim)
            if len(claim.entries) < size:
                break
            after = claim.entries[-1]  # held rows stay queued: read on past them
        return report

    def _commit(self, claim: Claim) -> None:
        if self._marks:
            for channel in self.channels.values():
                flush = getattr(channel, "flush", None)
                if flush is not None:
                    flush()
            if self.offers is not None:  # the offers a batch issued are held before the batch is marked sent
                self.offers.flush()
        marks, self._marks = self._marks, []
        claim.commit(marks)

    def _one(self, entry: Entry, now: datetime, contexts: Callable[[str], CustomerContext],
             campaigns: Mapping[str, Campaign], paused: Collection[str], report: DeliveryReport) -> str:
        campaign = campaigns.get(entry.campaign)
        if campaign is None:
            return self._mark(entry, Verdict.ABORTED, now, f"campaign {entry.campaign!r} is not running")
        if entry.campaign in paused:
            return "held"
        waited = now - entry.decided_at
        if waited > timedelta(hours=campaign.max_delay_hours):
            return self._mark(entry, Verdict.ABORTED, now, f"waited {waited / timedelta(hours=1):.1f} h since the "
                              f"decision, more than max_delay_hours {campaign.max_delay_hours:g}")
        if not campaign.active(now):
            return self._mark(entry, Verdict.ABORTED, now, f"campaign {campaign.name} is not active at "
                              f"{now.isoformat()}")
        if self.gate is not None:
            reason = self.gate(entry, campaign, now)
            if reason:
                return self._mark(entry, Verdict.NO_CONSENT, now, reason)
        try:
            ctx = contexts(entry.customer_id)
            reminded = reminder_code(entry.occurrence)
            if reminded is None:
                offer = issue_offer(campaign, ctx, entry.key, now, entry.category)
            else:
                campaign, offer = self._reminder(campaign, reminded)
            extra = None if self.extra is None else self.extra(entry, campaign, now)
            message = self.renderer.render(campaign, ctx, offer, entry.candidate, now, extra)
        except (NudgeError, KeyError) as exc:  # RenderError, a bad zone, a customer without context
            report.problems.append(f"{entry.key}: {exc}")
            log.warning("delivery.render_error", key=entry.key, reason=str(exc))
            return self._mark(entry, Verdict.RENDER_ERROR, now, str(exc))
        channel = self.channels.get(entry.channel)
        if channel is None:
            return self._fail(entry, message, now, f"no channel {entry.channel!r} configured "
                              f"(configured: {sorted(self.channels)})", 0, report)
        attempts = 0

        def attempt() -> str:
            nonlocal attempts
            attempts += 1
            return channel.send(message)

        retrying = Retrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=wait_exponential(multiplier=self.retry.backoff_seconds, max=self.retry.backoff_max_seconds),
            retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.retryable),
            sleep=self.sleep, reraise=True)
        try:
            provider_id = retrying(attempt)
        except (DeliveryError, RetryError) as exc:
            report.retries += max(0, attempts - 1)
            return self._fail(entry, message, now, f"{exc} (after {attempts} attempt(s))", attempts, report)
        report.retries += attempts - 1
        if reminded is not None:  # the coupon was issued (and counted) with the first message
            return self._mark(entry, Verdict.SENT, now, "", offer_code=offer.code if offer else None,
                              provider_id=provider_id, attempts=attempts)
        if offer is not None and self.offers is not None:
            self.offers.issue(campaign, entry.customer_id, entry.key, offer, ctx.zone, now)
        face = offer.face_value if offer is not None else None
        if face:
            report.face_value[campaign.name] = report.face_value.get(campaign.name, 0.0) + face
        return self._mark(entry, Verdict.SENT, now, "", offer_code=offer.code if offer else None,
                          face_value=face, provider_id=provider_id, attempts=attempts)

    def _reminder(self, campaign: Campaign, code: str) -> tuple[Campaign, IssuedOffer]:
        held = self.offers.offers.get(code) if self.offers is not None else None
        if held is None:
            raise NudgeError(f"reminder for coupon {code}: the offer book holds no such coupon")
        return reminder_campaign(campaign, held), held.issued_offer()

    def _mark(self, entry: Entry, verdict: Verdict, now: datetime, detail: str, **fields) -> str:
        self._marks.append(Mark(entry.key, verdict, now, detail, **fields))
        return verdict.value

    def _fail(self, entry: Entry, message: Message, now: datetime, reason: str, attempts: int,
              report: DeliveryReport) -> str:
        # The dead letter first: a crash before the mark re-sends and then finds the letter already written.
        letter = DeadLetter(f"delivery:{entry.channel}", entry.id, entry.key, reason, message.to_dict(), now)
        with self.dead_letters.begin() as conn:
            conn.execute(insert_ignoring_duplicates(self.dead_letters, dead_letter), [letter.row()])
        report.problems.append(f"{entry.key}: {reason}")
        log.warning("delivery.failed", key=entry.key, channel=entry.channel, reason=reason)
        return self._mark(entry, Verdict.FAILED, now, reason, attempts=attempts)
