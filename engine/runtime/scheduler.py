"""Jobs on event time: APScheduler's triggers say when (cron, interval), the event-time clock says now.

APScheduler's own loop reads the wall clock, so in a replay it cannot drive jobs; only its triggers' time
arithmetic is used here. `advance(now)` yields each fire time passed since the last call; one older than its
job's grace is reported missed and not run, so a restored checkpoint never runs an overdue job late.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from engine.campaigns.triggers import fire_times
from engine.clock import Clock, zone_info
from engine.config import Settings
from engine.errors import ConfigError, NudgeError
from engine.versions import check_schema

log = structlog.get_logger("nudge.scheduler")

SCHEDULER_SCHEMA = 1


@dataclass(frozen=True)
class Job:
    """A named job, when it fires, and how late a fire may still run."""

    name: str
    trigger: BaseTrigger
    misfire_grace: timedelta

    @classmethod
    def cron(cls, name: str, expr: str, zone: str, misfire_grace: timedelta) -> Job:
        """A job on a crontab expression (APScheduler's: day of week 0 is Monday) in `zone`."""
        try:
            trigger = CronTrigger.from_crontab(expr, timezone=zone_info(zone))
        except ValueError as exc:
            raise ConfigError(f"job {name}: cron {expr!r} is not a crontab expression: {exc}") from None
        return cls(name, trigger, misfire_grace)

    @classmethod
    def every(cls, name: str, interval: timedelta, start: datetime, misfire_grace: timedelta) -> Job:
        """A job every `interval` from `start` (an event time: without one APScheduler anchors at the wall clock)."""
        if start.tzinfo is None:
            raise NudgeError(f"job {name}: start {start.isoformat()} has no zone")
        return cls(name, IntervalTrigger(seconds=interval.total_seconds(), start_date=start,
                                         timezone=start.tzinfo), misfire_grace)


@dataclass(frozen=True)
class Fire:
    """One fire time of a job; a missed one (older than the job's grace when seen) is not to be run."""

    job: str
    at: datetime
    missed: bool = False


class EventTimeScheduler:
    """Fire times of `jobs` as event time advances; fire times are reported in `zone`.

    Each job keeps a cursor: the time up to which its fires were reported. Before the first `advance` (and
    without `start` or a restored state) there is none, and the first `advance` only sets it.
    """

    def __init__(self, jobs: Iterable[Job], zone: str = "UTC", start: datetime | None = None) -> None:
        self.jobs = list(jobs)
        names = [j.name for j in self.jobs]
        if len(set(names)) != len(names):
            raise NudgeError(f"scheduler: job names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        for job in self.jobs:
            if getattr(job.trigger, "jitter", None):
                raise NudgeError(f"scheduler: job {job.name} has jitter; event-time fires must be fixed")
        self.zone = zone_info(zone)
        self._cursor: dict[str, datetime | None] = {n: _aware(start, "start") for n in names}

    def advance(self, now: datetime) -> list[Fire]:
        """Every job's fire times in (cursor, now], ordered by time then job order; cursors move to `now`."""
        now = _aware(now, "now")
        fires: list[tuple[datetime, int, Fire]] = []
        for order, job in enumerate(self.jobs):
            cursor = self._cursor[job.name]
            if cursor is not None and now <= cursor:
                continue  # event time does not move back; nothing new
            if cursor is not None:
                for at in fire_times(job.trigger, cursor, now):
                    fires.append((at, order, Fire(job.name, at.astimezone(self.zone),
                                                  missed=now - at > job.misfire_grace)))
            self._cursor[job.name] = now
        fires.sort(key=lambda f: (f[0], f[1]))
        return [f for _, _, f in fires]

    def next_fire(self) -> datetime | None:
        """The earliest fire time after the cursors (None when no job will fire again or none has a cursor)."""
        found = []
        for job in self.jobs:
            cursor = self._cursor[job.name]
            if cursor is not None:
                nxt = next(fire_times(job.trigger, cursor, datetime.max.replace(tzinfo=UTC)), None)
                if nxt is not None:
                    found.append(nxt)
        return min(found, default=None)

    def state(self) -> dict[str, Any]:
        """The cursors, JSON-able, for a checkpoint."""
        return {"schema": SCHEDULER_SCHEMA,
                "jobs": {n: None if c is None else c.astimezone(UTC).isoformat() for n, c in self._cursor.items()}}

    def restore(self, state: dict[str, Any]) -> None:
        """Resume from `state()`: fires already reported are not reported again. Jobs it lacks keep their cursor."""
        check_schema("scheduler state", state.get("schema", SCHEDULER_SCHEMA), SCHEDULER_SCHEMA)
        for name, cursor in state.get("jobs", {}).items():
            if name in self._cursor and cursor is not None:
                self._cursor[name] = datetime.fromisoformat(cursor)

    def run_live(self, clock: Clock, callback: Callable[[Fire], None], stop: threading.Event,
                 poll: float = 1.0) -> int:
        """Run on `clock` (the wall clock, live) until `stop` is set: call `callback` for each fire on time,
        log the missed ones; returns the fires run. A callback's exception ends the loop."""
        ran = 0
        while not stop.is_set():
            now = clock.now()
            if now is not None:
                for fire in self.advance(now):
                    if fire.missed:
                        log.warning("fire_missed", job=fire.job, at=fire.at.isoformat(), now=now.isoformat())
                        continue
                    callback(fire)
                    ran += 1
            wait = poll
            nxt = self.next_fire()
            now = clock.now()
            if nxt is not None and now is not None:
                wait = min(poll, max(0.0, (nxt - now).total_seconds()))
            stop.wait(wait)
        return ran


def _aware(when: datetime | None, what: str) -> datetime | None:
    if when is not None and when.tzinfo is None:
        raise NudgeError(f"scheduler: {what} {when.isoformat()} has no zone")
    return when


def engine_jobs(settings: Settings) -> list[Job]:
    """The model refit, the due sweep and delivery as the settings schedule them (a refit due with a sweep runs
    first, a sweep before the delivery at the same time)."""
    grace = timedelta(hours=settings.job_grace_hours)
    return [Job.cron("refit", settings.refit_cron, settings.jobs_zone, grace),
            Job.cron("sweep", settings.sweep_cron, settings.jobs_zone, grace),
            Job.cron("deliver", settings.deliver_cron, settings.jobs_zone, grace)]
