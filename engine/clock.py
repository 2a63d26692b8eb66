"""Time: one clock for event time, one day number, one watermark rule.

Live, the clock is the wall clock; in a replay it is the watermark (the latest event time applied).
A day is the local date of a time in a zone, numbered from 1970-01-01: a customer's days are the local
dates of their purchases, and "days since" is counted in the customer's zone, whatever zone `now` carries.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.errors import ConfigError

EPOCH = date(1970, 1, 1).toordinal()


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


def zone_name(when: datetime) -> str:
    """The name of `when`'s zone: its IANA key, "UTC", or its fixed offset ("+09:00")."""
    key = getattr(when.tzinfo, "key", None)
    if key:
        return key
    offset = when.utcoffset()
    if offset is None:
        raise ConfigError(f"time {when.isoformat()} has no zone")
    if not offset:
        return "UTC"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


@lru_cache(maxsize=256)
def zone_info(name: str) -> tzinfo:
    """The tzinfo `zone_name` named: an IANA zone, UTC, or a fixed offset."""
    if name == "UTC":
        return UTC
    if name[:1] in "+-" and len(name) == 6 and name[3] == ":":
        sign = -1 if name[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(name[1:3]), minutes=int(name[4:6])))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"time zone: unknown zone {name!r}") from None


def day_number(when: datetime | date, zone: str | tzinfo | None = None) -> int:
    """Days since 1970-01-01 of `when`'s local date in `zone` (in `when`'s own offset when None; a date is its own).

    A naive datetime is taken as UTC when a zone is given.
    """
    if isinstance(when, datetime):
        if zone is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            when = when.astimezone(zone_info(zone) if isinstance(zone, str) else zone)
        when = when.date()
    return when.toordinal() - EPOCH


def day_start(day: int, zone: str | tzinfo = UTC) -> datetime:
    """Midnight in `zone` that opens day number `day`."""
    return datetime.fromordinal(day + EPOCH).replace(tzinfo=zone_info(zone) if isinstance(zone, str) else zone)


def watermark_after(last_event_time: datetime) -> datetime:
    """The watermark of data collected without one: midnight UTC after the last event's UTC day.

    Every day up to the last event's then counts as complete, and "days since" at the watermark is one
    for a purchase on the last day.
    """
    return day_start(day_number(last_event_time, UTC) + 1)
