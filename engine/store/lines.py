"""The line store: every purchase the engine accepted, append-only, so a refit reads what was ingested.

Parquet parts, one row per purchase (its lines a list of structs; a service use a row with none):
columnar and compressed, so a refit reads the 1.47M Complete Journey lines in about a second, and a part
is one immutable file, written once — to a temporary name, fsynced, renamed — then committed by the
checkpoint transaction that lists it in the `line_part` table. A part file not listed there was written
after the last committed checkpoint: the writer discards it on resume, so the replay that redoes those
records writes their lines once. Retention drops whole parts, oldest first.

    <home>/lines/part-000001.parquet   purchases accepted between two checkpoints, in acceptance order
    <home>/lines/part-000002.parquet
    <home>/lines/.part-000003.tmp      being written (removed on resume)

A row keeps everything `Purchase` holds, the event time's zone included, so a stored purchase is the
validated event again (`purchases`) and states at any earlier time can be refolded with `apply`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine, select, update

from engine.db import line_part
from engine.durable import fsync_dir
from engine.errors import NudgeError
from engine.events import Purchase

LINE = pa.struct([("product_id", pa.string()), ("category", pa.list_(pa.string())), ("quantity", pa.int64()),
                  ("amount", pa.float64())])
SCHEMA = pa.schema([
    ("event_id", pa.string()), ("customer_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
    ("zone", pa.string()),  # the zone's key, or a fixed offset like "+09:00"
    ("store_id", pa.string()), ("affiliate", pa.string()), ("channel", pa.string()), ("lpay", pa.bool_()),
    ("amount", pa.float64()), ("lines", pa.list_(LINE)),
])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Part numbers below this are the embedded runtime's; a Kafka worker numbers a partition's parts in a range of
# its own above it (engine.runtime.stream.part_seq), so writers on one store never pick the same number.
PART_SPACE = 1 << 40
_MICROSECOND = timedelta(microseconds=1)


def zone_name(when: datetime) -> str:
    """The name a stored event time keeps its zone by: the zone's key, or its fixed offset."""
    key = getattr(when.tzinfo, "key", None)
    if key is not None:
        return key
    offset = when.utcoffset() or timedelta(0)
    sign, rest = ("-", -offset) if offset < timedelta(0) else ("+", offset)
    hours, seconds = divmod(int(rest.total_seconds()), 3600)
    return f"{sign}{hours:02d}:{seconds // 60:02d}"


def zone_of(name: str) -> tzinfo:
    """The zone `zone_name` named."""
    if name[:1] in "+-" and name[1:3].isdigit():
        offset = timedelta(hours=int(name[1:3]), minutes=int(name[4:6]))
        return timezone(-offset if name[0] == "-" else offset)
    return ZoneInfo(name)


def purchases_table(purchases: Iterable[Purchase]) -> pa.Table:
    """Purchases as a table of `SCHEMA`, one row each, in the given order."""
    pending = PendingLines()
    for purchase in purchases:
        pending.add(purchase)
    return pending.take()


class PendingLines:
    """Accepted purchases on their way to a part, kept as plain columns.

    Not as purchase objects: a checkpoint's worth of them (20,000 baskets, 190,000 line tuples) outlives the
    young generation, and the garbage collector then walks them again and again (it doubled the replay's time).
    """

    def __init__(self) -> None:
        self._rows: list[tuple] = []  # per purchase: the SCHEMA fields before the lines, as plain values
        self._counts: list[int] = []
        self._items: list[list] = [[], [], [], []]  # per line: product id, category path, quantity, amount

    def add(self, purchase: Purchase) -> None:
        """Keep one accepted purchase."""
        when = purchase.event_time
        self._rows.append((purchase.event_id, purchase.customer_id, (when - _EPOCH) // _MICROSECOND,
                           zone_name(when), purchase.store_id, purchase.affiliate, purchase.channel, purchase.lpay,
                           purchase.amount))
        lines = purchase.lines
        self._counts.append(len(lines))
        pid, category, quantity, amount = self._items
        for line in lines:
            pid.append(line[0])
            category.append(line[1])
            quantity.append(line[2])
            amount.append(line[3])

    def take(self) -> pa.Table:
        """Every purchase kept since the last `take`, in order, as one table; the buffer is empty after."""
        rows, counts, (pid, category, quantity, amount) = self._rows, self._counts, self._items
        self.__init__()
        paths: dict[tuple[str, ...], int] = {}  # few distinct paths, many lines: each path is spelled out once
        codes = [paths.setdefault(path, len(paths)) for path in category]
        categories = pa.array(list(paths), pa.list_(pa.string())).take(pa.array(codes, pa.int32()))
        struct = pa.StructArray.from_arrays([pa.array(pid, pa.string()), categories, pa.array(quantity, pa.int64()),
                                             pa.array(amount, pa.float64())], fields=list(LINE))
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        heads = list(SCHEMA)[:-1]
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in heads]
        arrays = [pa.array(values, pa.int64() if f.name == "event_time" else f.type).cast(f.type)
                  for values, f in zip(columns, heads, strict=True)]
        return pa.Table.from_arrays([*arrays, pa.ListArray.from_arrays(pa.array(offsets), struct)], schema=SCHEMA)


def purchases(table: pa.Table) -> Iterator[Purchase]:
    """The stored purchases again, in stored order (not re-validated: they were on the way in)."""
    if table.num_rows == 0:
        return
    lines = table.column("lines").combine_chunks()
    flat = lines.flatten()
    paths: dict[tuple, tuple[str, ...]] = {}  # one tuple per distinct path, as the sources share them
    category = [paths.setdefault(tuple(c), tuple(c)) for c in flat.field("category").to_pylist()]
    items = list(zip(flat.field("product_id").to_pylist(), category, flat.field("quantity").to_pylist(),
                     flat.field("amount").to_pylist(), strict=True))
    bounds = lines.offsets.to_numpy().tolist()
    columns = [table.column(c).to_pylist() for c in ("event_id", "customer_id", "zone", "store_id", "affiliate",
                                                     "channel", "lpay", "amount")]
    columns.append(table.column("event_time").cast(pa.int64()).to_pylist())
    zones = {name: zone_of(name) for name in set(columns[2])}
    rows = zip(*columns, strict=True)
    for i, (event_id, customer_id, zone, store_id, affiliate, channel, lpay, amount, micros) in enumerate(rows):
        when = (_EPOCH + timedelta(microseconds=micros)).astimezone(zones[zone])
        yield Purchase.model_construct(event_id=event_id, customer_id=customer_id, event_time=when,
                                       store_id=store_id, affiliate=affiliate, channel=channel, lpay=lpay,
                                       lines=tuple(items[bounds[i]:bounds[i + 1]]), amount=amount)


def before(table: pa.Table, until: datetime) -> pa.Table:
    """The rows of purchases dated before `until`."""
    return table.filter(pc.less(table.column("event_time"), pa.scalar(until, SCHEMA.field("event_time").type)))


def since(table: pa.Table, until: datetime) -> pa.Table:
    """The rows of purchases dated at or after `until`."""
    return table.filter(pc.greater_equal(table.column("event_time"),
                                         pa.scalar(until, SCHEMA.field("event_time").type)))


@dataclass(frozen=True)
class LinePart:
    """One written part: its sequence number, what it holds, and the span of its event times."""

    seq: int
    source: str
    purchases: int
    lines: int
    first_time: datetime
    last_time: datetime

    def row(self, now: datetime) -> dict:
        """The part's `line_part` row, committed with the checkpoint."""
        return {"seq": self.seq, "source": self.source, "purchases": self.purchases, "lines": self.lines,
                "first_time": self.first_time, "last_time": self.last_time, "dropped": False, "written_at": now}


class LineStore:
    """Parts under `root`, committed through the engine's database (see the module docstring)."""

    def __init__(self, root: Path, engine: Engine) -> None:
        self.root, self.engine = Path(root), engine

    def path(self, seq: int) -> Path:
        """Where part `seq` lives."""
        return self.root / f"part-{seq:06d}.parquet"

    def parts(self) -> list[LinePart]:
        """The committed parts that hold lines, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(line_part).where(~line_part.c.dropped).order_by(line_part.c.seq))
            return [LinePart(r.seq, r.source, r.purchases, r.lines, r.first_time, r.last_time)
                    for r in rows]

    def committed(self) -> list[int]:
        """The sequence numbers of the parts that hold lines, oldest first."""
        return [part.seq for part in self.parts()]

    def dropped_until(self) -> datetime | None:
        """The latest event time of a part retention dropped: lines up to it may be missing."""
        with self.engine.connect() as conn:
            times = list(conn.execute(select(line_part.c.last_time).where(line_part.c.dropped)).scalars())
        return max(times) if times else None

    def discard_uncommitted(self, owned: Callable[[int], bool] | None = None) -> None:
        """Delete part files no committed checkpoint lists, and unfinished writes: a writer's first step.

        Only the parts whose numbers `owned` accepts (default: the embedded runtime's), so one writer never
        deletes what another is writing."""
        if not self.root.is_dir():
            return
        owned = owned or (lambda seq: seq < PART_SPACE)
        keep = {self.path(seq).name for seq in self.committed()}
        for path in self.root.iterdir():
            name = path.name
            if not (name.startswith(".part-") or name.startswith("part-")):
                continue
            digits = name.removeprefix(".").removeprefix("part-").split(".")[0]
            if digits.isdigit() and owned(int(digits)) and (name.startswith(".part-") or name not in keep):
                path.unlink()

    def next_seq(self) -> int:
        """The sequence number of the next part (dropped ones keep theirs)."""
        with self.engine.connect() as conn:
            last = conn.execute(select(line_part.c.seq).order_by(line_part.c.seq.desc()).limit(1)).scalar()
        return (last or 0) + 1

    def write(self, seq: int, source: str, table: pa.Table) -> LinePart | None:
        """Write purchases (a `SCHEMA` table) as part `seq` (tmp, fsync, link: an existing part is never replaced);
        it counts once its checkpoint commits. Nothing is written for no purchases."""
        if table.num_rows == 0:
            return None
        self.root.mkdir(parents=True, exist_ok=True)
        final, tmp = self.path(seq), self.root / f".part-{seq:06d}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        try:  # never over another writer's part of the same number (a worker replaced while it stalled)
            os.link(tmp, final)
        except FileExistsError:
            raise NudgeError(f"line store {self.root}: part {final.name} is written already, by another writer") \
                from None
        finally:
            tmp.unlink()
        fsync_dir(self.root)
        times = table.column("event_time")
        lines = pc.sum(pc.list_value_length(table.column("lines"))).as_py() or 0
        return LinePart(seq, source, table.num_rows, lines, pc.min(times).as_py().astimezone(UTC),
                        pc.max(times).as_py().astimezone(UTC))

    def read(self) -> pa.Table:
        """Every kept purchase, in the order accepted."""
        paths = [self.path(seq) for seq in self.committed()]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise NudgeError(f"line store {self.root}: committed part {missing[0].name} is missing")
        if not paths:
            return SCHEMA.empty_table()
        return pa.concat_tables([pq.read_table(p, schema=SCHEMA) for p in paths])

    def drop_before(self, cutoff: datetime) -> int:
        """Drop the parts whose every purchase is dated before `cutoff`; how many were dropped."""
        with self.engine.begin() as conn:
            seqs = list(conn.execute(select(line_part.c.seq).where(~line_part.c.dropped,
                                                                   line_part.c.last_time < cutoff)).scalars())
            if seqs:
                conn.execute(update(line_part).where(line_part.c.seq.in_(seqs)).values(dropped=True))
        for seq in seqs:  # after the commit: a crash in between leaves files `discard_uncommitted` removes
            self.path(seq).unlink(missing_ok=True)
        return len(seqs)


