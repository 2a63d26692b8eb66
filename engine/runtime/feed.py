"""The scheduler's view of the workers' work: the events they accepted, replayed on the stream's clock.

The Kafka workers keep customer state per partition, each partition at its own pace; the campaign jobs need one
clock and one state as of each fire time, as the embedded runtime has them. So the scheduler does not read the
workers' states (a partition ahead of the others would leak its future into a sweep): it replays the workers'
accepted events (`stream_feed`, saved with each partition's checkpoint) into a state replica of its own, through
the same `EmbeddedRuntime.replay` and campaign observer as a backtest. Rows are released to the replay only
once every partition's clock has passed them (the stream watermark), or all of them once the workers have
caught up with the topic, so the replay meets the events in time order, as the embedded runtime does.

What was released is recorded (`feed_release`, in the replica's database), so a restarted scheduler reads
the same rows at the same positions however late a partition's rows arrived.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, func, insert, or_, select

from engine.db import feed_release, stream_feed
from engine.live.wire import WireDecoder
from engine.runtime.stream import source_key
from engine.sources import Record
from engine.store.checkpoints import CheckpointStore

PAGE = 5_000  # feed rows read per query


@dataclass(frozen=True)
class Release:
    """One release: per partition, the offsets after `low` up to `high`."""

    seq: int
    ranges: Mapping[int, tuple[int, int]]  # partition -> (low, high]
    events: int
    first: int  # the replay position of its first row


class StreamFeed:
    """A replayable source over the workers' accepted events of `topic` (see the module's doc)."""

    def __init__(self, shared: Engine, local: Engine, topic: str) -> None:
        self.shared, self.local, self.topic = shared, local, topic
        self.key = self.key_of(topic)
        self.decoder = WireDecoder()
        self.releases = self._load()

    @staticmethod
    def key_of(topic: str) -> str:
        """The replay's source key for `topic`'s feed."""
        return f"feed:{topic}"

    def __len__(self) -> int:
        last = self.releases[-1] if self.releases else None
        return 0 if last is None else last.first + last.events

    def highs(self) -> dict[int, int]:
        """Per partition, the last offset released so far."""
        highs: dict[int, int] = {}
        for r in self.releases:
            for p, (_, high) in r.ranges.items():
                highs[p] = high
        return highs

    def release(self, until: datetime | None, everything: bool = False) -> int:
        """Release the rows ordered before `until` (or, with `everything`, all there are); how many were new."""
        t = stream_feed.c
        query = select(t.partition, func.max(t.offset)).where(t.topic == self.topic).group_by(t.partition)
        if not everything:
            if until is None:
                return 0
            query = query.where(or_(t.order_time.is_(None), t.order_time < until))
        before = self.highs()
        with self.shared.connect() as conn:
            found = {p: high for p, high in conn.execute(query) if high > before.get(p, -1)}
            if not found:
                return 0
            ranges = {p: (before.get(p, -1), high) for p, high in found.items()}
            events = conn.execute(select(func.count()).select_from(stream_feed)
                                  .where(t.topic == self.topic, _within(ranges))).scalar_one()
        seq = self.releases[-1].seq + 1 if self.releases else 0
        with self.local.begin() as conn:
            conn.execute(insert(feed_release), [{"topic": self.topic, "seq": seq, "partition": p, "high": high,
                                                 "events": events} for p, (_, high) in ranges.items()])
        self.releases.append(Release(seq, ranges, events, len(self)))
        return events

    def records(self, start: int = 0) -> Iterator[Record]:
        """The released rows from replay position `start` on: each release in turn, its rows in time order."""
        t = stream_feed.c
        for r in self.releases:
            if r.first + r.events <= start:
                continue
            skip = max(0, start - r.first)
            query = (select(t.partition, t.offset, t.raw).where(t.topic == self.topic, _within(r.ranges))
                     .order_by(t.order_time.asc().nulls_first(), t.event_id, t.partition, t.offset))
            while skip < r.events:
                with self.shared.connect() as conn:
                    rows = conn.execute(query.offset(skip).limit(PAGE)).all()
                if not rows:
                    break
                for i, (partition, offset, raw) in enumerate(rows):
                    yield Record(r.first + skip + i, raw, f"{self.topic}[{partition}] offset {offset}")
                skip += len(rows)

    def _load(self) -> list[Release]:
        t = feed_release.c
        with self.local.connect() as conn:
            rows = conn.execute(select(t.seq, t.partition, t.high, t.events).where(t.topic == self.topic)
                                .order_by(t.seq, t.partition)).all()
        releases: list[Release] = []
        highs: dict[int, int] = {}
        by_seq: dict[int, list] = {}
        for row in rows:
            by_seq.setdefault(row.seq, []).append(row)
        first = 0
        for seq in sorted(by_seq):
            group = by_seq[seq]
            ranges = {row.partition: (highs.get(row.partition, -1), row.high) for row in group}
            highs.update({p: high for p, (_, high) in ranges.items()})
            releases.append(Release(seq, ranges, group[0].events, first))
            first += group[0].events
        return releases


def _within(ranges: Mapping[int, tuple[int, int]]):
    t = stream_feed.c
    return or_(*(and_(t.partition == p, t.offset > low, t.offset <= high) for p, (low, high) in ranges.items()))


@dataclass(frozen=True)
class Progress:
    """Where the workers are on the topic: the stream's clock, and whether they have read all there is."""

    watermark: datetime | None  # the minimum over the topic's non-empty partitions of each one's clock
    caught_up: bool  # every partition's saved position has reached its end offset
    behind: int  # messages on the topic not yet saved by a worker


def progress(shared: Engine, topic: str, end_offsets: Mapping[int, int]) -> Progress:
    """The workers' progress on `topic`, from their checkpoints and the topic's end offsets."""
    saved = {cp.source: cp for cp in CheckpointStore(shared).load_all()}
    marks: list[datetime | None] = []
    behind = 0
    for p, end in end_offsets.items():
        if end <= 0:
            continue
        cp = saved.get(source_key(topic, p))
        marks.append(None if cp is None else cp.watermark)
        behind += max(0, end - (0 if cp is None else cp.position))
    watermark = None if not marks or any(m is None for m in marks) else min(marks)
    return Progress(watermark, bool(marks) and behind == 0, behind)


class TopicEnds:
    """The topic's end offsets, read with one kafka-python consumer outside any group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                      request_timeout_ms=30_000)

    def __call__(self) -> dict[int, int]:
        """Each partition's end offset now."""
        from kafka import TopicPartition

        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        ends = self.consumer.end_offsets([TopicPartition(self.topic, p) for p in sorted(partitions)])
        return {tp.partition: offset for tp, offset in ends.items()}

    def close(self) -> None:
        """Close the consumer."""
        self.consumer.close()
