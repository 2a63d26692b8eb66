"""One clock for event time. Live it is the wall clock; in a replay it is the watermark."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the engine asks for "now"."""

    def now(self) -> datetime | None:
        """The current event time; None before anything has happened (a replay's start)."""
        ...

    def observe(self, event_time: datetime) -> None:
        """Tell the clock an event with this time was applied."""
        ...


class WallClock:
    """The live clock."""

    def now(self) -> datetime:
        """The wall-clock time, UTC."""
        return datetime.now(UTC)

    def observe(self, event_time: datetime) -> None:
        """Events do not move the wall clock."""


class WatermarkClock:
    """A replay's clock: the latest event time applied. It never moves back."""

    def __init__(self, start: datetime | None = None) -> None:
        self._watermark = start

    def now(self) -> datetime | None:
        """The watermark."""
        return self._watermark

    def observe(self, event_time: datetime) -> None:
        """Advance the watermark to `event_time` if it is later."""
        if self._watermark is None or event_time > self._watermark:
            self._watermark = event_time
