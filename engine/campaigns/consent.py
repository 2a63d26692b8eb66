"""Consent per customer × channel, and the Korean advertising law (Information and Communications Network Act,
Article 50) as the rules arbitration and delivery ask.

- Advertising needs the customer's prior advertising consent for that channel; transactional messages do not.
- 21:00–08:00 customer-local, advertising also needs the separate night consent for that channel, except by
  email (the enforcement decree exempts it). A message blocked only by the night waits until 08:00 local.
- The sender tells each consenting customer their consent status every two years (`reconfirmations_due`);
  no answer keeps the consent, so the notice is recorded as a confirmation (`Reconfirmation.confirmed`).

Changes are appended to one table; the consent in effect at `now` is the latest change at or before it, and a
grant and a withdrawal at the same instant resolve to the withdrawal.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, select

from engine.campaigns.schema import CHANNELS
from engine.db import consent_change, insert_new
from engine.errors import ConsentError

Purpose = Literal["advertising", "night"]
PURPOSES: tuple[str, ...] = ("advertising", "night")
Kind = Literal["advertising", "transactional"]
NIGHT_START = time(21)
NIGHT_END = time(8)
NIGHT_EXEMPT: frozenset[str] = frozenset({"email"})
RECONFIRM_YEARS = 2
CSV_FIELDS = ("customer_id", "channel", "purpose", "granted", "at", "source")


@dataclass(frozen=True)
class ConsentChange:
    """A customer granting or withdrawing one purpose of consent on one channel, at a time, from a source."""

    customer_id: str
    channel: str
    purpose: Purpose
    granted: bool
    at: datetime
    source: str

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ConsentError(f"consent of customer {self.customer_id}: channel {self.channel!r} is not one "
                               f"of {list(CHANNELS)}")
        if self.purpose not in PURPOSES:
            raise ConsentError(f"consent of customer {self.customer_id}: purpose {self.purpose!r} is not one "
                               f"of {list(PURPOSES)}")
        if self.at.tzinfo is None:
            raise ConsentError(f"consent of customer {self.customer_id}: time {self.at.isoformat()} has no zone")


def is_night(local: datetime) -> bool:
    """Whether a customer-local time falls in the night of Article 50 (21:00 to 08:00)."""
    t = local.time()
    return t >= NIGHT_START or t < NIGHT_END


def night_end(local: datetime) -> datetime:
    """The 08:00 local that ends the night `local` is in (the same day before 08:00, else the next day)."""
    day = local.date() if local.time() < NIGHT_END else local.date() + timedelta(days=1)
    return datetime.combine(day, NIGHT_END, tzinfo=local.tzinfo)


def _years_later(when: datetime, years: int) -> datetime:
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February: the anniversary is the 28th
        return when.replace(year=when.year + years, day=28)


@dataclass(frozen=True)
class Reconfirmation:
    """A customer owed the two-yearly notice of their consent status."""

    customer_id: str
    consents: tuple[ConsentChange, ...]  # the customer's consent in effect, granted and withdrawn
    last_confirmed: datetime  # the oldest grant in effect: the one the law's two years run from
    due_at: datetime

    @property
    def occurrence(self) -> str:
        """The notice's occurrence for its idempotency key: one notice per due date."""
        return f"reconfirm@{self.due_at.date().isoformat()}"

    def confirmed(self, at: datetime, source: str = "reconfirmation notice") -> list[ConsentChange]:
        """The changes that record the notice as sent at `at`: each grant in effect, confirmed again."""
        return [ConsentChange(c.customer_id, c.channel, c.purpose, True, at, source)
                for c in self.consents if c.granted]


class ConsentBook:
    """The consent in effect at one time: the latest change per customer × channel × purpose."""

    def __init__(self, latest: Mapping[tuple[str, str, str], ConsentChange], now: datetime) -> None:
        self._latest = dict(latest)
        self.now = now
        self._by_customer: dict[str, list[ConsentChange]] = {}  # one pass, so a sweep over everyone stays linear
        for (cid, _, _), change in self._latest.items():
            self._by_customer.setdefault(cid, []).append(change)
        for changes in self._by_customer.values():
            changes.sort(key=lambda c: (c.channel, c.purpose))

    @classmethod
    def of(cls, changes: Iterable[ConsentChange], now: datetime) -> ConsentBook:
        """The book of `changes` at `now` (changes after `now` are ignored)."""
        latest: dict[tuple[str, str, str], ConsentChange] = {}
        for c in changes:
            if c.at > now:
                continue
            key = (c.customer_id, c.channel, c.purpose)
            held = latest.get(key)
            # Later wins; at the same instant a withdrawal wins, so a tie can never message someone.
            if held is None or c.at > held.at or (c.at == held.at and held.granted and not c.granted):
                latest[key] = c
        return cls(latest, now)

    def granted(self, customer_id: str, channel: str, purpose: Purpose) -> bool:
        """Whether the customer's latest change of this purpose on this channel is a grant."""
        change = self._latest.get((customer_id, channel, purpose))
        return change is not None and change.granted

    def _advertising(self, customer_id: str, channel: str) -> str | None:
        change = self._latest.get((customer_id, channel, "advertising"))
        if change is None:
            return f"no advertising consent on {channel}"
        if not change.granted:
            return f"advertising consent on {channel} withdrawn at {change.at.isoformat()} ({change.source})"
        return None

    def _night(self, customer_id: str, channel: str, local: datetime) -> str | None:
        if channel in NIGHT_EXEMPT or not is_night(local) or self.granted(customer_id, channel, "night"):
            return None
        return f"night (21:00-08:00 local, {local.strftime('%H:%M')}) without night consent on {channel}"

    def allows(self, customer_id: str, channel: str, kind: Kind, local: datetime) -> str | None:
        """None when a message of `kind` may go to the customer on `channel` at customer-local `local`, else why not."""
        if kind == "transactional":
            return None
        return self._advertising(customer_id, channel) or self._night(customer_id, channel, local)

    def night_deferral(self, customer_id: str, channel: str, kind: Kind, local: datetime) -> datetime | None:
        """The local 08:00 a message may go at when only the night rule blocks it now; None when it does not."""
        if kind == "transactional" or self._advertising(customer_id, channel) is not None:
            return None
        if self._night(customer_id, channel, local) is None:
            return None
        return night_end(local)

    def customer(self, customer_id: str) -> list[ConsentChange]:
        """The customer's consent in effect, by channel and purpose."""
        return list(self._by_customer.get(customer_id, ()))

    def reconfirmation_due_at(self, customer_id: str) -> datetime | None:
        """When the customer is owed the two-yearly notice: two years after the oldest grant in effect."""
        grants = [c.at for c in self.customer(customer_id) if c.granted]
        return _years_later(min(grants), RECONFIRM_YEARS) if grants else None

    def reconfirmations_due(self, now: datetime | None = None) -> list[Reconfirmation]:
        """Customers whose oldest grant in effect was given or confirmed two years or more before `now`."""
        now = self.now if now is None else now
        due = []
        for cid in sorted(self._by_customer):
            due_at = self.reconfirmation_due_at(cid)
            if due_at is not None and due_at <= now:
                changes = self.customer(cid)
                oldest = min(c.at for c in changes if c.granted)
                due.append(Reconfirmation(cid, tuple(changes), oldest, due_at))
        return due


class ConsentStore:
    """Consent changes in the engine's database (table `consent_change`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, changes: Iterable[ConsentChange]) -> int:
        """Append `changes` in one transaction; ones already stored are skipped. Returns rows added."""
        rows = [{"customer_id": c.customer_id, "channel": c.channel, "purpose": c.purpose, "granted": c.granted,
                 "at": c.at, "source": c.source} for c in changes]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            return insert_new(conn, consent_change, rows)

    def changes(self, customer_id: str | None = None, until: datetime | None = None) -> list[ConsentChange]:
        """Stored changes (one customer's, or all; up to `until` when given) in time order."""
        t = consent_change.c
        query = select(t.customer_id, t.channel, t.purpose, t.granted, t.at, t.source).order_by(t.at, t.id)
        if customer_id is not None:
            query = query.where(t.customer_id == customer_id)
        if until is not None:
            query = query.where(t.at <= until)
        with self.engine.connect() as conn:
            return [ConsentChange(*row) for row in conn.execute(query)]

    def book(self, now: datetime) -> ConsentBook:
        """The consent in effect at `now`."""
        return ConsentBook.of(self.changes(until=now), now)


def read_csv(path: Path) -> list[ConsentChange]:
    """Consent changes from a CSV file with the columns of `CSV_FIELDS` (granted 1/0, at ISO 8601 with zone).

    Lines starting with "#" are comments (the synthetic files say so at the top). Raises ConsentError naming
    the file, line and field.
    """
    try:
        with path.open(newline="", encoding="utf-8") as f:
            numbered = [(n, line) for n, line in enumerate(f, start=1) if not line.startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConsentError(f"{path}: cannot read consent file: {exc}") from None
    reader = csv.DictReader(line for _, line in numbered)
    missing = [f for f in CSV_FIELDS if f not in (reader.fieldnames or [])]
    if missing:
        raise ConsentError(f"{path}: header: missing column(s) {missing} (got {reader.fieldnames})")
    # One physical line per row (no quoted newlines in these files), so row i sits on numbered[i + 1].
    return [_change(row, f"{path}:{numbered[i + 1][0]}") for i, row in enumerate(reader)]


def _change(row: dict[str, str], where: str) -> ConsentChange:
    granted = {"1": True, "true": True, "0": False, "false": False}.get((row["granted"] or "").strip().lower())
    if granted is None:
        raise ConsentError(f"{where}: granted: not 1/0 or true/false (got {row['granted']!r})")
    try:
        at = datetime.fromisoformat(row["at"])
    except (TypeError, ValueError):
        raise ConsentError(f"{where}: at: not an ISO 8601 time (got {row['at']!r})") from None
    if at.tzinfo is None:
        raise ConsentError(f"{where}: at: no zone offset (got {row['at']!r})")
    try:
        return ConsentChange(row["customer_id"], row["channel"], row["purpose"], granted, at,  # type: ignore[arg-type]
                             row["source"] or "import")
    except ConsentError as exc:
        raise ConsentError(f"{where}: {exc}") from None

