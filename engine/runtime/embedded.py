"""The embedded runtime: one process replays a source on event time into customer state.

The clock is the watermark. State, position and dead letters are checkpointed every N records,
so a killed replay started again resumes from its last checkpoint and ends in the same state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from engine.clock import WatermarkClock
from engine.config import Settings
from engine.db import connect
from engine.deadletters import DeadLetter
from engine.errors import DecodeError
from engine.pipeline import Ingest, Outcome
from engine.runtime.checkpoint import Checkpoint, CheckpointStore, Counters
from engine.sources import Source
from engine.state import CustomerState

log = structlog.get_logger("nudge.replay")


@dataclass
class ReplaySummary:
    """What one run of a replay did (`run`), and where the source stands (`total`)."""

    source: str
    run: Counters
    total: Counters
    customers: int
    resumed_from: int
    position: int
    seconds: float
    complete: bool
    watermark: object = None
    states: dict[str, CustomerState] = field(default_factory=dict, repr=False)

    @property
    def throughput(self) -> float:
        """Records per second in this run."""
        return self.run.records / self.seconds if self.seconds > 0 else 0.0


class EmbeddedRuntime:
    """Replays sources into the engine's database."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.engine = connect(self.settings.database_url)
        self.checkpoints = CheckpointStore(self.engine)

    def replay(
        self,
        source: Source,
        *,
        fresh: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> ReplaySummary:
        """Replay `source` from its checkpoint (or from the start with `fresh`) to its end."""
        settings = self.settings
        if fresh:
            self.checkpoints.reset(source.key)
        cp = self.checkpoints.load(source.key) or Checkpoint(source.key)
        states = self.checkpoints.load_states()
        profiles = self.checkpoints.load_profiles()
        clock = WatermarkClock(cp.watermark)
        every = settings.checkpoint_every
        ingest = Ingest(clock, settings.future_tolerance, settings.policy, states, profiles)
        run = Counters()
        dirty: set[str] = set()
        dirty_profiles: set[str] = set()
        letters: list[DeadLetter] = []
        resumed_from = cp.position
        position = cp.position
        if on_progress and position:
            on_progress(position)

        def save(complete: bool) -> None:
            self.checkpoints.save(
                Checkpoint(cp.source, position, clock.now(), cp.counters.plus(run), complete),
                (states[c] for c in dirty), (profiles[c] for c in dirty_profiles), letters,
            )
            dirty.clear()
            dirty_profiles.clear()
            letters.clear()

        log.info("replay.start", source=source.key, position=position, customers=len(states), fresh=fresh)
        started = time.perf_counter()
        since_checkpoint = 0
        if not cp.complete:
            for record in source.records(position):
                run.records += 1
                try:
                    event = source.decode(record)
                    outcome = ingest(event)
                    if outcome is Outcome.PROFILE:
                        dirty_profiles.add(event.customer_id)
                        run.profiles += 1
                    elif outcome is Outcome.DUPLICATE:
                        run.duplicates += 1
                    else:
                        dirty.add(event.customer_id)
                        run.purchases += 1
                        if outcome is Outcome.LATE:
                            run.late += 1
                except DecodeError as exc:
                    run.dead_letters += 1
                    letters.append(DeadLetter(source.key, record.position, record.where, str(exc), record.raw))
                position = record.position + 1
                since_checkpoint += 1
                if since_checkpoint >= every:
                    save(complete=False)
                    since_checkpoint = 0
                    log.info("replay.checkpoint", source=source.key, position=position)
                if on_progress and run.records % 2048 == 0:
                    on_progress(position)
            position = max(position, len(source))
            save(complete=True)
        seconds = time.perf_counter() - started
        if on_progress:
            on_progress(position)
        summary = ReplaySummary(source.key, run, cp.counters.plus(run), len(states), resumed_from, position,
                                seconds, True, clock.now(), states)
        log.info("replay.end", source=source.key, records=run.records, dead_letters=run.dead_letters,
                 late=run.late, seconds=round(seconds, 2))
        return summary
