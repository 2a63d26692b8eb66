"""Frequency caps and budgets: what a customer has been sent, and what a campaign's offers have cost.

A cap "at most N sends per D days" counts calendar days in the customer's zone, per campaign or across every
campaign carrying a tag. A send is checked against every D-day window that contains its day, before and after
it, so a message queued for tomorrow (a night deferral) and one sent today can never add up past the cap.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from engine.campaigns.candidates import Verdict
from engine.campaigns.schema import Campaign, Cap
from engine.clock import day_number
from engine.errors import ArbitrationError

# Decisions that occupy a cap slot: sent or to be sent, and held out (the holdout's slot counts as used).
USES_CAP = frozenset({Verdict.QUEUED, Verdict.SENT, Verdict.HELD_OUT})
# Decisions whose offer was (or will be) issued: the budget's spending.
SPENDS_BUDGET = frozenset({Verdict.QUEUED, Verdict.SENT})


class LedgerRow(Protocol):
    """What `from_entries` reads of a ledger entry."""

    campaign: str
    customer_id: str
    verdict: Verdict | str
    decided_at: datetime
    not_before: datetime | None
    sent_at: datetime | None
    face_value: float | None


def _verdict(row: LedgerRow) -> Verdict:
    return row.verdict if isinstance(row.verdict, Verdict) else Verdict(row.verdict)


def send_time(row: LedgerRow) -> datetime:
    """When an entry's message went or goes: sent_at, else not_before, else the decision time."""
    return row.sent_at or row.not_before or row.decided_at


def _scope(cap: Cap, campaign: str) -> str:
    return f"tag:{cap.tag}" if cap.tag is not None else f"campaign:{campaign}"


def tag_caps(campaigns: Iterable[Campaign]) -> dict[str, list[Cap]]:
    """Every tag cap declared in the running set, by tag."""
    out: dict[str, list[Cap]] = {}
    for campaign in campaigns:
        for cap in campaign.caps:
            if cap.tag is not None and cap not in out.setdefault(cap.tag, []):
                out[cap.tag].append(cap)
    return out


class CapBook:
    """Sends per customer per campaign and per tag, by day number in the customer's zone."""

    def __init__(self) -> None:
        self._days: dict[tuple[str, str], list[int]] = {}  # (customer, scope) -> sorted send days

    def check(self, campaign: Campaign, customer_id: str, zone: str, at: datetime,
              by_tag: Mapping[str, Sequence[Cap]] | None = None) -> str | None:
        """None when one more send at `at` keeps every cap of `campaign`, else the cap it would break.

        `by_tag` (see `tag_caps`) adds the caps other campaigns declare on this campaign's tags: a tag's cap
        binds every campaign carrying the tag, or a campaign without it could push the tag's count past it.
        """
        day = day_number(at, zone)
        caps = list(campaign.caps)
        for tag in campaign.tags if by_tag else ():
            caps += [cap for cap in by_tag.get(tag, ()) if cap not in caps]  # type: ignore[union-attr]
        for cap in caps:
            scope = _scope(cap, campaign.name)
            days = self._days.get((customer_id, scope), [])
            # Every window [s, s + D - 1] holding `day` must have room for one more.
            lo, hi = day - cap.days + 1, day + cap.days - 1
            near = days[bisect_left(days, lo):bisect_right(days, hi)]
            for start in range(lo, day + 1):
                used = bisect_right(near, start + cap.days - 1) - bisect_left(near, start)
                if used >= cap.sends:
                    what = f"tag {cap.tag!r}" if cap.tag is not None else f"campaign {campaign.name!r}"
                    return f"cap {cap.sends} per {cap.days} days for {what} reached ({used} sends)"
        return None

    def add(self, campaign: Campaign, customer_id: str, zone: str, at: datetime) -> None:
        """Count one send of `campaign` to the customer at `at`, for the campaign and each of its tags."""
        day = day_number(at, zone)
        for scope in [f"campaign:{campaign.name}", *(f"tag:{t}" for t in campaign.tags)]:
            insort(self._days.setdefault((customer_id, scope), []), day)

    def sends(self, customer_id: str, scope: str) -> list[int]:
        """The day numbers of the customer's sends in a scope ("campaign:<name>" or "tag:<tag>")."""
        return list(self._days.get((customer_id, scope), []))

    @classmethod
    def from_entries(cls, entries: Iterable[LedgerRow], campaigns: Mapping[str, Campaign],
                     zone_of: Callable[[str], str]) -> CapBook:
        """The book the ledger's entries imply after a restart: queued, sent and held-out ones count.

        Entries of campaigns no longer in `campaigns` are skipped: their tags are unknown now.
        """
        book = cls()
        for row in entries:
            campaign = campaigns.get(row.campaign)
            if campaign is not None and _verdict(row) in USES_CAP:
                book.add(campaign, row.customer_id, zone_of(row.customer_id), send_time(row))
        return book


class BudgetBook:
    """Face value issued per campaign against its budget.

    `extra` is what the offers did since (the offer book's adjustment, live): a coupon redeemed holds its discount
    instead of its face value, an expired one nothing; rewards, monthly coupons and points add theirs.
    """

    def __init__(self, spent: dict[str, float] | None = None, extra: Mapping[str, float] | None = None) -> None:
        self.spent: dict[str, float] = dict(spent or {})
        self.extra: Mapping[str, float] = extra if extra is not None else {}

    def used(self, name: str) -> float:
        """What the campaign's offers hold against its budget now."""
        return self.spent.get(name, 0.0) + self.extra.get(name, 0.0)

    def check(self, campaign: Campaign, face_value: float | None = None) -> str | None:
        """None when one more offer (of `face_value`, default the campaign's) fits its budget, else why not."""
        if campaign.budget is None:
            return None
        spent = self.used(campaign.name)
        face = campaign.face_value if face_value is None else face_value
        # A tolerance for the float sum of many face values (cents add up to tiny binary errors).
        if spent + face > campaign.budget.max_face_value + 1e-9:
            return (f"budget {campaign.budget.max_face_value:g} of campaign {campaign.name!r} would be exceeded "
                    f"({spent:g} spent, offer {face:g})")
        return None

    def add(self, campaign: Campaign | str, face_value: float) -> None:
        """Count an issued offer's face value against the campaign."""
        name = campaign if isinstance(campaign, str) else campaign.name
        if face_value < 0:
            raise ArbitrationError(f"budget of campaign {name!r}: negative face value (got {face_value})")
        self.spent[name] = self.spent.get(name, 0.0) + face_value

    @classmethod
    def from_entries(cls, entries: Iterable[LedgerRow], campaigns: Mapping[str, Campaign],
                     extra: Mapping[str, float] | None = None) -> BudgetBook:
        """The spending the ledger's queued and sent entries imply (their face value, else the campaign's), with
        `extra` (see the class)."""
        book = cls(extra=extra)
        for row in entries:
            if _verdict(row) not in SPENDS_BUDGET or getattr(row, "occurrence", "").startswith("reminder@"):
                continue  # a coupon's reminder issues nothing: the coupon was counted with its first message
            value = row.face_value
            if value is None:
                campaign = campaigns.get(row.campaign)
                value = campaign.face_value if campaign is not None else 0.0
            book.add(row.campaign, value)
        return book
