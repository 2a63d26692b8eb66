"""The boundary between outside data and the engine: a decoder, and a replayable source that carries one.

A `Decoder` turns one raw record into an event: what a Kafka consumer calls on each message. A
`ReplayableSource` adds what a replay needs: its records in replay order, each with its position (its
place in that order, so a checkpoint can resume there), and the decoder for them.
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


class Decoder(Protocol):
    """Raw record -> event."""

    def decode(self, raw: Any, where: str) -> Event:
        """The event `raw` holds, or `DecodeError` naming what is wrong and `where`."""
        ...


class ReplayableSource(Protocol):
    """Ordered records with positions, and their decoder: what the embedded runtime and `collect` read."""

    key: str  # names the source in checkpoints and dead letters
    decoder: Decoder

    def __len__(self) -> int:
        """Records in the source (for progress bars)."""
        ...

    def records(self, start: int = 0) -> Iterator[Record]:
        """Records from position `start` on, in replay order."""
        ...


Source = ReplayableSource  # the name the refit and the CLI use for any replayable source
