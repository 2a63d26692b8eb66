"""What happens to one decoded event, whichever runtime carries it: pure, no I/O.

Runtimes (and the benchmark) feed decoded events to `Ingest`, which calls `process`; no business logic
lives in a runtime.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from engine.clock import Clock
from engine.errors import ConflictingDuplicate, FutureDated
from engine.events import CustomerProfile, Event, Purchase
from engine.state import CustomerState, StatePolicy, apply


class Outcome(Enum):
    """What `process` did with a purchase."""

    APPLIED = "applied"
    LATE = "late"  # older than the clock: applied all the same (state does not depend on order)
    DUPLICATE = "duplicate"  # identical to one already applied: a counted no-op
    PROFILE = "profile"  # a customer's attributes, kept as the latest profile


def process(
    state: CustomerState | None,
    purchase: Purchase,
    now: datetime | None,
    tolerance: timedelta,
    policy: StatePolicy,
) -> tuple[CustomerState | None, Outcome]:
    """Check a purchase against the clock and the state, then apply it.

    Raises `FutureDated` for an event beyond `now + tolerance` (one bad timestamp must not move
    the clock) and `ConflictingDuplicate` for a known event id with other content.
    """
    when = purchase.event_time
    if now is not None and when > now + tolerance:
        raise FutureDated(
            f"future-dated: event {purchase.event_id} at {when.isoformat()} is more than "
            f"{tolerance.days} days past the clock ({now.isoformat()})"
        )
    applied_before = state.events if state is not None else 0
    try:
        state = apply(state, purchase, policy)
    except ConflictingDuplicate as exc:
        raise ConflictingDuplicate(f"conflicting duplicate: {exc}") from None
    if state.events == applied_before:  # apply left it as it was: an identical replay
        return state, Outcome.DUPLICATE
    return state, Outcome.LATE if now is not None and when < now else Outcome.APPLIED


class Ingest:
    """Decoded events into customer states and profiles, moving the clock: the per-event step of a runtime.

    Holds no I/O: the caller persists what changed and counts outcomes.
    """

    def __init__(self, clock: Clock, tolerance: timedelta, policy: StatePolicy,
                 states: dict[str, CustomerState] | None = None,
                 profiles: dict[str, CustomerProfile] | None = None) -> None:
        self.clock, self.tolerance, self.policy = clock, tolerance, policy
        self.states = {} if states is None else states
        self.profiles = {} if profiles is None else profiles

    def __call__(self, event: Event) -> Outcome:
        """Apply a purchase (see `process`; raises its errors) or keep a profile; say which."""
        if isinstance(event, CustomerProfile):
            self.profiles[event.customer_id] = event
            return Outcome.PROFILE
        cid = event.customer_id
        state, outcome = process(self.states.get(cid), event, self.clock.now(), self.tolerance, self.policy)
        if outcome is not Outcome.DUPLICATE:
            self.states[cid] = state
            self.clock.observe(event.event_time)
        return outcome
