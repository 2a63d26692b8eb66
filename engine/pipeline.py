"""What happens to one record, whichever runtime carries it: pure, no I/O.

`Step` is the whole per-record path: decode a raw record, `process` the event through `Ingest`, count the
outcome, or make a dead letter. The embedded runtime and a Kafka consumer call the same `Step` on each
record and differ only in where records come from and how what changed is persisted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from engine.clock import Clock, WatermarkClock
from engine.deadletters import DeadLetter
from engine.errors import ConflictingDuplicate, DecodeError, FutureDated
from engine.events import CustomerProfile, Event, OfferResponse, Purchase
from engine.sources import Decoder
from engine.state import CustomerState, StatePolicy, apply

DEFAULT_FUTURE_TOLERANCE = timedelta(days=30)  # how far past the clock an event may be dated (see `process`)


class Outcome(Enum):
    """What `process` did with a purchase."""

    APPLIED = "applied"
    LATE = "late"  # older than the clock: applied all the same (state does not depend on order)
    DUPLICATE = "duplicate"  # identical to one already applied: a counted no-op
    PROFILE = "profile"  # a customer's attributes, kept as the latest profile
    RESPONSE = "response"  # a customer's answer to an offer: for the offer book, no state changes


def future_dated(when: datetime, now: datetime | None, tolerance: timedelta) -> bool:
    """Whether an event at `when` lies beyond the tolerance past the clock's `now` (the dead-letter rule)."""
    return now is not None and when > now + tolerance


def process(
    state: CustomerState | None,
    purchase: Purchase,
    now: datetime | None,
    tolerance: timedelta,
    policy: StatePolicy,
    horizon: datetime | None = None,
) -> tuple[CustomerState | None, Outcome]:
    """Check a purchase against the clock and the state, then apply it.

    Raises `FutureDated` for an event beyond `horizon + tolerance` (`horizon` defaults to `now`; one bad
    timestamp must not move the clock) and `ConflictingDuplicate` for a known event id with other content.
    """
    when = purchase.event_time
    horizon = now if horizon is None else horizon
    if future_dated(when, horizon, tolerance):
        raise FutureDated(
            f"future-dated: event {purchase.event_id} at {when.isoformat()} is more than "
            f"{tolerance.days} days past the clock ({horizon.isoformat()})"
        )
    applied_before = state.events if state is not None else 0
    try:
        state = apply(state, purchase, policy)
    except ConflictingDuplicate as exc:
        raise ConflictingDuplicate(f"conflicting duplicate: {exc}") from None
    if state.events == applied_before:  # apply left it as it was: an identical replay
        return state, Outcome.DUPLICATE
    return state, Outcome.LATE if now is not None and when < now else Outcome.APPLIED


ACCEPTED = frozenset({Outcome.APPLIED, Outcome.LATE})  # purchases the state took: what the line store keeps


@dataclass
class Counters:
    """What a replay has seen; cumulative in a checkpoint, per run in a summary."""

    records: int = 0
    purchases: int = 0  # applied, late ones included
    profiles: int = 0
    late: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    responses: int = 0

    def plus(self, other: Counters) -> Counters:
        """The sum of two counters."""
        return Counters(**{k: v + getattr(other, k) for k, v in asdict(self).items()})

    def count(self, outcome: Outcome | None) -> None:
        """Count one record by what became of it (None: a dead letter)."""
        self.records += 1
        if outcome is None:
            self.dead_letters += 1
        elif outcome is Outcome.PROFILE:
            self.profiles += 1
        elif outcome is Outcome.RESPONSE:
            self.responses += 1
        elif outcome is Outcome.DUPLICATE:
            self.duplicates += 1
        else:
            self.purchases += 1
            if outcome is Outcome.LATE:
                self.late += 1


class Ingest:
    """Decoded events into customer states and profiles, moving the clock: the per-event step of a runtime.

    Holds no I/O: the caller persists what changed and counts outcomes.
    """

    def __init__(self, clock: Clock | None, tolerance: timedelta, policy: StatePolicy,
                 states: dict[str, CustomerState] | None = None,
                 profiles: dict[str, CustomerProfile] | None = None, horizon: Clock | None = None) -> None:
        # No clock: a replay's, the watermark of the events applied, from nothing.
        self.clock = WatermarkClock() if clock is None else clock
        # What the future-dated rule measures against, when not the clock (a Kafka worker's: see its runtime).
        self.horizon = horizon
        self.tolerance, self.policy = tolerance, policy
        self.states = {} if states is None else states
        self.profiles = {} if profiles is None else profiles

    def __call__(self, event: Event) -> Outcome:
        """Apply a purchase (see `process`; raises its errors) or keep a profile; say which."""
        if isinstance(event, CustomerProfile):
            self.profiles[event.customer_id] = event
            return Outcome.PROFILE
        if isinstance(event, OfferResponse):
            return Outcome.RESPONSE
        cid = event.customer_id
        horizon = None if self.horizon is None else self.horizon.now()
        state, outcome = process(self.states.get(cid), event, self.clock.now(), self.tolerance, self.policy, horizon)
        if outcome is not Outcome.DUPLICATE:
            self.states[cid] = state
            self.clock.observe(event.event_time)
        return outcome


class Step:
    """One raw record of a source through decode, `process` and the counters: what every runtime calls per record.

    Returns the event and its outcome, or the record's `DeadLetter`; the caller persists what changed.
    """

    def __init__(self, source: str, decoder: Decoder, ingest: Ingest, counters: Counters | None = None,
                 before: Callable[[Event], None] | None = None) -> None:
        self.source, self.decoder, self.ingest = source, decoder, ingest
        self.counters = Counters() if counters is None else counters
        # Called with each decoded event before it is applied: a campaign runtime moves its clock there, so jobs
        # due before the event see the state without it.
        self.before = before

    def __call__(self, raw: Any, where: str, position: int) -> tuple[Event, Outcome] | DeadLetter:
        """Decode and ingest one record found at `position` (`where` names it for people)."""
        try:
            event = self.decoder.decode(raw, where)
            if self.before is not None:
                self.before(event)
            outcome = self.ingest(event)
        except DecodeError as exc:
            self.counters.count(None)
            return DeadLetter(self.source, position, where, str(exc), raw)
        self.counters.count(outcome)
        return event, outcome
