"""The producer against a real broker, the broker's own life cycle, and the wire format's round trip."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import typer

from engine.errors import DecodeError, NudgeError
from engine.events import CustomerProfile, Event, OfferResponse, Purchase
from engine.live.broker import STATE_FILE, KafkaBroker, alive, free_ports
from engine.live.produce import produce, produce_command
from engine.live.wire import WireDecoder, decode, encode
from engine.pipeline import Ingest, Step
from engine.sources import Source
from engine.sources.completejourney import CompleteJourneySource
from engine.sources.jsonl import JsonLinesDecoder
from engine.state import StatePolicy

ROOT = Path(__file__).resolve().parents[2]
LPOINT_SAMPLE = ROOT / ".." / "shared" / "data" / "sample_products.csv"


def events_of(source: Source) -> list[Event]:
    """The source's events in replay order, through its own decoder."""
    return [source.decoder.decode(r.raw, r.where) for r in source.records()]


def first_households(tables: dict[str, pd.DataFrame], n: int) -> CompleteJourneySource:
    ids = set(sorted(tables["transactions"]["household_id"].unique())[:n])
    return CompleteJourneySource(households=ids, tables=tables)


async def consume_all(bootstrap: str, topic: str) -> list:
    """Every message of the topic, read partition by partition up to the end offsets."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # without a group: every partition is assigned
    await consumer.start()
    try:
        parts = sorted(consumer.assignment())
        end = await consumer.end_offsets(parts)
        found, deadline = [], time.monotonic() + 60
        while len(found) < sum(end.values()):  # one broker, no transactions: offsets are 0..end-1
            assert time.monotonic() < deadline, f"read {len(found)} of {sum(end.values())} messages in 60 s"
            for batch in (await consumer.getmany(timeout_ms=1_000)).values():
                found.extend(batch)
        return found
    finally:
        await consumer.stop()


# -- against the broker ---------------------------------------------------------------------------
@pytest.mark.kafka
@pytest.mark.slow
def test_fifty_households_arrive_keyed_by_customer_in_source_order(kafka_broker: KafkaBroker,
                                                                   cj_tables: dict[str, pd.DataFrame]) -> None:
    source = first_households(cj_tables, 50)
    expected = events_of(source)
    topic = f"purchases-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)

    stats = produce(source, kafka_broker.bootstrap, topic)
    messages = asyncio.run(consume_all(kafka_broker.bootstrap, topic))

    assert stats.events == len(expected) == len(messages) and stats.rejected == 0
    jsonl = JsonLinesDecoder()
    partitions: dict[bytes, set[int]] = defaultdict(set)
    arrived: dict[str, list[Event]] = defaultdict(list)
    for m in sorted(messages, key=lambda m: (m.partition, m.offset)):
        event = decode(m.value, f"{topic}[{m.partition}] offset {m.offset}")
        body = json.loads(m.value)
        assert body.pop("schema") == 1
        assert jsonl.decode(json.dumps(body), "jsonl") == event  # the value is a jsonl line plus its version
        assert m.key == event.customer_id.encode()
        partitions[m.key].add(m.partition)
        arrived[event.customer_id].append(event)
    assert all(len(found) == 1 for found in partitions.values())
    assert {p for found in partitions.values() for p in found} == {0, 1, 2, 3}  # 50 customers spread out
    in_source: dict[str, list[Event]] = defaultdict(list)
    for event in expected:
        in_source[event.customer_id].append(event)
    assert arrived == in_source  # each customer's events, in the source's order, equal to the source's


@pytest.mark.kafka
@pytest.mark.slow
def test_a_rate_spreads_the_events_over_time(kafka_broker: KafkaBroker, cj_tables: dict[str, pd.DataFrame]) -> None:
    source = first_households(cj_tables, 10)
    topic = f"purchases-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)
    seen: list[int] = []
    stats = produce(source, kafka_broker.bootstrap, topic, rate=1_000, progress=seen.append)
    assert stats.events == len(source)
    assert len(source) / 1_000 <= stats.seconds < len(source) / 1_000 + 2
    assert seen == sorted(seen) and seen[-1] == len(source)


@pytest.mark.kafka
@pytest.mark.slow
def test_the_command_sends_the_first_households(kafka_broker: KafkaBroker, cj_tables: dict[str, pd.DataFrame],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    topic = f"purchases-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)
    monkeypatch.setenv("NUDGE_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setattr("engine.sources.completejourney.load_tables", lambda: cj_tables)
    from engine.cli import main

    app = typer.Typer()  # registered as engine.cli will: after its callback, which routes logs to stderr
    app.callback()(main)
    app.command("produce")(produce_command)
    done = CliRunner().invoke(app, ["produce", "--source", "cj", "--households", "2", "--topic", topic, "--json"])
    assert done.exit_code == 0, done.output
    figures = json.loads(done.stdout)
    assert figures["events"] == len(first_households(cj_tables, 2)) and figures["rejected"] == 0
    assert figures["bootstrap"] == kafka_broker.bootstrap
    refused = CliRunner().invoke(app, ["produce", "--source", "jsonl", "--households", "2", "--topic", topic])
    assert refused.exit_code == 2 and "--households is for --source cj" in refused.output


@pytest.mark.kafka
@pytest.mark.slow
def test_a_missing_topic_is_named_and_nothing_is_sent(kafka_broker: KafkaBroker,
                                                      cj_tables: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(NudgeError, match="topic nowhere does not exist"):
        produce(first_households(cj_tables, 1), kafka_broker.bootstrap, "nowhere")


@pytest.mark.kafka
@pytest.mark.slow
def test_stop_kills_a_jvm_that_does_not_answer_sigterm(kafka_jars: Path, tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "broker", kafka_jars)
    broker.start()
    pid = broker.pid
    os.kill(pid, signal.SIGSTOP)  # a stopped JVM cannot run its shutdown hook
    broker.stop(timeout=1.0)
    assert broker.pid is None and not alive(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie


@pytest.mark.kafka
@pytest.mark.slow
def test_cli_start_leaves_a_detached_broker_and_stop_ends_it(kafka_jars: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    (port,) = free_ports(1)
    cli = [sys.executable, "-m", "engine.live.broker"]
    started = subprocess.run([*cli, "start", "--dir", str(folder), "--port", str(port),
                              "--cache", str(kafka_jars.parent)], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    state = json.loads((folder / STATE_FILE).read_text())
    pid = state["pid"]
    try:
        assert state["bootstrap"] == f"127.0.0.1:{port}"
        assert alive(pid) and os.getsid(pid) != os.getsid(0)  # outlived `start`, in its own session
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        stopped = subprocess.run([*cli, "stop", "--dir", str(folder)], capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0 and f"stopped pid {pid}" in stopped.stdout
    assert not alive(pid) and not (folder / STATE_FILE).exists()


# -- the wire format ------------------------------------------------------------------------------
def test_every_event_type_round_trips() -> None:
    when = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    events = [
        Purchase(event_id="b1", customer_id="고객 1", event_time=when, store_id="s", affiliate="A01", channel="online",
                 lpay=True, lines=(("p1", ("음료", "생수"), 2, 1.5), ("p2", ("UNKNOWN",), -1, -0.25)), amount=1.25),
        Purchase(event_id="svc:9", customer_id="c2", event_time=when, amount=30_000.0),  # a service use
        CustomerProfile(customer_id="c3", time_zone="Asia/Seoul", sex="여성", age_band="30대", region="Z07",
                        attributes={"lpay_client": "1"}),
        CustomerProfile(customer_id="c4"),
        OfferResponse(event_id="r1", customer_id="c5", event_time=when, code="SUB-1"),
    ]
    for event in events:
        key, value = encode(event)
        assert key == event.customer_id.encode()
        assert decode(value, "test") == event


def test_complete_journey_and_lpoint_events_round_trip(cj_tables: dict[str, pd.DataFrame]) -> None:
    events = events_of(first_households(cj_tables, 3))
    if LPOINT_SAMPLE.is_file():
        from engine.sources.lpoint import LPointSource

        events += events_of(LPointSource(LPOINT_SAMPLE))
    assert {type(e) for e in events} == {Purchase, CustomerProfile}
    assert [decode(encode(e)[1], "test") for e in events] == events


def test_a_value_spelled_differently_decodes_the_same() -> None:
    # Another producer may order keys and space them as it likes; only `encode`'s own layout is parsed once.
    event = OfferResponse(event_id="r1", customer_id="c5", event_time=datetime(2021, 1, 1, tzinfo=UTC), code="X")
    value = b'{"type": "offer_response", "customer_id": "c5", "schema": 1, "event_id": "r1", ' \
            b'"event_time": "2021-01-01T09:00:00+09:00", "code": "X"}'
    assert decode(value, "test") == event


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"schema":2,"type":"purchase","event_id":"b1"}', "purchases[3] offset 7: schema: 2 is not a version this "
                                                         "consumer reads (it reads 1)"),
    (b'{"schema": "1", "customer_id": "c"}', "schema: '1' is not a version"),
    (b'{"type": "profile", "customer_id": "c"}', "schema: missing"),
    (b'{"schema":1,"type":"purchase","customer_id":"c"}', "event_id: Field required"),
    (b"[1, 2]", "expected a JSON object, got list"),
])
def test_an_unreadable_message_is_a_dead_letter_with_its_reason(value: bytes, reason: str) -> None:
    where = "purchases[3] offset 7"
    with pytest.raises(DecodeError, match=re.escape(reason)):
        decode(value, where)

    step = Step("kafka:purchases:3", WireDecoder(), Ingest(None, timedelta(days=1), StatePolicy()))
    letter = step(value.decode(), where, 7)
    assert reason in letter.reason and letter.position == 7
