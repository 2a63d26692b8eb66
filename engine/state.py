"""Customer state and its `apply`: the pure core every runtime calls.

Everything a state holds is an integer, a min/max or a set, so applying the same events in any
order gives the same state, and an event already applied (same id, same content) changes nothing.
Money is kept in integer hundredths of the currency unit, days as 16-bit day numbers since
1970-01-01 of the purchase's local date (in the zone the source declared; 1970..2149), times as
UTC epoch seconds.

Interval statistics ("gaps") are over consecutive distinct purchase days and are derived from the
sorted days when asked (reads are rare, events are many); the variance uses ddof=1 (the sample
variance, as pandas' `Series.var()`), and needs at least two gaps.

A state stays small (the benchmark measures ≤ 4 KiB a Complete Journey customer without product
counts): applied events are one 64-bit word each — 40 bits of the event id's digest, 24 of the
content's — and days are 2 bytes.

A state pickles as {"schema": STATE_SCHEMA, "fields": {...}} so checkpoints survive new fields: an older
payload is migrated (schema 1, a tuple in slot order, is what checkpoints written before held), a newer
one refused.
"""

from __future__ import annotations

import itertools
import sys
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zlib import crc32

from engine.clock import EPOCH, day_number, zone_name
from engine.errors import ConflictingDuplicate, NudgeError, OutOfRange
from engine.events import (
    DIGEST,
    LEGACY_DIGEST,
    LINE_MIX,
    SERVICE_CATEGORY_PREFIX,
    Purchase,
    cents,
    content_key,
    legacy_content_key,
)
from engine.versions import check_schema

DEFAULT_NON_MERCHANDISE = frozenset({"FUEL", "MISCELLANEOUS"})


@dataclass(frozen=True)
class StatePolicy:
    """What `apply` needs to know beyond the event: which top categories are not item units."""

    # Quantities in these top categories are litres, cents or tickets, not items: Volume leaves them out.
    non_merchandise: frozenset[str] = field(default=DEFAULT_NON_MERCHANDISE)


DEFAULT_POLICY = StatePolicy()


MAX_DAY = 0xFFFF  # the last day an array('H') holds: 2149-06-06
_CONTENT_BITS = 24
_CONTENT_MASK = (1 << _CONTENT_BITS) - 1

# 1: a plain tuple in the slot order below (no zone, legacy content digest); 2: named fields, zone, digest.
STATE_SCHEMA = 2
_SCHEMA1_SLOTS = ("baskets", "categories", "customer_id", "days", "event_words", "first_ts", "last_ts",
                  "lpay_spend", "products", "spend", "units")


def _payload_fields(kind: str, payload: object, schema1: tuple[str, ...] | None) -> tuple[int, dict]:
    """The schema and the named fields of a pickled state payload, refusing a newer schema."""
    if isinstance(payload, dict) and "schema" in payload:
        schema, fields = payload["schema"], payload["fields"]
        check_schema(kind, schema, STATE_SCHEMA)
        return schema, dict(fields)
    if schema1 is not None and isinstance(payload, tuple) and len(payload) == len(schema1):
        return 1, dict(zip(schema1, payload, strict=True))
    if schema1 is None and isinstance(payload, tuple) and len(payload) == 2 and isinstance(payload[1], dict):
        return 1, dict(payload[1])  # the default pickle of a __slots__ class: (None, {slot: value})
    raise NudgeError(f"{kind}: unreadable pickled payload of type {type(payload).__name__}")


def _event_word(id_key: int, content: int) -> int:
    """One applied event as an unsigned 64-bit word: id digest (high 40 bits), content digest (low 24)."""
    return ((id_key & 0xFFFFFFFFFF) << _CONTENT_BITS) | (content & _CONTENT_MASK)


def _find_event(events: array, id_key: int) -> int:
    """Index of the event with this id in the sorted words, or -1."""
    high = id_key & 0xFFFFFFFFFF
    i = bisect_left(events, high << _CONTENT_BITS)
    return i if i < len(events) and events[i] >> _CONTENT_BITS == high else -1


def _add_day(days: array, day: int) -> None:
    """Insert `day` into the sorted distinct `days` (appending in the time-ordered case)."""
    if not days or day > days[-1]:
        days.append(day)
    elif day != days[-1]:
        i = bisect_left(days, day)
        if days[i] != day:
            days.insert(i, day)


def _gap_mean(days: array) -> float | None:
    n = len(days)
    return (days[-1] - days[0]) / (n - 1) if n >= 2 else None


def _gap_var(days: array) -> float | None:
    gaps = len(days) - 1
    if gaps < 2:
        return None
    total = days[-1] - days[0]
    squares = sum((b - a) * (b - a) for a, b in itertools.pairwise(days))
    # Exact integer numerator, one rounding: (k*Σg² - (Σg)²) / (k(k-1)).
    return (gaps * squares - total * total) / (gaps * (gaps - 1))


def _date(day: int) -> date:
    return date.fromordinal(day + EPOCH)


class PurchaseDays:
    """What sorted distinct purchase days (`self.days`) tell: count, first and last day, gap statistics."""

    __slots__ = ()
    days: array

    @property
    def purchase_days(self) -> int:
        """Distinct purchase days: the day-level Frequency."""
        return len(self.days)

    @property
    def first_day(self) -> date | None:
        """The first purchase day (local date)."""
        return _date(self.days[0]) if self.days else None

    @property
    def last_day(self) -> date | None:
        """The latest purchase day (local date)."""
        return _date(self.days[-1]) if self.days else None

    @property
    def length_days(self) -> int:
        """Days from the first to the latest purchase day."""
        return self.days[-1] - self.days[0] if self.days else 0

    @property
    def gap_mean(self) -> float | None:
        """Mean days between consecutive purchase days."""
        return _gap_mean(self.days)

    @property
    def gap_var(self) -> float | None:
        """Sample variance (ddof=1) of the gaps between purchase days; None below two gaps."""
        return _gap_var(self.days)


class CategoryStats(PurchaseDays):
    """Spend, basket count and repurchase intervals of one customer in one top category."""

    __slots__ = ("baskets", "days", "spend")

    def __init__(self) -> None:
        self.spend = 0  # hundredths, net of returns
        self.baskets = 0  # purchase baskets holding the category
        self.days: array = array("H")  # distinct purchase days (since 1970-01-01), sorted

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CategoryStats):
            return NotImplemented
        return (self.spend, self.baskets, self.days) == (other.spend, other.baskets, other.days)

    def __repr__(self) -> str:
        return f"CategoryStats(spend={self.spend}, baskets={self.baskets}, days={len(self.days)})"

    def __getstate__(self) -> dict:
        return {"schema": STATE_SCHEMA, "fields": {s: getattr(self, s) for s in self.__slots__}}

    def __setstate__(self, payload: object) -> None:
        _, fields = _payload_fields("category stats", payload, None)
        for slot in self.__slots__:
            setattr(self, slot, fields[slot])


class CustomerState(PurchaseDays):
    """One customer's running LRFMV state, per-category intervals, and product counts."""

    __slots__ = (
        "baskets",
        "categories",
        "customer_id",
        "days",
        "digest",
        "event_words",
        "first_ts",
        "last_ts",
        "lpay_spend",
        "products",
        "spend",
        "units",
        "zone",
    )

    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id
        self.event_words: array = array("Q")  # applied events (see `_event_word`), sorted
        self.baskets = 0  # purchase baskets (returns excluded)
        self.days: array = array("H")  # distinct purchase days (since 1970-01-01), sorted
        self.spend = 0  # hundredths, net of returns
        self.lpay_spend = 0  # the part paid with L.pay
        self.units = 0  # item units, non-merchandise categories left out
        self.first_ts: int | None = None  # UTC epoch seconds of the first purchase
        self.last_ts: int | None = None
        self.categories: dict[str, CategoryStats] = {}
        self.products: dict[str, int] = {}  # lines bought, net of lines returned
        self.zone: str | None = None  # the first purchase's zone (see `clock.zone_name`): where "days since" count
        self.digest = DIGEST  # which content digest `event_words` hold (`events.DIGEST`)

    # -- derived figures -------------------------------------------------------------------------
    @property
    def events(self) -> int:
        """Events applied (purchases and returns)."""
        return len(self.event_words)

    @property
    def first_purchase(self) -> datetime | None:
        """Time of the first purchase (UTC)."""
        return None if self.first_ts is None else datetime.fromtimestamp(self.first_ts, UTC)

    @property
    def last_purchase(self) -> datetime | None:
        """Time of the latest purchase (UTC)."""
        return None if self.last_ts is None else datetime.fromtimestamp(self.last_ts, UTC)

    @property
    def monetary(self) -> float:
        """Total spend net of returns, in currency units."""
        return self.spend / 100

    @property
    def monetary_mean(self) -> float | None:
        """Mean spend per purchase basket."""
        return self.spend / 100 / self.baskets if self.baskets else None

    @property
    def volume(self) -> float | None:
        """Mean item units per purchase day."""
        return self.units / len(self.days) if self.days else None

    def recency_days(self, now: datetime) -> int | None:
        """Days from the latest purchase day to `now`'s date in the customer's zone."""
        return day_number(now, self.zone) - self.days[-1] if self.days else None

    def lrfmv(self, now: datetime) -> dict[str, float | int | None]:
        """Length, Recency, Frequency, Monetary (total, mean, L.pay split) and Volume at `now`."""
        return {
            "length": self.length_days,
            "recency": self.recency_days(now),
            "frequency": self.baskets,
            "purchase_days": self.purchase_days,
            "monetary": self.monetary,
            "monetary_mean": self.monetary_mean,
            "monetary_lpay": self.lpay_spend / 100,
            "monetary_other": (self.spend - self.lpay_spend) / 100,
            "volume": self.volume,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CustomerState):
            return NotImplemented
        return all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return (
            f"CustomerState({self.customer_id!r}, baskets={self.baskets}, days={len(self.days)}, "
            f"spend={self.spend / 100:.2f}, categories={len(self.categories)})"
        )

    def __getstate__(self) -> dict:
        return {"schema": STATE_SCHEMA, "fields": {s: getattr(self, s) for s in self.__slots__}}

    def __setstate__(self, payload: object) -> None:
        schema, fields = _payload_fields("customer state", payload, _SCHEMA1_SLOTS)
        if schema < 2:
            # Schema 1 computed recency on the checkpoint's watermark, which is stored in UTC: "UTC" keeps its
            # figures; its event words hold the legacy content digest, so its replays stay duplicates.
            fields.setdefault("zone", "UTC" if fields["first_ts"] is not None else None)
            fields.setdefault("digest", LEGACY_DIGEST)
        for slot in self.__slots__:
            setattr(self, slot, fields[slot])


def _content(state: CustomerState, purchase: Purchase, lines_sum: int | None = None, ts: int | None = None) -> int:
    """The purchase's content digest in the digest `state`'s event words use."""
    if state.digest == LEGACY_DIGEST:
        return legacy_content_key(purchase)
    return purchase.content_key if lines_sum is None else content_key(purchase, lines_sum, ts)


def apply(state: CustomerState | None, purchase: Purchase, policy: StatePolicy = DEFAULT_POLICY) -> CustomerState:
    """Fold one purchase into the customer's state (updated in place and returned; a new one for None).

    An identical replay changes nothing; the same event id with other content raises
    `ConflictingDuplicate`, and a date outside 1970..2149 raises `OutOfRange`; both leave the state untouched.
    """
    if state is None:
        state = CustomerState(purchase.customer_id)
    elif state.customer_id != purchase.customer_id:
        raise ValueError(f"purchase {purchase.event_id} of {purchase.customer_id} applied to {state.customer_id}")

    when = purchase.event_time
    day = day_number(when)
    if not 0 <= day <= MAX_DAY:
        raise OutOfRange(f"event {purchase.event_id}: event_time {when.isoformat()} is outside 1970..2149")
    id_high = purchase.id_key & 0xFFFFFFFFFF
    words = state.event_words
    i = bisect_left(words, id_high << _CONTENT_BITS)
    if i < len(words) and words[i] >> _CONTENT_BITS == id_high:
        if words[i] & _CONTENT_MASK == _content(state, purchase) & _CONTENT_MASK:
            return state
        raise ConflictingDuplicate(
            f"event {purchase.event_id} of customer {purchase.customer_id} was already applied with other content"
        )

    ts = int(when.timestamp())
    categories = state.categories
    # One pass over the lines: spend and (for bought lines) basket and day per top category, units, product counts
    # (+1 a bought line, -1 a returned line) and the lines' part of the content digest. A line of quantity 0 and
    # amount 0 (a voided or zero-value scan) is neither: a basket of only those is not a purchase day.
    total = 0
    lines_sum = 0
    any_bought = False
    lines = purchase.lines
    if lines:
        non_merch = policy.non_merchandise
        products = state.products
        units = 0
        counted: set[str] = set()  # top categories whose basket and day this purchase has counted
        for pid, category, quantity, amount in lines:
            c = round(amount * 100)
            total += c
            lines_sum += crc32(pid.encode(), (quantity * LINE_MIX + c) & 0xFFFFFFFF)  # = events.line_key, inlined
            if quantity == 0 and c == 0:  # a voided or zero-value scan: nothing bought, nothing returned, no spend
                continue
            top = category[0]
            stats = categories.get(top)
            if stats is None:
                stats = categories[sys.intern(top)] = CategoryStats()
            stats.spend += c
            if top not in non_merch:
                units += quantity
            if quantity < 0 or amount < 0:
                products[pid] = products.get(pid, 0) - 1
                continue
            products[pid] = products.get(pid, 0) + 1
            if top not in counted:
                counted.add(top)
                stats.baskets += 1
                days = stats.days
                if not days or day > days[-1]:  # _add_day inlined for the in-order case
                    days.append(day)
                elif day != days[-1]:
                    _add_day(days, day)
        state.units += units
        any_bought = bool(counted)
    else:
        total = cents(purchase.amount or 0.0)
        any_bought = total >= 0
        top = SERVICE_CATEGORY_PREFIX + (purchase.affiliate or "unknown")
        stats = categories.get(top)
        if stats is None:
            stats = categories[sys.intern(top)] = CategoryStats()
        stats.spend += total
        if any_bought:
            stats.baskets += 1
            _add_day(stats.days, day)

    words.insert(i, _event_word(id_high, _content(state, purchase, lines_sum, ts)))
    state.spend += total
    if purchase.lpay:
        state.lpay_spend += total
    if any_bought:
        state.baskets += 1
        if state.first_ts is None or ts <= state.first_ts:
            # The first purchase's zone; between purchases at the same instant, the least name (order-free).
            zone = sys.intern(zone_name(when))
            if state.first_ts is None or ts < state.first_ts or zone < state.zone:
                state.zone = zone
            state.first_ts = ts
        if state.last_ts is None or ts > state.last_ts:
            state.last_ts = ts
        _add_day(state.days, day)
    return state
