"""`nudge worker` on a real KRaft broker: the same states and lines as the embedded replay, dead letters in the
table and on `<topic>.deadletter`, and a SIGKILL mid-stream that loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid

import pytest

from engine.config import Settings
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from tests.live.workers import (
    assert_like_embedded,
    produce,
    saved,
    start_worker,
    stop,
    wait_saved,
    wire_messages,
)

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


def test_a_worker_killed_mid_stream_resumes_to_the_embedded_states_and_lines(kafka_broker, tmp_path, source,
                                                                             embedded) -> None:
    topic, group = f"p-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    messages = wire_messages(source)
    produce(kafka_broker.bootstrap, topic, messages)
    home = tmp_path / "home"
    proc = start_worker(home, kafka_broker.bootstrap, topic, group)
    wait_saved(home, len(messages) // 5)
    proc.kill()  # SIGKILL: no commit, no goodbye
    proc.wait()
    killed_at = saved(home)
    assert killed_at < len(messages)
    proc = start_worker(home, kafka_broker.bootstrap, topic, group)
    try:
        wait_saved(home, killed_at + 1, timeout=30)
        wait_saved(home, len(messages))
    finally:
        stop(proc)
    assert_like_embedded(home, embedded)
    counters = [json.loads(c) for (c,) in sqlite3.connect(home / "nudge.db").execute("SELECT counters FROM checkpoint")]
    assert sum(c["purchases"] for c in counters) == embedded.lines.read().num_rows  # each accepted once


def test_bad_messages_are_dead_letters_in_the_table_and_on_the_topic(kafka_broker, tmp_path) -> None:
    from aiokafka import AIOKafkaConsumer

    topic, group = f"p-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 1)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    produce(kafka_broker.bootstrap, topic, [(b"c1", b"{not json"), (b"c2", b'{"schema": 7, "customer_id": "c2"}')])
    home = tmp_path / "home"
    proc = start_worker(home, kafka_broker.bootstrap, topic, group)
    try:
        wait_saved(home, 2)
    finally:
        stop(proc)
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
