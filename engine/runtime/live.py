"""`nudge scheduler`: the campaign jobs of the live path — refits, due sweeps, arbitration, the ledger, delivery.

One process for the whole stream (the budgets and the arbitration between campaigns are global), beside any
number of workers. It reads the workers' work as `engine.runtime.feed` explains: their accepted events, replayed
into a state replica of its own (`<home>/scheduler`) by the embedded runtime with the campaign runtime as its
observer, so each job sees the state as of its fire time. The refits read the workers' line store; the ledger,
consent, offers and scores are the shared database's (PostgreSQL when several processes run). Every message
sent is published on the messages topic too, keyed by its idempotency key.

`--clock event` runs the jobs on the stream's clock (a replay through Kafka is the embedded backtest, message for
message); `--clock wall` runs them on the wall clock, live.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import structlog

from engine.clock import WallClock
from engine.config import Settings
from engine.db import connect
from engine.live.messages import MessagesTopic, published
from engine.runtime.campaigns import CampaignRuntime, backtest_channels, open_campaigns, reset_campaigns
from engine.runtime.embedded import EmbeddedRuntime, ReplaySummary
from engine.runtime.feed import StreamFeed, TopicEnds, progress

log = structlog.get_logger("nudge.scheduler")

REPLICA = "scheduler"  # the replica's home, under the engine's


@dataclass(frozen=True)
class SchedulerOptions:
    """What the scheduler reads and how it runs."""

    bootstrap: str
    topic: str = "purchases"
    messages_topic: str = "messages"
    clock: Literal["event", "wall"] = "wall"
    drain: bool = False  # stop once the workers have read the whole topic and the jobs have caught up
    start: datetime | None = None  # campaigns run from here; events before only build state
    end: datetime | None = None  # no job runs from here
    campaigns_dir: Path | None = None
    fresh: bool = False  # forget the replica, the ledger and the scores first
    poll_seconds: float = 0.5


def replica_settings(settings: Settings) -> Settings:
    """The replica's settings: its own home and SQLite database; the models stay the engine's."""
    return settings.model_copy(update={"home": settings.home / REPLICA, "db_url": None})


def run_scheduler(settings: Settings, options: SchedulerOptions, *, stop: threading.Event | None = None,
                  on_release: Callable[[int], None] | None = None,
                  before_start: Callable[[object], None] | None = None) -> tuple[CampaignRuntime, ReplaySummary]:
    """Run until `stop` is set (SIGTERM or Ctrl-C from the CLI), or, with `drain`, until the stream is read.

    `before_start` gets the shared engine first (a consent import); `on_release` the count of each release.
    """
    stop = stop or threading.Event()
    shared = connect(settings.database_url)
    replica = EmbeddedRuntime(replica_settings(settings))
    key = StreamFeed.key_of(options.topic)
    if options.fresh:
        reset_campaigns(settings, shared)
        replica.checkpoints.reset(key)  # the replica's state, positions and releases: before the feed reads them
    if before_start is not None:
        before_start(shared)
    feed = StreamFeed(shared, replica.engine, options.topic)
    messages = MessagesTopic(options.bootstrap, options.messages_topic)
    ends = TopicEnds(options.bootstrap, options.topic)
    clock = WallClock() if options.clock == "wall" else None
    campaigns = open_campaigns(settings, shared, start=options.start, end=options.end,
                               directory=options.campaigns_dir, clock=clock,
                               channels=published(backtest_channels(settings, shared), messages))

    def idle() -> bool:
        if clock is not None:
            campaigns.advance(clock.now())
        if stop.wait(options.poll_seconds):
            return False
        seen = progress(shared, options.topic, ends())
        new = feed.release(seen.watermark, everything=seen.caught_up)
        if new and on_release is not None:
            on_release(new)
        # The rows released before this call were all read before it was made: nothing new on a read topic is
        # the end of a drained run.
        return not (options.drain and seen.caught_up and not new)

    log.info("scheduler.start", topic=options.topic, clock=options.clock, drain=options.drain,
             released=len(feed))
    try:
        summary = replica.replay(feed, observer=campaigns, idle=idle)
        messages.flush()
    finally:
        messages.close()
        ends.close()
    return campaigns, summary


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the scheduler stops after its current checkpoint."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop
