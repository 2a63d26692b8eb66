"""What happens to one decoded event, whichever runtime carries it: pure, no I/O.

Both the embedded runtime and the stream runtime call `process`; no business logic lives in a runtime.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from engine.errors import ConflictingDuplicate, FutureDated
from engine.events import Purchase
from engine.state import CustomerState, StatePolicy, apply


class Outcome(Enum):
    """What `process` did with a purchase."""

    APPLIED = "applied"
    LATE = "late"  # older than the clock: applied all the same (state does not depend on order)
    DUPLICATE = "duplicate"  # identical to one already applied: a counted no-op


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
