"""`nudge worker` on a real KRaft broker: the same states and lines as the embedded replay, dead letters in the
table and on `<topic>.deadletter`, and a SIGKILL mid-stream that loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from engine.config import Settings
from engine.db import connect
from engine.live.wire import encode
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

HOUSEHOLDS = 300


@pytest.fixture(scope="module")
def source(cj_tables) -> CompleteJourneySource:
    ids = set(sorted(cj_tables["transactions"]["household_id"].unique())[:HOUSEHOLDS])
    return CompleteJourneySource(households=ids, tables=cj_tables)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, source) -> EmbeddedRuntime:
    runtime = EmbeddedRuntime(Settings(home=tmp_path_factory.mktemp("embedded")))
    runtime.replay(source, fresh=True)
    return runtime


def _produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
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


def _messages(source) -> list[tuple[bytes, bytes]]:
    return [encode(source.decoder.decode(r.raw, r.where)) for r in source.records()]


def _saved(home: Path) -> int:
    db = home / "nudge.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT coalesce(sum(position), 0) FROM checkpoint").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _worker(home: Path, bootstrap: str, topic: str, group: str) -> subprocess.Popen:
    env = {**os.environ, "NUDGE_HOME": str(home), "NUDGE_KAFKA_BOOTSTRAP": bootstrap, "NUDGE_KAFKA_TOPIC": topic,
           "NUDGE_KAFKA_GROUP": group, "NUDGE_WORKER_NAME": f"{group}-w1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "engine.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=(home.parent / f"{group}.log").open("w"))


def _wait(home: Path, until: int, timeout: float = 120) -> float:
    started = time.monotonic()
    while _saved(home) < until:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the worker saved {_saved(home)} of {until} in {timeout} s")
        time.sleep(0.1)
    return time.monotonic() - started


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _assert_like_embedded(home: Path, embedded: EmbeddedRuntime) -> None:
    engine = connect(f"sqlite:///{home / 'nudge.db'}")
    assert CheckpointStore(engine).load_states() == embedded.checkpoints.load_states()
    ids = LineStore(home / "lines", engine).read().column("event_id").to_pylist()
    assert len(ids) == len(set(ids))
    assert set(ids) == set(embedded.lines.read().column("event_id").to_pylist())


def test_a_worker_killed_mid_stream_resumes_to_the_embedded_states_and_lines(kafka_broker, tmp_path, source,
                                                                             embedded) -> None:
    topic, group = f"p-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    messages = _messages(source)
    _produce(kafka_broker.bootstrap, topic, messages)
    home = tmp_path / "home"
    proc = _worker(home, kafka_broker.bootstrap, topic, group)
    _wait(home, len(messages) // 5)
    proc.kill()  # SIGKILL: no commit, no goodbye
    proc.wait()
    killed_at = _saved(home)
    assert killed_at < len(messages)
    proc = _worker(home, kafka_broker.bootstrap, topic, group)
    try:
        _wait(home, killed_at + 1, timeout=30)
        _wait(home, len(messages))
    finally:
        _stop(proc)
    _assert_like_embedded(home, embedded)
    counters = [json.loads(c) for (c,) in sqlite3.connect(home / "nudge.db").execute("SELECT counters FROM checkpoint")]
    assert sum(c["purchases"] for c in counters) == embedded.lines.read().num_rows  # each accepted once


def test_bad_messages_are_dead_letters_in_the_table_and_on_the_topic(kafka_broker, tmp_path) -> None:
    from aiokafka import AIOKafkaConsumer

    topic, group = f"p-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 1)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    _produce(kafka_broker.bootstrap, topic, [(b"c1", b"{not json"), (b"c2", b'{"schema": 7, "customer_id": "c2"}')])
    home = tmp_path / "home"
    proc = _worker(home, kafka_broker.bootstrap, topic, group)
    try:
        _wait(home, 2)
    finally:
        _stop(proc)
    rows = sqlite3.connect(home / "nudge.db").execute("SELECT position, reason FROM dead_letter ORDER BY position")
    reasons = [r for _, r in rows]
    assert "not JSON" in reasons[0] and "schema: 7 is not a version" in reasons[1]

    async def read() -> list[dict]:
        consumer = AIOKafkaConsumer(f"{topic}.deadletter", bootstrap_servers=kafka_broker.bootstrap,
                                    auto_offset_reset="earliest", consumer_timeout_ms=1000)
        await consumer.start()
        try:
            batch = await consumer.getmany(timeout_ms=10_000)
            return [json.loads(m.value) for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()

    letters = asyncio.run(read())
    assert {d["position"] for d in letters} == {0, 1} and all(d["reason"] for d in letters)
