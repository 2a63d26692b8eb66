"""Event schema: one `Purchase` per basket (receipt), and `CustomerProfile` for customer attributes."""

from __future__ import annotations

import struct
from functools import cached_property
from typing import Annotated, Literal, NamedTuple
from zlib import crc32

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from engine.errors import DecodeError

UNKNOWN_CATEGORY = "UNKNOWN"
SERVICE_CATEGORY_PREFIX = "service:"


ProductId = Annotated[str, StringConstraints(min_length=1)]
# Top category first: Complete Journey (department, product_category); L.POINT (대분류, 중분류, 소분류).
CategoryPath = Annotated[tuple[str, ...], Field(min_length=1)]
Amount = Annotated[float, Field(allow_inf_nan=False)]


class Line(NamedTuple):
    """One purchased (or, when negative, returned) product line of a basket.

    `Purchase.lines` holds plain 4-tuples in this order: a year holds millions of lines, and
    validating plain tuples costs half as much. Build lines with `Line(...)` for readability.
    """

    product_id: str
    category: tuple[str, ...] = (UNKNOWN_CATEGORY,)
    quantity: int = 1
    amount: float = 0.0


LineTuple = tuple[ProductId, CategoryPath, int, Amount]


def is_return_line(line: tuple) -> bool:
    """A negative quantity or amount is a return."""
    return line[2] < 0 or line[3] < 0


def is_bought_line(line: tuple) -> bool:
    """Not a return, and not a line of quantity 0 and amount 0 (a voided or zero-value scan, which buys nothing)."""
    return not is_return_line(line) and (line[2] > 0 or round(line[3] * 100) > 0)


class Purchase(BaseModel):
    """One basket: the engine's purchase event. Service uses (no product lines) carry `amount` alone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    event_time: AwareDatetime
    store_id: str | None = None
    affiliate: str | None = None
    channel: Literal["offline", "online"] = "offline"
    lpay: bool = False
    lines: tuple[LineTuple, ...] = ()  # (product_id, category path, quantity, amount): see `Line`
    # Total of the basket: required for a service use; optional with lines, and then checked against them.
    amount: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _amount_matches_lines(self) -> Purchase:
        if self.lines:
            if self.amount is not None:
                total = sum(line[3] for line in self.lines)
                if abs(self.amount - total) > 0.005 * len(self.lines):
                    raise ValueError(f"amount {self.amount} differs from the sum of its lines {total}")
        elif self.amount is None:
            raise ValueError("a purchase without lines (a service use) needs an amount")
        return self

    @property
    def total(self) -> float:
        """What the basket cost: the sum of its lines, or the service use's amount."""
        return sum(line[3] for line in self.lines) if self.lines else (self.amount or 0.0)

    @property
    def is_return(self) -> bool:
        """A basket with no purchase lines and at least one returned line (or a negative service use)."""
        if self.lines:
            return all(is_return_line(line) for line in self.lines)
        return (self.amount or 0.0) < 0

    @property
    def id_key(self) -> int:
        """Stable 64-bit key of the event id (stable across processes, unlike `hash`)."""
        return _digest64(self.event_id)

    @cached_property
    def content_key(self) -> int:
        """Stable 32-bit digest of the content (see `content_key`): tells a replay from a conflict."""
        return content_key(self)


class CustomerProfile(BaseModel):
    """Customer attributes where a source has them; the time zone is the customer's own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str = Field(min_length=1)
    time_zone: str = "UTC"
    sex: str | None = None
    age_band: str | None = None
    region: str | None = None
    attributes: dict[str, str] = {}


class OfferResponse(BaseModel):
    """A customer's answer to an offer they hold, e.g. a subscription accepted in the app: `code` is the offer's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1)
    customer_id: str = Field(min_length=1)
    event_time: AwareDatetime
    code: str = Field(min_length=1)
    response: Literal["accept"] = "accept"


Event = Purchase | CustomerProfile | OfferResponse


def cents(amount: float) -> int:
    """Money is summed in integer hundredths so totals are exact and independent of order."""
    return round(amount * 100)


# Which content digest a state's event words hold: 1 was Python's `hash` of int tuples (stable across processes
# but an interpreter detail), kept to read states written with it; 2 is CRC-32 only, which zlib defines.
LEGACY_DIGEST = 1
DIGEST = 2
MASK64 = 0xFFFFFFFFFFFFFFFF
LINE_MIX = 0x9E3779B1  # xxHash's first 32-bit prime: distinct small (quantity, cents) pairs start the CRC far apart
_HEAD = struct.Struct("<qIIBBQQ").pack


def line_key(product_id: str, quantity: int, amount_cents: int) -> int:
    """32-bit digest of one line: the CRC-32 of the product id, started from a mix of the quantity and cents.

    Cheaper than packing the numbers (it runs for every line), and not linear in them, so a multiset sum of
    line keys tells lines apart that swap their quantities.
    """
    return crc32(product_id.encode(), (quantity * LINE_MIX + amount_cents) & 0xFFFFFFFF)


def content_key(purchase: Purchase, lines_sum: int | None = None, ts: int | None = None) -> int:
    """Digest of everything but the id; lines are summed as a multiset, so their order does not matter.

    `lines_sum` (the sum of `line_key` over the lines) and `ts` (epoch seconds) when the caller has them.
    The customer is left out: digests are kept, and compared, within one customer's state.
    """
    if lines_sum is None:
        lines_sum = sum(line_key(pid, qty, round(amount * 100)) for pid, _, qty, amount in purchase.lines)
    head = _HEAD(
        int(purchase.event_time.timestamp()) if ts is None else ts,
        crc32((purchase.store_id or "").encode()),
        crc32((purchase.affiliate or "").encode()),
        purchase.channel == "online",
        purchase.lpay,
        round((purchase.amount or 0.0) * 100) & MASK64,
        lines_sum & MASK64,
    )
    return crc32(head)


def legacy_content_key(purchase: Purchase) -> int:
    """The content digest states written before schema 2 hold (`LEGACY_DIGEST`), to recognise their replays."""
    lines_sum = sum(hash((crc32(pid.encode()), qty, round(amount * 100))) for pid, _, qty, amount in purchase.lines)
    return hash((
        int(purchase.event_time.timestamp()),
        crc32((purchase.store_id or "").encode()),
        crc32((purchase.affiliate or "").encode()),
        purchase.channel == "online",
        purchase.lpay,
        round((purchase.amount or 0.0) * 100),
        lines_sum & MASK64,
    ))


def _digest64(text: str) -> int:
    # Two CRC-32s, of the bytes and of the bytes reversed: independent enough for ids (not adversarial
    # input), and several times cheaper than a cryptographic digest on the hot path.
    data = text.encode()
    return crc32(data) << 32 | crc32(data[::-1])


def validation_reason(error: ValidationError, where: str) -> str:
    """Re-word a pydantic error as 'where: field: message; ...' for dead letters and CLI output."""
    parts = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        # Lines given as arrays report positions; name the field instead (lines.3.amount).
        if len(loc) >= 3 and loc[0] == "lines" and isinstance(loc[2], int) and loc[2] < len(Line._fields):
            loc[2] = Line._fields[loc[2]]
        loc = ".".join(str(p) for p in loc) or "record"
        parts.append(f"{loc}: {item['msg']}")
    return f"{where}: " + "; ".join(parts)


def decode_purchase(record: dict, where: str) -> Purchase:
    """Validate a dict as a `Purchase`, raising `DecodeError` that names the place and the fields."""
    try:
        return Purchase.model_validate(record)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc, where)) from None


def decode_response(record: dict, where: str) -> OfferResponse:
    """Validate a dict as an `OfferResponse`, raising `DecodeError` that names the place and the fields."""
    try:
        return OfferResponse.model_validate(record)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc, where)) from None


def decode_profile(record: dict, where: str) -> CustomerProfile:
    """Validate a dict as a `CustomerProfile`, raising `DecodeError` that names the place and the fields."""
    try:
        return CustomerProfile.model_validate(record)
    except ValidationError as exc:
        raise DecodeError(validation_reason(exc, where)) from None

