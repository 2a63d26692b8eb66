"""The embedded runtime: one process replays a source on event time into customer state.

Wiring only: read records, call the core's `Step` on each, persist. The clock is the watermark.
State, position, dead letters and the purchases accepted since (a line-store part) are checkpointed
every N records, so a killed replay started again resumes from its last checkpoint and ends in the
same state with the same stored lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from engine.clock import WatermarkClock
from engine.config import Settings
from engine.db import connect
from engine.deadletters import DeadLetter
from engine.events import CustomerProfile, Event, OfferResponse, Purchase
from engine.pipeline import ACCEPTED, Counters, Ingest, Outcome, Step
from engine.sources import ReplayableSource
from engine.state import CustomerState
from engine.store.checkpoints import Checkpoint, CheckpointStore
from engine.store.lines import LineStore, PendingLines

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


class ReplayObserver(Protocol):
    """What runs beside a replay on its clock (the campaign runtime): told of each event before and after it is
    applied, it may ask for a checkpoint, and what it returns from `saved` is kept with every checkpoint."""

    def begin(self, saved: dict | None, states: dict[str, CustomerState],
              profiles: dict[str, CustomerProfile], checkpoint: Callable[[], None]) -> None:
        """The replay starts (or resumes, with what the last checkpoint kept); `checkpoint()` saves one now."""

    def before(self, event: Event) -> None:
        """`event` is decoded and about to be applied."""

    def applied(self, event: Purchase, outcome: Outcome, state: CustomerState) -> None:
        """`event` changed `state` (APPLIED or LATE)."""

    def responded(self, event: OfferResponse) -> None:
        """A customer answered an offer (`Outcome.RESPONSE`)."""

    def saved(self) -> dict:
        """What to keep with the checkpoint being written (JSON)."""


class EmbeddedRuntime:
    """Replays sources into the engine's database and line store."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.engine = connect(self.settings.database_url)
        self.checkpoints = CheckpointStore(self.engine)
        self.lines = LineStore(self.settings.lines_dir, self.engine)

    def replay(
        self,
        source: ReplayableSource,
        *,
        fresh: bool = False,
        on_progress: Callable[[int], None] | None = None,
        observer: ReplayObserver | None = None,
        idle: Callable[[], bool] | None = None,
    ) -> ReplaySummary:
        """Replay `source` from its checkpoint (or from the start with `fresh`) to its end, with `observer` (the
        campaign runtime) beside it on the replay's clock.

        With `idle` the source is followed: at its end `idle()` is called (it waits, and runs what the wall
        clock has made due) and reading goes on from where it stopped, until `idle()` returns False.
        """
        settings = self.settings
        if fresh:
            self.checkpoints.reset(source.key)
        self.lines.discard_uncommitted()  # parts written after the last checkpoint: this run redoes them
        cp = self.checkpoints.load(source.key) or Checkpoint(source.key)
        states = self.checkpoints.load_states()
        profiles = self.checkpoints.load_profiles()
        clock = WatermarkClock(cp.watermark)
        step = Step(source.key, source.decoder,
                    Ingest(clock, settings.future_tolerance, settings.policy, states, profiles),
                    before=None if observer is None else observer.before)
        run = step.counters
        every = settings.checkpoint_every
        dirty: set[str] = set()
        dirty_profiles: set[str] = set()
        letters: list[DeadLetter] = []
        accepted = PendingLines()
        seq = self.lines.next_seq()
        resumed_from = cp.position
        position = cp.position
        if on_progress and position:
            on_progress(position)

        def save(complete: bool) -> None:
            nonlocal seq
            part = self.lines.write(seq, source.key, accepted.take())
            now = clock.now()
            self.checkpoints.save(
                Checkpoint(cp.source, position, now, cp.counters.plus(run), complete),
                (states[c] for c in dirty), (profiles[c] for c in dirty_profiles), letters, part,
                None if observer is None else observer.saved(),
            )
            if part is not None:
                seq += 1
            if now is not None:
                self.lines.drop_before(now - settings.line_retention)
            dirty.clear()
            dirty_profiles.clear()
            letters.clear()

        log.info("replay.start", source=source.key, position=position, customers=len(states), fresh=fresh)
        started = time.perf_counter()
        since_checkpoint = 0

        def checkpoint_now() -> None:
            nonlocal since_checkpoint
            save(complete=False)
            since_checkpoint = 0

        if observer is not None:
            observer.begin(self.checkpoints.load_runner(source.key), states, profiles, checkpoint_now)
        # A complete checkpoint of a source that has grown since (a JSON Lines file appended to) reads on.
        if not cp.complete or position < len(source) or idle is not None:
            while True:
                for record in source.records(position):
                    result = step(record.raw, record.where, record.position)
                    if isinstance(result, DeadLetter):
                        letters.append(result)
                    else:
                        event, outcome = result
                        if outcome in ACCEPTED:
                            dirty.add(event.customer_id)
                            accepted.add(event)
                            if observer is not None:
                                observer.applied(event, outcome, states[event.customer_id])
                        elif outcome is Outcome.PROFILE:
                            dirty_profiles.add(event.customer_id)
                        elif outcome is Outcome.RESPONSE and observer is not None:
                            observer.responded(event)
                    position = record.position + 1
                    since_checkpoint += 1
                    if since_checkpoint >= every:
                        save(complete=False)
                        since_checkpoint = 0
                        log.info("replay.checkpoint", source=source.key, position=position)
                    if on_progress and run.records % 2048 == 0:
                        on_progress(position)
                if idle is None:
                    break
                if since_checkpoint:  # following: what arrived is saved before waiting for more
                    save(complete=False)
                    since_checkpoint = 0
                if not idle():
                    break
            position = max(position, len(source))
            save(complete=idle is None)
        seconds = time.perf_counter() - started
        if on_progress:
            on_progress(position)
        summary = ReplaySummary(source.key, run, cp.counters.plus(run), len(states), resumed_from, position,
                                seconds, True, clock.now(), states)
        log.info("replay.end", source=source.key, records=run.records, dead_letters=run.dead_letters,
                 late=run.late, seconds=round(seconds, 2))
        return summary
