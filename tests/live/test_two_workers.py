"""Two `nudge worker` processes in one group on one store. A SIGKILLed one's partitions move to the other within
the session timeout, and the end is the embedded replay's states and lines, each purchase stored and counted once.

The tests after it hold the edges of a moving partition (engine/runtime/stream.py, engine/db.py): a redelivered
message is not counted again, a worker woken after its partition moved writes nothing over its successor's work, a
partition taken mid-batch keeps what the batch applied before, and workers starting together on a fresh database
all open it."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from engine.config import Settings
from engine.db import connect
from engine.errors import NudgeError
from engine.events import Purchase
from engine.live.wire import WireDecoder, decode
from engine.runtime.embedded import EmbeddedRuntime
from engine.runtime.stream import Message, StreamIngest
from engine.sources.completejourney import CompleteJourneySource
from engine.store.checkpoints import Checkpoint, CheckpointStore
from tests.live.test_broker_produce import first_households
from tests.live.workers import (
    assert_like_embedded,
    produce,
    replayed,
    sqlite_url,
    start_worker,
    stop,
    wait_saved,
    wire_messages,
)

HOUSEHOLDS = 300
PARTITIONS = 4
SESSION_TIMEOUT = 10.0  # engine.runtime.worker's broker_session_timeout: when a silent member's partitions move


@pytest.fixture(scope="module")
def source(cj_tables) -> CompleteJourneySource:
    return first_households(cj_tables, HOUSEHOLDS)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, source) -> EmbeddedRuntime:
    return replayed(tmp_path_factory.mktemp("embedded"), source)


def assignment(admin: KafkaAdminClient, group: str) -> dict[str, set[int]]:
    """Each member's partitions, by its static name, as the group coordinator has them now ({} while it has none)."""
    try:
        (described,) = admin.describe_groups([group]).values()
    except KafkaError:  # no coordinator yet: the offsets topic is created by the first group
        return {}
    return {m["group_instance_id"]: {p for a in m["member_assignment"]["assigned_partitions"] for p in a["partitions"]}
            for m in described["members"] if m["member_assignment"]}


def wait_assigned(bootstrap: str, group: str, wanted: dict[str, set[int] | None], timeout: float = 60) -> dict:
    """Wait until each named worker holds partitions (exactly these, when given); the assignment then."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="nudge-test")
    deadline = time.monotonic() + timeout
    try:
        while True:
            held = assignment(admin, group)
            if all(held.get(n) and (want is None or held[n] == want) for n, want in wanted.items()):
                return held
            if time.monotonic() > deadline:
                raise AssertionError(f"group {group} held {held}, not {wanted}, after {timeout} s")
            time.sleep(0.2)
    finally:
        admin.close()


def checkpoints(home: Path) -> list[Checkpoint]:
    """The partitions' checkpoints in the workers' shared store."""
    engine = connect(sqlite_url(home))
    try:
        return CheckpointStore(engine).load_all()
    finally:
        engine.dispose()


def positions(home: Path) -> dict[int, int]:
    """Each partition's saved next offset, by partition."""
    return {int(cp.source.rsplit(":", 1)[1]): cp.position for cp in checkpoints(home)}


@pytest.mark.slow
@pytest.mark.kafka
def test_a_killed_workers_partitions_move_to_the_other_and_nothing_is_lost_or_doubled(kafka_broker, tmp_path, source,
                                                                                    embedded) -> None:
    topic, group = f"t-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, PARTITIONS)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    messages = wire_messages(source)
    half = len(messages) // 2
    produce(kafka_broker.bootstrap, topic, messages[:half])
    home = tmp_path / "home"
    victim, survivor = names = [f"{group}-a", f"{group}-b"]
    workers = {n: start_worker(home, kafka_broker.bootstrap, topic, group, n) for n in names}  # at once, as a deploy
    try:
        held = wait_assigned(kafka_broker.bootstrap, group, dict.fromkeys(names))
        wait_saved(home, half // 4)
        workers[victim].kill()  # SIGKILL: no commit, no leaving the group; the coordinator waits out the session
        workers[victim].wait()
        killed = time.monotonic()
        at_kill = positions(home)
        produce(kafka_broker.bootstrap, topic, messages[half:])  # the victim's partitions have work it never sees
        while not all(positions(home).get(p, 0) > at_kill.get(p, 0) for p in held[victim]):
            assert time.monotonic() - killed < 3 * SESSION_TIMEOUT, (
                f"{victim}'s partitions {sorted(held[victim])} did not move in {3 * SESSION_TIMEOUT:.0f} s")
            time.sleep(0.1)
        moved = time.monotonic() - killed
        wait_assigned(kafka_broker.bootstrap, group, {survivor: set(range(PARTITIONS))})
        wait_saved(home, len(messages))
    finally:
        for proc in workers.values():
            stop(proc)
    print(f"partitions {sorted(held[victim])} moved {moved:.1f} s after the kill at {at_kill}")
    assert SESSION_TIMEOUT * 0.8 < moved < 2 * SESSION_TIMEOUT
    assert_like_embedded(home, embedded)
    purchases = sum(cp.counters.purchases for cp in checkpoints(home))
    assert purchases == embedded.lines.read().num_rows  # each accepted purchase counted once


def _ingest(home: Path) -> StreamIngest:
    """A worker's ingest on the store in `home` (a new one is a worker restarted, or the partition's next owner)."""
    settings = Settings(home=home)
    return StreamIngest(settings, connect(settings.database_url), "purchases", WireDecoder())


@pytest.fixture
def baskets(cj_tables) -> list[tuple[bytes, bytes]]:
    """Two households' baskets as (key, value) messages, in replay order (no gap beyond the future tolerance)."""
    return [(key, value) for key, value in wire_messages(first_households(cj_tables, 2))
            if isinstance(decode(value, "a test message"), Purchase)]


def test_a_redelivered_message_is_not_counted_again(tmp_path, baskets) -> None:
    values = [value for _, value in baskets[:6]]
    _ingest(tmp_path).handle([Message(0, i, v) for i, v in enumerate(values[:4])])
    successor = _ingest(tmp_path)
    successor.assign({0})
    successor.handle([Message(0, i, v) for i, v in enumerate(values)])  # resumed at a committed offset of 0
    (cp,) = CheckpointStore(successor.engine).load_all()
    assert (cp.position, cp.counters.records, cp.counters.duplicates) == (6, 6, 0)


# A worker stalled past the session timeout (a long GC pause, a throttled or frozen VM) that wakes holding a batch of
# a partition the group has moved. Live, before the claims, a SIGSTOPed and SIGCONTed worker stored 120 purchases
# twice, and its part file replaced the successor's committed part of the same number.
def test_a_worker_woken_after_its_partition_moved_writes_nothing_over_its_successor(tmp_path, baskets) -> None:
    held = [Message(0, i, value) for i, (_, value) in enumerate(baskets[:8])]
    stalled = _ingest(tmp_path)
    stalled.assign({0})
    stalled.handle(held[:4])
    successor = _ingest(tmp_path)
    successor.assign({0})  # the session expired: the group gave partition 0 to another worker
    successor.handle(held[4:])
    with contextlib.suppress(NudgeError):  # refusing is right: the partition is the successor's
        stalled.handle(held[5:7])  # the batch it held when it stalled, handled when it wakes
    (cp,) = CheckpointStore(successor.engine).load_all()
    ids = successor.lines.read().column("event_id").to_pylist()
    applied = sum(s.events for s in successor.checkpoints.load_states().values())
    assert (cp.position, len(ids), len(set(ids)), applied) == (8, 8, 8, 8)


def test_a_partition_taken_mid_batch_keeps_what_the_batch_applied_before(tmp_path, baskets) -> None:
    by_customer: dict[bytes, list[bytes]] = {}
    for key, value in baskets:
        by_customer.setdefault(key, []).append(value)
    (x1, x2, *_), (y1, *_) = by_customer.values()
    ingest = _ingest(tmp_path)
    ingest.assign({0})
    ingest.handle([Message(0, 0, x1)])
    ingest.handle([Message(0, 1, x2), Message(1, 0, y1)])  # partition 1's first message before its assignment
    stored = ingest.lines.read().num_rows
    applied = sum(s.events for s in ingest.checkpoints.load_states().values())
    assert (stored, applied) == (3, 3)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_workers_starting_together_on_a_fresh_database_all_open_it(tmp_path, request, backend) -> None:
    url = sqlite_url(tmp_path) if backend == "sqlite" else request.getfixturevalue("pg_url")
    together = threading.Barrier(4)

    def open_store(_: int) -> str | None:
        together.wait()
        try:
            connect(url).dispose()
        except Exception as exc:  # what a worker would die of at start-up
            return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        return None

    with ThreadPoolExecutor(4) as pool:
        failed = [e for e in pool.map(open_store, range(4)) if e]
    assert not failed, failed
