"""The delivery ledger: every decision under its idempotency key, once — and the outbox delivery sends from.

Recording is insert-or-ignore on the unique key, so recording the same decisions again (a replay, a restart, a
sweep that finds the same occurrence) stores nothing new; the first verdict on a key stands. Delivery then claims
queued rows (one process each, on PostgreSQL) and marks them sent, failed, aborted or a render error. SQLAlchemy
Core only: SQLite by default, PostgreSQL when several processes share the ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, Float, Integer, String, and_, bindparam, func, or_, select, update

from engine.campaigns.candidates import Candidate, Decision, Verdict
from engine.db import UtcDateTime, delivery_ledger, insert_new
from engine.errors import NudgeError

_KEYS_PER_QUERY = 500  # bound parameters per IN (...) query


@dataclass(frozen=True)
class Entry:
    """One ledger row: the candidate, its verdict and what delivery did with it."""

    id: int
    key: str
    campaign: str
    customer_id: str
    occurrence: str
    category: str | None
    candidate_at: datetime
    reason: str
    verdict: Verdict
    decided_at: datetime
    not_before: datetime | None
    deferred: str | None
    detail: str
    channel: str
    offer_code: str | None
    face_value: float | None
    provider_id: str | None
    sent_at: datetime | None
    attempts: int
    updated_at: datetime

    @property
    def candidate(self) -> Candidate:
        """The candidate the row was recorded for."""
        return Candidate(self.campaign, self.customer_id, self.occurrence, self.candidate_at, self.reason,
                         self.category)

    @property
    def due(self) -> datetime:
        """When the message may go: not_before, else the decision time."""
        return self.not_before or self.decided_at


@dataclass(frozen=True)
class Mark:
    """A verdict for a queued row, with what delivery learnt (None: leave the column as it is)."""

    key: str
    verdict: Verdict
    at: datetime
    detail: str = ""
    offer_code: str | None = None
    face_value: float | None = None
    provider_id: str | None = None
    attempts: int | None = None

    def params(self) -> dict:
        """The bound parameters of the mark statement."""
        return {"m_key": self.key, "m_verdict": self.verdict.value, "m_at": self.at, "m_detail": self.detail,
                "m_sent_at": self.at if self.verdict is Verdict.SENT else None, "m_offer_code": self.offer_code,
                "m_face_value": self.face_value, "m_provider_id": self.provider_id, "m_attempts": self.attempts}


_t = delivery_ledger.c
# One statement for every mark, so a batch is one executemany; only a queued row moves.
_MARK = (update(delivery_ledger)
         .where(and_(_t.key == bindparam("m_key"), _t.verdict == Verdict.QUEUED.value))
         .values(verdict=bindparam("m_verdict"), updated_at=bindparam("m_at"), detail=bindparam("m_detail"),
                 sent_at=func.coalesce(bindparam("m_sent_at", type_=UtcDateTime), _t.sent_at),
                 offer_code=func.coalesce(bindparam("m_offer_code", type_=String), _t.offer_code),
                 face_value=func.coalesce(bindparam("m_face_value", type_=Float), _t.face_value),
                 provider_id=func.coalesce(bindparam("m_provider_id", type_=String), _t.provider_id),
                 attempts=func.coalesce(bindparam("m_attempts", type_=Integer), _t.attempts)))


@dataclass
class Claim:
    """Rows one deliverer holds: marked and released together by `commit`."""

    conn: Connection
    entries: list[Entry]

    def commit(self, marks: Iterable[Mark]) -> None:
        """Mark the claimed rows and release them (a row left unmarked is queued again)."""
        params = [m.params() for m in marks]
        if params:
            self.conn.execute(_MARK, params)
        self.conn.commit()


_due_at = func.coalesce(_t.not_before, _t.decided_at)  # Entry.due


def _due_query(now: datetime):
    """Queued rows decided by `now` whose not_before has come (or that have none), oldest due first.

    Decided by `now`: a backtest resumed after a crash replays from its checkpoint, behind decisions the killed run
    had recorded; those wait for the replay's clock to reach them (sent earlier, a message went before the moment
    that decided it, and an offer it issued met purchases the uninterrupted run's did not)."""
    return (select(delivery_ledger)
            .where(_t.verdict == Verdict.QUEUED.value, _t.decided_at <= now,
                   or_(_t.not_before.is_(None), _t.not_before <= now))
            .order_by(_due_at, _t.id))


def _entry(row) -> Entry:
    values = dict(row._mapping)
    values["verdict"] = Verdict(values["verdict"])
    return Entry(**values)


class Ledger:
    """The `delivery_ledger` table of an engine's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        delivery_ledger.create(engine, checkfirst=True)

    def record(self, decisions: Iterable[Decision], channel_of: Mapping[str, str]) -> int:
        """Insert the decisions (channel by campaign name), ignoring keys already present: the rows inserted."""
        rows = []
        for d in decisions:
            c = d.candidate
            try:
                channel = channel_of[c.campaign]
            except KeyError:
                raise NudgeError(f"ledger: no channel for campaign {c.campaign!r} (key {c.key})") from None
            rows.append({
                "key": c.key, "campaign": c.campaign, "customer_id": c.customer_id, "occurrence": c.occurrence,
                "category": c.category, "candidate_at": c.at, "reason": c.reason, "verdict": d.verdict.value,
                "decided_at": d.decided_at, "not_before": d.not_before, "deferred": d.deferred, "detail": d.detail,
                "channel": channel, "offer_code": None, "face_value": None, "provider_id": None, "sent_at": None,
                "attempts": 0, "updated_at": d.decided_at,
            })
        if not rows:
            return 0
        rows.sort(key=lambda r: r["key"])  # one lock order: two processes recording the same keys cannot deadlock
        with self.engine.begin() as conn:
            return insert_new(conn, delivery_ledger, rows)

    def queued(self, now: datetime, limit: int | None = None) -> list[Entry]:
        """Queued rows decided by `now` whose not_before has come (or that have none), oldest due first."""
        query = _due_query(now)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query)]

    @contextmanager
    def claim(self, now: datetime, limit: int, after: Entry | None = None) -> Iterator[Claim]:
        """Up to `limit` of the `queued` rows (those after `after`), locked until `Claim.commit` marks them.

        On PostgreSQL the rows are locked FOR UPDATE SKIP LOCKED, so another process claiming at the same time
        passes them over and each row is sent by one process; leaving without `commit` (an error, a crash) rolls
        back and leaves them queued. SQLite has no row locks: one process sends from its file.
        """
        query = _due_query(now).limit(limit).with_for_update(skip_locked=True)
        if after is not None:
            query = query.where(or_(_due_at > after.due, and_(_due_at == after.due, _t.id > after.id)))
        with self.engine.connect() as conn:
            conn.begin()
            yield Claim(conn, [_entry(r) for r in conn.execute(query)])

    def mark(self, key: str, verdict: Verdict, at: datetime, detail: str = "", *, offer_code: str | None = None,
             face_value: float | None = None, provider_id: str | None = None, attempts: int | None = None) -> bool:
        """Set a queued row's verdict (SENT also sets sent_at); False when the row is no longer queued.

        Only queued rows change: a row already sent stays sent, so a late or repeated mark cannot undo it.
        """
        mark = Mark(key, verdict, at, detail, offer_code, face_value, provider_id, attempts)
        with self.engine.begin() as conn:
            changed = conn.execute(_MARK, [mark.params()]).rowcount
            if not changed and conn.execute(select(delivery_ledger.c.id)
                                            .where(delivery_ledger.c.key == key)).first() is None:
                raise NudgeError(f"ledger: no entry with key {key!r}")
        return bool(changed)

    def mark_many(self, marks: Iterable[Mark]) -> None:
        """`mark` for many rows in one transaction (rows no longer queued, or unknown keys, stay as they are)."""
        params = [m.params() for m in marks]
        if params:
            with self.engine.begin() as conn:
                conn.execute(_MARK, params)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per campaign and verdict value."""
        t = delivery_ledger.c
        query = select(t.campaign, t.verdict, func.count()).group_by(t.campaign, t.verdict)
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for campaign, verdict, n in conn.execute(query):
                out.setdefault(campaign, {})[verdict] = n
        return out

    def deferrals(self) -> dict[str, dict[str, int]]:
        """Rows that had to wait, per campaign and reason ("quiet_hours", "night"), whatever became of them."""
        t = delivery_ledger.c
        query = (select(t.campaign, t.deferred, func.count()).where(t.deferred.is_not(None))
                 .group_by(t.campaign, t.deferred))
        out: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for campaign, deferred, n in conn.execute(query):
                out.setdefault(campaign, {})[deferred] = n
        return out

    def entries(self, campaign: str | None = None, customer_id: str | None = None,
                verdict: Verdict | None = None, limit: int | None = None) -> list[Entry]:
        """Rows in the order recorded, optionally of one campaign, customer or verdict."""
        t = delivery_ledger.c
        query = select(delivery_ledger).order_by(t.id)
        if campaign is not None:
            query = query.where(t.campaign == campaign)
        if customer_id is not None:
            query = query.where(t.customer_id == customer_id)
        if verdict is not None:
            query = query.where(t.verdict == verdict.value)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(query)]

    def entry(self, key: str) -> Entry | None:
        """The row with this key, if recorded."""
        with self.engine.connect() as conn:
            row = conn.execute(select(delivery_ledger).where(delivery_ledger.c.key == key)).first()
        return None if row is None else _entry(row)

    def keys(self, verdict: Verdict | None = None) -> set[str]:
        """The keys recorded, optionally only those with this verdict."""
        t = delivery_ledger.c
        query = select(t.key) if verdict is None else select(t.key).where(t.verdict == verdict.value)
        with self.engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of these keys are recorded already: drop them before arbitration, so caps count each once."""
        return set(self.decided(keys))

    def decided(self, keys: Iterable[str]) -> dict[str, datetime]:
        """When each of these keys that is recorded was decided."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, datetime] = {}
        t = delivery_ledger.c
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), _KEYS_PER_QUERY):
                chunk = wanted[i:i + _KEYS_PER_QUERY]
                rows = conn.execute(select(t.key, t.decided_at).where(t.key.in_(chunk)))
                found.update((r.key, r.decided_at) for r in rows)
        return found
