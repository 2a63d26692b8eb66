"""The Kafka runtime: faust-streaming workers that carry the `purchases` topic through the same core as the
embedded runtime.

Wiring only, as in `embedded.py`: each message goes through the core's `Step` (decode, `process`, counters or a
dead letter). What differs is persistence. A Table write per event, with its changelog, is what limits a faust
agent to a few thousand events a second, so the states are not kept in faust Tables: each batch of a partition
is saved as that partition's checkpoint — the states it changed, its dead letters, a line-store part of the
purchases it accepted and the offset to resume from, in one transaction of the engine's database (the
offset-with-state pattern). faust runs the consumer group, assigns partitions, and commits offsets only for
events acked after their batch was saved (`take_events` acks a batch once the loop body returns), so a killed
worker resumes at or before what it saved; the events it sees again change nothing — a state ignores an event
id it holds, dead letters are unique by position, and a part is named by the offset of its first accepted
purchase, which only one run can accept. Taking a partition claims it (an epoch in the store): a worker the group
replaced while it stalled finds its claim gone at its next save, which then changes nothing, and stops.

A partition's checkpoint lives under the source key `kafka:<topic>:<partition>`, with that partition's
watermark: the scheduler reads the minimum over partitions as the stream's clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine

from engine.clock import WatermarkClock
from engine.config import Settings
from engine.deadletters import DeadLetter
from engine.events import CustomerProfile, Event
from engine.pipeline import ACCEPTED, Ingest, Outcome, Step
from engine.sources import Decoder
from engine.state import CustomerState
from engine.store.checkpoints import Checkpoint, CheckpointStore, Fenced
from engine.store.lines import PART_SPACE, LineStore, PendingLines

log = structlog.get_logger("nudge.stream")


def source_key(topic: str, partition: int) -> str:
    """The checkpoint key of one partition of a topic."""
    return f"kafka:{topic}:{partition}"


def part_seq(partition: int, offset: int) -> int:
    """The line-store part number of the purchases a partition accepted from `offset` on: above the embedded
    runtime's numbers, one range per partition, so workers on one store never pick the same number."""
    return (partition + 1) * PART_SPACE + offset


def owns_part(partitions: Iterable[int]) -> Callable[[int], bool]:
    """Whether a part number belongs to one of `partitions` (what a worker may discard when it takes them)."""
    owned = {p + 1 for p in partitions}
    return lambda seq: seq // PART_SPACE in owned


@dataclass(frozen=True)
class Message:
    """What the worker needs of a Kafka message."""

    partition: int
    offset: int
    value: bytes


@dataclass
class PartitionLog:
    """One partition's place: its checkpoint, its watermark, its `Step` and this worker's claim on it."""

    topic: str
    partition: int
    checkpoint: Checkpoint
    step: Step
    clock: WatermarkClock  # the partition's watermark: its latest accepted event time
    epoch: int  # this worker's claim on the partition (`CheckpointStore.claim`)
    dirty: set[str] = field(default_factory=set)
    dirty_profiles: set[str] = field(default_factory=set)


class StreamIngest:
    """Batches of messages into customer states, lines and dead letters, saved per partition with its offset."""

    def __init__(self, settings: Settings, engine: Engine, topic: str, decoder: Decoder) -> None:
        self.settings, self.engine, self.topic, self.decoder = settings, engine, topic, decoder
        self.checkpoints = CheckpointStore(engine)
        self.lines = LineStore(settings.lines_dir, engine)
        self.states: dict[str, CustomerState] = {}
        self.profiles: dict[str, CustomerProfile] = {}
        self.logs: dict[int, PartitionLog] = {}
        self.revoked: set[int] = set()
        # The latest event time over every partition this worker has seen: what "late" is counted against.
        self.clock = WatermarkClock()

    def assign(self, partitions: Iterable[int]) -> None:
        """The group gave this worker `partitions` (its whole assignment): drop the others, take the new ones."""
        partitions = set(partitions)
        self.revoke(set(self.logs) - partitions)
        self._take(partitions - set(self.logs))

    def revoke(self, partitions: Iterable[int]) -> None:
        """`partitions` went to another worker: what arrives of them here is left to it."""
        for p in partitions:
            self.logs.pop(p, None)
            self.revoked.add(p)

    def _take(self, partitions: set[int]) -> None:
        """Read the partitions' checkpoints and the states as saved (another worker may have moved them on since
        this one last held them), and discard their parts no checkpoint committed."""
        if not partitions:
            return
        self.revoked -= partitions
        self.lines.discard_uncommitted(owns_part(partitions))
        # Every state, not only these partitions' customers: the customer-to-partition map is the producer's.
        # Fine at the populations this runs at today; a larger one would load a partition's customers lazily.
        self.states.clear()
        self.states.update(self.checkpoints.load_states())
        self.profiles.clear()
        self.profiles.update(self.checkpoints.load_profiles())
        settings = self.settings
        saved = {cp.source: cp for cp in self.checkpoints.load_all()}
        for cp in saved.values():
            if cp.source.startswith(source_key(self.topic, 0)[:-1]) and cp.watermark is not None:
                self.clock.observe(cp.watermark)
        for p in sorted(partitions):
            key = source_key(self.topic, p)
            cp = saved.get(key) or Checkpoint(key)
            epoch = self.checkpoints.claim(key)  # a worker that held it before can save nothing more of it
            ingest = Ingest(self.clock, settings.future_tolerance, settings.policy, self.states, self.profiles,
                            horizon=_Horizon(self.clock))
            self.logs[p] = PartitionLog(self.topic, p, cp, Step(key, self.decoder, ingest, cp.counters),
                                        WatermarkClock(cp.watermark), epoch)
        log.info("stream.assigned", topic=self.topic, partitions=sorted(partitions), customers=len(self.states))

    def handle(self, messages: Sequence[Message]) -> list[DeadLetter]:
        """Apply a batch and save each partition it touched; the dead letters found (already saved)."""
        letters: dict[int, list[DeadLetter]] = {}
        accepted: dict[int, tuple[int, PendingLines]] = {}
        feed: dict[int, list[dict]] = {}
        touched: dict[int, int] = {}
        # A message before its assignment's signal: its partition is taken now, before anything of the batch is
        # applied (taking reloads the states from the store).
        self._take({m.partition for m in messages} - set(self.logs) - self.revoked)
        for m in messages:
            if m.partition in self.revoked:  # not ours any more: its owner reads it from the committed offset
                continue
            plog = self.logs[m.partition]
            if m.offset < plog.checkpoint.position:  # saved already: Kafka's committed offset lags the checkpoint
                continue
            where = f"{self.topic}[{m.partition}] offset {m.offset}"
            touched[m.partition] = max(touched.get(m.partition, -1), m.offset)
            before = plog.clock.now()
            try:
                text = m.value.decode("utf-8")
            except (UnicodeDecodeError, AttributeError):
                plog.step.counters.count(None)
                reason = f"{where}: the value is not UTF-8 text" if m.value is not None else f"{where}: no value"
                result = DeadLetter(plog.checkpoint.source, m.offset, where, reason, (m.value or b"").hex())
            else:
                result = plog.step(text, where, m.offset)
            if isinstance(result, DeadLetter):
                letters.setdefault(m.partition, []).append(result)
                continue
            event, outcome = result
            if outcome in ACCEPTED:
                plog.clock.observe(event.event_time)
                plog.dirty.add(event.customer_id)
                _, pending = accepted.setdefault(m.partition, (m.offset, PendingLines()))
                pending.add(event)
            elif outcome is Outcome.PROFILE:
                plog.dirty_profiles.add(event.customer_id)
            if outcome is not Outcome.DUPLICATE:
                feed.setdefault(m.partition, []).append(self._feed_row(m, text, event, before))
        saved = []
        for p, last in touched.items():
            try:
                self._save(self.logs[p], last + 1, letters.get(p, []), accepted.get(p), feed.get(p, []))
            except Fenced as exc:  # the group moved it while this worker stalled: the batch is its owner's to do
                log.warning("stream.fenced", topic=self.topic, partition=p, reason=str(exc))
                continue
            saved.extend(letters.get(p, []))
        return saved

    def _feed_row(self, m: Message, text: str, event: Event, before: datetime | None) -> dict:
        """The `stream_feed` row of an event this partition took: its order time never goes below the partition's
        clock, so a late event is ordered where it arrived, as the embedded replay of the same stream would."""
        when = getattr(event, "event_time", None)
        order = before if when is None or (before is not None and before > when) else when
        return {"topic": self.topic, "partition": m.partition, "offset": m.offset, "order_time": order,
                "event_id": getattr(event, "event_id", None) or event.customer_id, "raw": text}

    def _save(self, plog: PartitionLog, position: int, letters: list[DeadLetter],
              accepted: tuple[int, PendingLines] | None, feed: list[dict]) -> None:
        part = None
        if accepted is not None:
            first, pending = accepted
            part = self.lines.write(part_seq(plog.partition, first), plog.checkpoint.source, pending.take())
        cp = plog.checkpoint
        cp.position, cp.watermark = max(cp.position, position), plog.clock.now()
        try:
            self.checkpoints.save(cp, (self.states[c] for c in plog.dirty),
                                  (self.profiles[c] for c in plog.dirty_profiles), letters, part, feed=feed,
                                  epoch=plog.epoch)
        except Fenced:
            if part is not None:
                self.lines.path(part.seq).unlink(missing_ok=True)  # ours, never committed
            self.revoke({plog.partition})
            stored = self.checkpoints.load_states()  # what the batch did to its customers was not saved: undo it
            for cid in plog.dirty:
                if cid in stored:
                    self.states[cid] = stored[cid]
                else:
                    self.states.pop(cid, None)
            plog.dirty.clear()
            plog.dirty_profiles.clear()
            raise
        plog.dirty.clear()
        plog.dirty_profiles.clear()

    def positions(self) -> dict[int, int]:
        """Each held partition's next offset."""
        return {p: plog.checkpoint.position for p, plog in self.logs.items()}


class _Horizon:
    """The future-dated rule's clock in a worker: the wall clock, or the latest event time if that is later.

    Live, "the future" is past the wall clock. A watermark would not do: a partition's own stops when it falls
    quiet (and would then refuse everything after a long pause), and a worker meets its partitions' events in no
    global time order, so even the latest over them lags the events of a partition read first. The scheduler's
    replay of what the workers accepted is in time order, on the watermark, as the embedded runtime's is."""

    def __init__(self, clock: WatermarkClock) -> None:
        self.clock = clock

    def now(self) -> datetime:
        """The later of the wall clock and the latest event time seen."""
        wall, seen = datetime.now(UTC), self.clock.now()
        return wall if seen is None or wall > seen else seen


def stream_watermark(engine: Engine, topic: str) -> datetime | None:
    """The stream's clock: the minimum over the topic's partitions of each one's latest event time (None until
    every partition that has a checkpoint has a watermark)."""
    prefix = source_key(topic, 0)[:-1]
    marks = [cp.watermark for cp in CheckpointStore(engine).load_all() if cp.source.startswith(prefix)]
    if not marks or any(m is None for m in marks):
        return None
    return min(marks)


def dead_letter_message(letter: DeadLetter) -> tuple[bytes, bytes]:
    """A dead letter as the `<topic>.deadletter` message: keyed by where it was found, the reason and the raw
    value (as text when it is UTF-8)."""
    raw = letter.raw
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raw = raw.hex()
    value = {"source": letter.source, "position": letter.position, "where": letter.where, "reason": letter.reason,
             "raw": raw}
    return f"{letter.source}@{letter.position}".encode(), json.dumps(value, default=str).encode()
