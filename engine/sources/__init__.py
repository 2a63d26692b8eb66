"""Sources turn outside data into ordered records; `decode` turns one record into an event.

A record's position is its place in the source's replay order, so a checkpoint can resume there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

from engine.events import Event


class Record(NamedTuple):
    """One raw record as read, before validation (a named tuple: one is made per event)."""

    position: int
    raw: Any  # JSON-able; stored verbatim in a dead letter
    where: str  # human place, e.g. "transactions.parquet basket 31198570044" or "events.jsonl line 7"


class Source(Protocol):
    """What the runtimes need from any source."""

    key: str  # names the source in checkpoints and dead letters

    def __len__(self) -> int:
        """Records in the source (for progress bars)."""
        ...

    def records(self, start: int = 0) -> Iterator[Record]:
        """Records from position `start` on, in replay order."""
        ...

    def decode(self, record: Record) -> Event:
        """The event a record holds, or `DecodeError` naming what is wrong and where."""
        ...
