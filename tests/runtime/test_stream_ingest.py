"""The Kafka worker's core without the broker: batches of wire messages, spread over partitions as the producer
keys them, end in the same states and lines as the embedded replay of the same events; a batch delivered again
(a worker killed before its offsets were committed) changes nothing; bad values become dead letters."""

from __future__ import annotations

import zlib

import pytest

from engine.config import Settings
from engine.db import connect
from engine.deadletters import list_dead_letters
from engine.live.wire import WireDecoder, encode
from engine.runtime.embedded import EmbeddedRuntime
from engine.runtime.stream import PART_SPACE, Message, StreamIngest, source_key, stream_watermark
from engine.sources.completejourney import CompleteJourneySource
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore

HOUSEHOLDS = 40
PARTITIONS = 4
TOPIC = "purchases"


@pytest.fixture(scope="module")
def source(cj_tables) -> CompleteJourneySource:
    ids = set(sorted(cj_tables["transactions"]["household_id"].unique())[:HOUSEHOLDS])
    return CompleteJourneySource(households=ids, tables=cj_tables)


@pytest.fixture(scope="module")
def messages(source) -> list[Message]:
    """The source's events as a topic holds them: by customer key into partitions, offsets in order."""
    offsets = [0] * PARTITIONS
    out = []
    for record in source.records():
        key, value = encode(source.decoder.decode(record.raw, record.where))
        p = zlib.crc32(key) % PARTITIONS
        out.append(Message(p, offsets[p], value))
        offsets[p] += 1
    return out


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, source):
    home = tmp_path_factory.mktemp("embedded")
    runtime = EmbeddedRuntime(Settings(home=home))
    runtime.replay(source, fresh=True)
    return runtime


def _ingest(home) -> StreamIngest:
    settings = Settings(home=home)
    ingest = StreamIngest(settings, connect(settings.database_url), TOPIC, WireDecoder())
    ingest.assign(range(PARTITIONS))
    return ingest


def _event_ids(lines: LineStore) -> list[str]:
    return lines.read().column("event_id").to_pylist()


def test_batches_over_partitions_end_in_the_embedded_states_and_lines(tmp_path, messages, embedded) -> None:
    ingest = _ingest(tmp_path)
    for i in range(0, len(messages), 997):
        assert ingest.handle(messages[i:i + 997]) == []
    states = CheckpointStore(ingest.engine).load_states()
    expected = embedded.checkpoints.load_states()
    assert states.keys() == expected.keys() and len(states) == HOUSEHOLDS
    assert states == expected
    ids = _event_ids(ingest.lines)
    assert len(ids) == len(set(ids)) == len(_event_ids(embedded.lines))
    assert set(ids) == set(_event_ids(embedded.lines))
    assert all(part.seq >= PART_SPACE for part in ingest.lines.parts())
    last = {m.partition: m.offset for m in messages}
    assert ingest.positions() == {p: o + 1 for p, o in last.items()}
    # the stream's clock: the slowest partition's latest event time
    marks = [CheckpointStore(ingest.engine).load(source_key(TOPIC, p)).watermark for p in range(PARTITIONS)]
    assert stream_watermark(ingest.engine, TOPIC) == min(marks)


def test_a_batch_delivered_again_after_a_restart_changes_nothing(tmp_path, messages) -> None:
    half = len(messages) // 2
    first = _ingest(tmp_path)
    first.handle(messages[:half])
    ids_before = _event_ids(first.lines)
    states_before = CheckpointStore(first.engine).load_states()
    again = _ingest(tmp_path)  # a new worker: what the group re-delivers from the last committed offset
    again.handle(messages[half - 500:half])
    assert CheckpointStore(again.engine).load_states() == states_before
    assert _event_ids(again.lines) == ids_before
    again.handle(messages[half - 300:])  # an overlapping batch running on to the end
    whole = _ingest(tmp_path / "whole")
    whole.handle(messages)
    assert CheckpointStore(again.engine).load_states() == CheckpointStore(whole.engine).load_states()
    ids = _event_ids(again.lines)
    assert len(ids) == len(set(ids)) and set(ids) == set(_event_ids(whole.lines))
    for p in {m.partition for m in messages}:  # what was re-delivered below the saved offset was passed over
        totals = CheckpointStore(again.engine).load(source_key(TOPIC, p)).counters
        assert (totals.records, totals.duplicates) == (sum(m.partition == p for m in messages), 0)


def test_bad_values_are_dead_letters_with_the_reason_once_each(tmp_path) -> None:
    ingest = _ingest(tmp_path)
    bad = [Message(0, 0, b"{not json"), Message(1, 0, b'{"schema": 9, "customer_id": "c"}'),
           Message(2, 0, b"\xff\xfe"), Message(3, 0, b'{"customer_id": "c"}')]
    letters = ingest.handle(bad)
    assert [d.position for d in letters] == [0, 0, 0, 0]
    ingest.handle(bad)  # delivered again
    stored = {d.source: d.reason for d in list_dead_letters(ingest.engine)}
    assert len(stored) == 4
    assert "not JSON" in stored[source_key(TOPIC, 0)]
    assert "schema: 9 is not a version" in stored[source_key(TOPIC, 1)]
    assert "not UTF-8" in stored[source_key(TOPIC, 2)]
    assert "schema: missing" in stored[source_key(TOPIC, 3)]
    assert all(d.where.startswith(f"{TOPIC}[") for d in list_dead_letters(ingest.engine))
