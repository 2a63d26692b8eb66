"""Dead letters: records that could not become events, kept with the reason. Nothing is dropped."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from engine.db import dead_letter


@dataclass(frozen=True)
class DeadLetter:
    """One rejected record: where it came from, why, and the record as read."""

    source: str
    position: int
    where: str
    reason: str
    raw: Any
    recorded_at: datetime | None = None

    def row(self) -> dict[str, Any]:
        """The row for the `dead_letter` table."""
        raw = self.raw if isinstance(self.raw, str) else json.dumps(self.raw, default=str, ensure_ascii=False)
        return {"source": self.source, "position": self.position, "where": self.where, "reason": self.reason,
                "raw": raw, "recorded_at": self.recorded_at}


def list_dead_letters(engine: Engine, source: str | None = None, limit: int | None = None) -> list[DeadLetter]:
    """Dead letters in the order they were recorded, optionally of one source."""
    query = select(dead_letter).order_by(dead_letter.c.id)
    if source:
        query = query.where(dead_letter.c.source == source)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [
            DeadLetter(r.source, r.position, r.where, r.reason, r.raw, r.recorded_at)
            for r in conn.execute(query)
        ]
