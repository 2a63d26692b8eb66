"""The event-time scheduler: fires from APScheduler's triggers, any chunking alike, restores without refiring,
overdue fires skipped (listmonk #1801), and a live loop on the wall clock."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.triggers.cron import CronTrigger
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import WallClock
from engine.config import Settings
from engine.errors import ConfigError, NudgeError
from engine.runtime.scheduler import EventTimeScheduler, Fire, Job, engine_jobs

T0 = datetime(2017, 1, 1, tzinfo=UTC)
T1 = T0 + timedelta(days=10)


def jobs(grace: timedelta = timedelta(hours=2)) -> list[Job]:
    return [
        Job.cron("sweep", "0 6 * * *", "America/Chicago", grace),  # 12:00 UTC daily
        Job.every("refit", timedelta(days=3), T0 + timedelta(hours=1), grace),
        Job.cron("report", "30 8 * * mon", "Asia/Seoul", grace),  # Sunday 23:30 UTC
    ]


def test_fires_in_order_in_the_schedulers_zone() -> None:
    s = EventTimeScheduler(jobs(), zone="Asia/Seoul", start=T0)
    fires = s.advance(T0 + timedelta(days=2, hours=13))
    assert [(f.job, f.at.astimezone(UTC)) for f in fires] == [
        ("refit", T0 + timedelta(hours=1)),
        ("sweep", T0 + timedelta(hours=12)),
        ("report", T0 + timedelta(hours=23, minutes=30)),  # Monday 08:30 in Seoul
        ("sweep", T0 + timedelta(days=1, hours=12)),
        ("sweep", T0 + timedelta(days=2, hours=12)),
    ]
    assert all(f.at.utcoffset() == timedelta(hours=9) for f in fires)
    assert not fires[-1].missed  # the last one is an hour old: within its grace
    assert [f.missed for f in fires[:4]] == [True] * 4  # seen a day or more late: skipped
    assert s.next_fire() == T0 + timedelta(days=3, hours=1)  # the refit, every three days from 01:00


def test_first_advance_without_a_start_only_sets_the_cursor() -> None:
    s = EventTimeScheduler(jobs())
    assert s.advance(T0) == []
    assert [f.job for f in s.advance(T0 + timedelta(hours=12))] == ["refit", "sweep"]
    assert s.advance(T0 + timedelta(hours=11)) == []  # event time never moves back


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 10 * 24 * 60 - 1), max_size=30, unique=True))
def test_any_chunking_of_an_interval_gives_the_same_fires(cuts: list[int]) -> None:
    whole = [(f.job, f.at) for f in EventTimeScheduler(jobs(), start=T0).advance(T1)]
    s = EventTimeScheduler(jobs(), start=T0)
    chunked: list[Fire] = []
    for minute in [*sorted(cuts), 10 * 24 * 60]:
        chunked += s.advance(T0 + timedelta(minutes=minute))
    assert [(f.job, f.at) for f in chunked] == whole
    assert len(whole) >= 10  # ten daily sweeps at least: never vacuous


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 10 * 24 - 1), max_size=10, unique=True))
def test_chunks_within_the_grace_run_every_fire(cut_hours: list[int]) -> None:
    # Advancing every hour (under the two-hour grace), plus arbitrary cuts: nothing is missed.
    s = EventTimeScheduler(jobs(), start=T0)
    stops = sorted({*cut_hours, *range(1, 10 * 24 + 1)})
    fires = [f for h in stops for f in s.advance(T0 + timedelta(hours=h))]
    assert fires and not any(f.missed for f in fires)


def test_restore_resumes_without_refiring() -> None:
    mid = T0 + timedelta(days=4, hours=13)
    clean = [(f.job, f.at) for f in EventTimeScheduler(jobs(), start=T0).advance(T1)]
    first = EventTimeScheduler(jobs(), start=T0)
    before = first.advance(mid)
    saved = json.loads(json.dumps(first.state()))  # through JSON, as a checkpoint keeps it
    resumed = EventTimeScheduler(jobs())
    resumed.restore(saved)
    after = resumed.advance(T1)
    assert [(f.job, f.at) for f in before + after] == clean
    assert not {f.at for f in before} & {f.at for f in after}


def test_an_overdue_fire_after_a_restore_is_skipped_not_run_late() -> None:
    s = EventTimeScheduler(jobs(grace=timedelta(hours=1)), start=T0)
    s.advance(T0 + timedelta(hours=12, minutes=30))  # the first sweep ran on time
    saved = s.state()
    restored = EventTimeScheduler(jobs(grace=timedelta(hours=1)))
    restored.restore(saved)
    late = restored.advance(T0 + timedelta(days=5, hours=12, minutes=20))  # the engine was down for five days
    sweeps = [f for f in late if f.job == "sweep"]
    assert [f.missed for f in sweeps] == [True, True, True, True, False]  # only today's, 20 minutes old, runs
    assert all(f.missed for f in late if f.job != "sweep")


def test_bad_jobs_and_states_are_refused() -> None:
    with pytest.raises(NudgeError, match="repeat"):
        EventTimeScheduler([*jobs(), jobs()[0]])
    jittery = Job("j", CronTrigger(hour=6, timezone=UTC, jitter=30), timedelta(hours=1))
    with pytest.raises(NudgeError, match="jitter"):
        EventTimeScheduler([jittery])
    with pytest.raises(NudgeError, match="has no zone"):
        EventTimeScheduler(jobs()).advance(datetime(2017, 1, 1))
    with pytest.raises(NudgeError, match="schema version 9"):
        EventTimeScheduler(jobs()).restore({"schema": 9, "jobs": {}})


def test_run_live_on_the_wall_clock_until_stopped() -> None:
    clock = WallClock()
    start = clock.now()
    s = EventTimeScheduler([Job.every("tick", timedelta(seconds=0.2), start, timedelta(seconds=5))], start=start)
    seen: list[Fire] = []
    stop = threading.Event()
    worker = threading.Thread(target=lambda: seen.append(s.run_live(clock, seen.append, stop, poll=0.05)))
    worker.start()
    threading.Timer(1.1, stop.set).start()
    worker.join(timeout=5)
    ran = seen.pop()
    assert not worker.is_alive() and ran == len(seen) >= 3
    assert [f.at for f in seen] == sorted(f.at for f in seen) and all(start < f.at <= clock.now() for f in seen)


def test_engine_jobs_sweep_daily_and_refit_monthly_as_settings_say() -> None:
    s = EventTimeScheduler(engine_jobs(Settings(home="/nonexistent")), start=T0)
    fires = s.advance(datetime(2017, 3, 1, 7, tzinfo=UTC))
    assert [f.at for f in fires if f.job == "refit"] == [datetime(2017, m, 1, tzinfo=UTC) for m in (2, 3)]
    assert len([f for f in fires if f.job == "sweep"]) == 59 and not fires[-1].missed  # (T0, now]
    assert len([f for f in fires if f.job == "deliver"]) == 59 * 24 + 7
    at_once = [f.job for f in fires if f.at == datetime(2017, 3, 1, tzinfo=UTC)]
    assert at_once == ["refit", "sweep", "deliver"]  # the sweep reads the refit's scores, delivery the sweep's rows
    with pytest.raises(ConfigError, match="job sweep: cron 'daily'"):
        engine_jobs(Settings(home="/nonexistent", sweep_cron="daily"))
