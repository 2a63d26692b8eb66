"""`nudge worker` as an OS process for the live tests: start it, wait on what it saved, stop or kill it, and compare
its stores with an embedded replay of the same events."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from engine.config import Settings
from engine.db import connect
from engine.live.wire import encode
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore


def sqlite_url(home: Path) -> str:
    """The database a worker uses when NUDGE_DB_URL is not set: SQLite in its home."""
    return f"sqlite:///{home / 'nudge.db'}"


def replayed(home: Path, source: CompleteJourneySource) -> EmbeddedRuntime:
    """The embedded runtime after a fresh replay of `source` in `home`: what the workers should end as."""
    runtime = EmbeddedRuntime(Settings(home=home))
    runtime.replay(source, fresh=True)
    return runtime


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) messages with aiokafka's default (murmur2) partitioner and wait until all are written."""
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            for key, value in values:
                await producer.send(topic, value, key=key)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(run())


def wire_messages(source: CompleteJourneySource) -> list[tuple[bytes, bytes]]:
    """The source's events in replay order as `encode` writes them."""
    return [encode(source.decoder.decode(r.raw, r.where)) for r in source.records()]


@cache
def _reader(url: str) -> Engine:
    # No pool: a connection held between polls would keep a read snapshot open against the writers.
    return create_engine(url, poolclass=NullPool)


def saved(home: Path, url: str | None = None) -> int:
    """How many messages the workers have saved: the sum of the partitions' next offsets (0 before the first save).
    `url`: the workers' database when it is not the home's SQLite."""
    if url is None and not (home / "nudge.db").exists():
        return 0  # a SQLite engine would create the file: leave that to the worker
    try:
        with _reader(url or sqlite_url(home)).connect() as conn:
            return conn.execute(text("SELECT coalesce(sum(position), 0) FROM checkpoint")).scalar_one()
    except DBAPIError:  # no table yet
        return 0


def start_worker(home: Path, bootstrap: str, topic: str, group: str, name: str | None = None,
                 db_url: str | None = None) -> subprocess.Popen:
    """`nudge worker` configured by the environment only, as a deployment runs it (on `db_url`, default the home's
    SQLite); stderr goes to `<home>/../<name>.log`."""
    name = name or f"{group}-w1"
    env = {**os.environ, "NUDGE_HOME": str(home), "NUDGE_KAFKA_BOOTSTRAP": bootstrap, "NUDGE_KAFKA_TOPIC": topic,
           "NUDGE_KAFKA_GROUP": group, "NUDGE_WORKER_NAME": name, "OPENBLAS_NUM_THREADS": "1"}
    if db_url is not None:
        env["NUDGE_DB_URL"] = db_url
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=(home.parent / f"{name}.log").open("w"))


def wait_saved(home: Path, until: int, timeout: float = 120, url: str | None = None) -> float:
    """Wait until the workers have saved `until` messages; the seconds it took."""
    started = time.monotonic()
    while saved(home, url) < until:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the workers saved {saved(home, url)} of {until} in {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (faust commits the offsets of what was saved), SIGKILL after 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def assert_like_embedded(home: Path, embedded: EmbeddedRuntime) -> None:
    """The workers' states equal the embedded replay's, and their line store holds its purchases, each once."""
    engine = connect(sqlite_url(home))
    try:
        assert CheckpointStore(engine).load_states() == embedded.checkpoints.load_states()
        ids = LineStore(home / "lines", engine).read().column("event_id").to_pylist()
        assert len(ids) == len(set(ids))
        assert set(ids) == set(embedded.lines.read().column("event_id").to_pylist())
    finally:
        engine.dispose()
