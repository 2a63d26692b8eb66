"""Checkpoints: customer state, profiles, source position, watermark and counters, saved together.

A checkpoint is one transaction: the states changed since the last one, the dead letters found
since, the line-store part holding the purchases accepted since, and the position to resume from.
A crash loses only work after the last checkpoint, which the replay redoes; applying an event again
is a no-op, dead letters are unique by position, and an uncommitted part is discarded on resume.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, insert, select, update

from engine.db import (
    checkpoint,
    customer_profile,
    customer_state,
    dead_letter,
    feed_release,
    insert_ignoring_duplicates,
    line_part,
    partition_owner,
    store_meta,
    stream_feed,
    upsert,
)
from engine.deadletters import DeadLetter
from engine.errors import NudgeError
from engine.events import CustomerProfile
from engine.pipeline import Counters
from engine.state import STATE_SCHEMA, CustomerState
from engine.store.lines import LinePart
from engine.versions import check_schema, library_versions


@dataclass
class Checkpoint:
    """Where a source's replay stands."""

    source: str
    position: int = 0
    watermark: datetime | None = None
    counters: Counters = field(default_factory=Counters)
    complete: bool = False


class CheckpointStore:
    """Reads and writes checkpoints in the engine's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, source: str) -> Checkpoint | None:
        """The last checkpoint of `source`, if any."""
        with self.engine.connect() as conn:
            row = conn.execute(select(checkpoint).where(checkpoint.c.source == source)).first()
        return None if row is None else _checkpoint(row)

    def load_all(self) -> list[Checkpoint]:
        """The checkpoint of every source, by source key."""
        with self.engine.connect() as conn:
            return [_checkpoint(row) for row in conn.execute(select(checkpoint).order_by(checkpoint.c.source))]

    def customers(self) -> int:
        """How many customers have a state."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(customer_state)).scalar_one()

    def watermark(self) -> datetime | None:
        """The latest watermark over all sources: the replay clock's "now"."""
        with self.engine.connect() as conn:
            marks = [r.watermark for r in conn.execute(select(checkpoint.c.watermark)) if r.watermark]
        return max(marks) if marks else None

    def load_states(self) -> dict[str, CustomerState]:
        """Every customer's state (older schemas migrated; a newer one refused, naming both versions)."""
        with self.engine.connect() as conn:
            self._check_state_schema(conn)
            return {r.customer_id: pickle.loads(r.state) for r in conn.execute(select(customer_state))}

    def load_state(self, customer_id: str) -> CustomerState | None:
        """One customer's state, if they have one (schemas as `load_states`)."""
        with self.engine.connect() as conn:
            self._check_state_schema(conn)
            row = conn.execute(select(customer_state.c.state)
                               .where(customer_state.c.customer_id == customer_id)).first()
        return None if row is None else pickle.loads(row.state)

    def _check_state_schema(self, conn) -> None:
        meta = {r.key: r.value for r in conn.execute(select(store_meta))}
        # A database without the record was written before states had schemas: schema 1.
        check_schema(f"the customer states in {self.engine.url!r}", int(meta.get("state_schema", 1)),
                     STATE_SCHEMA, json.loads(meta.get("libraries", "{}")))

    def load_profiles(self) -> dict[str, CustomerProfile]:
        """Every customer's profile."""
        with self.engine.connect() as conn:
            return {
                r.customer_id: CustomerProfile.model_validate_json(r.profile)
                for r in conn.execute(select(customer_profile))
            }

    def save(
        self,
        cp: Checkpoint,
        states: Iterable[CustomerState],
        profiles: Iterable[CustomerProfile],
        dead_letters: Iterable[DeadLetter],
        part: LinePart | None = None,
        runner: dict | None = None,
        feed: Sequence[dict] = (),
        epoch: int | None = None,
    ) -> None:
        """Write the changed states and profiles, new dead letters, the new line part and the position, atomically.

        `runner` is what a runtime around the replay keeps with the position (the campaign scheduler's last fires,
        the model versions serving): JSON, read back by `load_runner`. `feed` holds a Kafka worker's accepted events
        (`stream_feed` rows), kept with the offset that follows them; with `epoch` (a worker's `claim` on the
        source) nothing is written unless the claim still stands (`Fenced`).
        """
        now = datetime.now(UTC)
        state_rows = [{"customer_id": s.customer_id, "state": pickle.dumps(s, protocol=5)} for s in states]
        profile_rows = [{"customer_id": p.customer_id, "profile": p.model_dump_json()} for p in profiles]
        letter_rows = [{**d.row(), "recorded_at": d.recorded_at or now} for d in dead_letters]
        with self.engine.begin() as conn:
            if epoch is not None:  # first: on PostgreSQL the row stays locked, so no claim passes this save
                o = partition_owner.c
                held = conn.execute(update(partition_owner).where(o.source == cp.source, o.epoch == epoch)
                                    .values(epoch=epoch)).rowcount
                if held != 1:
                    raise Fenced(f"{cp.source}: another worker has taken it since this one did (claim {epoch}); "
                                 "its batch was not saved")
            if state_rows:
                conn.execute(upsert(self.engine, customer_state, "customer_id"), state_rows)
            if profile_rows:
                conn.execute(upsert(self.engine, customer_profile, "customer_id"), profile_rows)
            if letter_rows:
                conn.execute(insert_ignoring_duplicates(self.engine, dead_letter), letter_rows)
            meta = [
                {"key": "state_schema", "value": str(STATE_SCHEMA)},
                {"key": "libraries", "value": json.dumps(library_versions())},
            ]
            if runner is not None:
                meta.append({"key": _runner_key(cp.source), "value": json.dumps(runner, sort_keys=True)})
            conn.execute(upsert(self.engine, store_meta, "key"), meta)
            if part is not None:
                conn.execute(insert(line_part), [part.row(now)])
            if feed:
                conn.execute(insert_ignoring_duplicates(self.engine, stream_feed), list(feed))
            conn.execute(upsert(self.engine, checkpoint, "source"), [{
                "source": cp.source, "position": cp.position, "watermark": cp.watermark,
                "counters": json.dumps(asdict(cp.counters)), "complete": cp.complete, "updated_at": now,
            }])

    def claim(self, source: str) -> int:
        """Take `source` (a Kafka partition) for this process: a new claim, which every earlier one's saves now fail."""
        o = partition_owner.c
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_duplicates(self.engine, partition_owner), [{"source": source, "epoch": 0}])
            conn.execute(update(partition_owner).where(o.source == source).values(epoch=o.epoch + 1))
            return conn.execute(select(o.epoch).where(o.source == source)).scalar_one()

    def load_runner(self, source: str) -> dict | None:
        """What the runtime around `source`'s replay saved with its last checkpoint (see `save`), if anything."""
        with self.engine.connect() as conn:
            row = conn.execute(select(store_meta.c.value).where(store_meta.c.key == _runner_key(source))).first()
        return None if row is None else json.loads(row.value)

    def reset(self, source: str) -> None:
        """Forget all state, profiles, checkpoints and stored lines, and this source's dead letters (a fresh replay).

        The line parts' files go with `LineStore.discard_uncommitted`, once this has committed.
        """
        with self.engine.begin() as conn:
            conn.execute(delete(line_part))  # the lines of every source: they made the states cleared here
            conn.execute(delete(customer_state))
            conn.execute(delete(customer_profile))
            conn.execute(delete(checkpoint))  # every position assumed the state just cleared
            conn.execute(delete(stream_feed))  # a worker's accepted events, and what a scheduler took of them
            conn.execute(delete(feed_release))
            conn.execute(delete(dead_letter).where(dead_letter.c.source == source))
            conn.execute(delete(store_meta).where(store_meta.c.key.like("runner:%")))


class Fenced(NudgeError):
    """A save under a claim another process has replaced: the partition is someone else's now."""


def _runner_key(source: str) -> str:
    return f"runner:{source}"


def _checkpoint(row) -> Checkpoint:
    return Checkpoint(row.source, row.position, row.watermark, Counters(**json.loads(row.counters)), row.complete)
