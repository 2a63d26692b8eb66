"""The offer book: every offer issued, what purchases and time did to it, and what it holds against budgets.

The book applies `engine.offers.lifecycle` to the purchase stream and the campaign clock and keeps the result in
the `offer` and `offer_step` tables. Effects are kept once per (code, ref), so a purchase replayed after a restart
(the book may be ahead of the last state checkpoint) finds its steps known and changes nothing. Writes are held in
memory and flushed before the ledger marks a batch sent, and at every checkpoint.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, select

from engine.campaigns.schema import Campaign, Coupon, StampMission, Subscription
from engine.db import insert_ignoring_duplicates, offer, offer_step, upsert
from engine.events import Purchase
from engine.offers.issue import IssuedOffer
from engine.offers.lifecycle import (
    COUPON_KINDS,
    OFFERED,
    OPEN,
    Change,
    Held,
    Step,
    accept,
    on_purchase,
    on_tick,
    reminder_due,
)

# Whether the campaign's budget has room for `face` more: a mission's reward and a subscription's monthly coupons
# are issued only then (a campaign at its budget issues no more).
BudgetCheck = Callable[[str, float], bool]
REMINDER = "reminder@"
# How long an expired coupon still waits for a late purchase inside its validity before the book stops looking.
LATE_PURCHASES = timedelta(days=7)


@dataclass(frozen=True)
class StepRow:
    """A stored step with the offer's campaign and customer."""

    code: str
    ref: str
    kind: str
    campaign: str
    customer_id: str
    at: datetime
    amount: float
    detail: dict


class OfferBook:
    """The offers of an engine's database, loaded once and kept current in memory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        for table in (offer, offer_step):
            table.create(engine, checkfirst=True)
        self.offers: dict[str, Held] = {}
        self._open: dict[str, set[str]] = defaultdict(set)  # customer -> codes still open
        self._refs: dict[str, set[str]] = defaultdict(set)  # code -> step refs kept (open offers)
        self.adjustment: dict[str, float] = defaultdict(float)  # campaign -> budget use beyond the sent faces
        self.budget_ok: BudgetCheck | None = None
        self._dirty: dict[str, Held] = {}
        self._steps: list[StepRow] = []
        self._load()

    # -- reading ---------------------------------------------------------------------------------------------
    def _load(self) -> None:
        with self.engine.connect() as conn:
            for row in conn.execute(select(offer)):
                held = _held(row)
                self.offers[held.code] = held
                self._track(held)
                self._adjust(held.campaign, held.committed - held.progress.get("sent_face", 0.0))
            open_codes = {code for codes in self._open.values() for code in codes}
            for code, ref, kind, campaign, amount in conn.execute(
                    select(offer_step.c.code, offer_step.c.ref, offer_step.c.kind, offer_step.c.campaign,
                           offer_step.c.amount)):
                if code in open_codes:
                    self._refs[code].add(ref)
                if kind == "points":
                    self._adjust(campaign, amount)

    def _track(self, held: Held) -> None:
        if held.is_open or (held.status == "expired" and held.kind in COUPON_KINDS):
            self._open[held.customer_id].add(held.code)  # an expired coupon may still meet a late purchase
        else:
            self._open[held.customer_id].discard(held.code)
            self._refs.pop(held.code, None)

    def of_customer(self, customer_id: str) -> list[Held]:
        """The customer's offers, in the order issued."""
        return sorted((h for h in self.offers.values() if h.customer_id == customer_id),
                      key=lambda h: (h.issued_at, h.code))

    def steps(self, customer_id: str | None = None, campaign: str | None = None) -> list[StepRow]:
        """The stored steps (flushed ones), optionally of one customer or campaign, in time order."""
        self.flush()
        t = offer_step.c
        query = select(offer_step).order_by(t.at, t.code, t.ref)
        if customer_id is not None:
            query = query.where(t.customer_id == customer_id)
        if campaign is not None:
            query = query.where(t.campaign == campaign)
        with self.engine.connect() as conn:
            return [StepRow(r.code, r.ref, r.kind, r.campaign, r.customer_id, r.at, r.amount, json.loads(r.detail))
                    for r in conn.execute(query)]

    def subscribed(self, campaign: str, customer_id: str) -> bool:
        """Whether the customer holds this campaign's subscription offered or active (no second offer)."""
        return any(self.offers[c].kind == "subscription" and self.offers[c].campaign == campaign
                   for c in self._open.get(customer_id, ()))

    def liability(self) -> dict[str, dict[str, float]]:
        """Per campaign: face value of open coupons, open rewards, and points earned (not yet spent)."""
        out: dict[str, dict[str, float]] = defaultdict(lambda: {"coupons": 0.0, "rewards": 0.0, "points": 0.0})
        for held in self.offers.values():
            if held.kind in COUPON_KINDS and held.status == OPEN:
                out[held.campaign]["rewards" if held.kind == "reward" else "coupons"] += held.face_value
        for row in self.steps():
            if row.kind == "points":
                out[row.campaign]["points"] += row.amount
        return {c: {**v, "total": v["coupons"] + v["rewards"] + v["points"]} for c, v in sorted(out.items())}

    # -- what moves the book ---------------------------------------------------------------------------------
    def issue(self, campaign: Campaign, customer_id: str, key: str, issued: IssuedOffer, zone: str,
              at: datetime) -> Held | None:
        """Hold the offer a sent message carried (once per code; a re-sent message finds it held)."""
        if issued.code in self.offers:
            return self.offers[issued.code]
        terms = campaign.offer
        base = {"sent_face": issued.face_value, "language": campaign.language}
        if isinstance(terms, Coupon):
            held = Held(issued.code, "coupon", campaign.name, customer_id, key, None, at, issued.valid_until,
                        issued.face_value, issued.currency, zone, OPEN, terms.model_dump(mode="json"),
                        {**base, "discount": issued.discount})
        elif isinstance(terms, StampMission):
            held = Held(issued.code, "stamp_mission", campaign.name, customer_id, key, None, at, issued.valid_until,
                        issued.face_value, issued.currency, zone, OPEN, terms.model_dump(mode="json"),
                        {**base, "categories": list(issued.categories), "stamps": [], "round": 1})
        elif isinstance(terms, Subscription):
            held = Held(issued.code, "subscription", campaign.name, customer_id, key, None, at, issued.valid_until,
                        0.0, issued.currency, zone, OFFERED, terms.model_dump(mode="json"),
                        {**base, "offer_spend": 0.0, "offered_tier": issued.tier})
        else:
            return None
        self._store(held)
        self._adjust(held.campaign, held.committed - issued.face_value)
        self._steps.append(_row(Step(held.code, "issued", "issued", at, issued.face_value, {"key": key}), held))
        return held

    def purchase(self, purchase: Purchase) -> list[Change]:
        """Apply a purchase to the customer's open offers (in the order issued): the changes it made."""
        codes = self._open.get(purchase.customer_id)
        if not codes:
            return []
        changes = []
        for code in sorted(codes, key=lambda c: (self.offers[c].issued_at, c)):
            change = on_purchase(self.offers[code], purchase, self._refs.get(code, ()))
            if change.changed:
                self._apply(change)
                changes.append(change)
        return changes

    def tick(self, now: datetime) -> list[Change]:
        """Apply time to every open offer: expiries, mission deadlines, subscription months."""
        changes = []
        for code in sorted({c for codes in self._open.values() for c in codes}):
            held = self.offers[code]
            if held.status == "expired" and now > held.valid_until + LATE_PURCHASES:
                self._open[held.customer_id].discard(code)
                continue
            change = on_tick(held, now)
            if change.changed:
                self._apply(change)
                changes.append(change)
        return changes

    def accept(self, code: str, at: datetime, ref: str = "accept") -> Change:
        """A customer's accept of a subscription offer (from an accept event or the API)."""
        held = self.offers.get(code)
        if held is None:
            raise KeyError(f"no offer with code {code!r}")
        change = accept(held, at, ref)
        if change.changed:
            self._apply(change)
        return change

    def reminders_due(self, now: datetime) -> list[Held]:
        """Open coupons whose reminder day has come (each is sent at most once: its ledger key says so)."""
        return [self.offers[c] for codes in self._open.values() for c in sorted(codes)
                if reminder_due(self.offers[c], now)]

    def _apply(self, change: Change) -> None:
        old = self.offers[change.held.code]
        self._store(change.held)
        self._adjust(old.campaign, change.held.committed - old.committed)
        for step in change.steps:
            self._refs[step.code].add(step.ref)
            self._steps.append(_row(step, change.held))
            if step.kind == "points":
                self._adjust(old.campaign, step.amount)
        for new in change.issued:
            if new.code in self.offers:
                continue
            if self.budget_ok is not None and new.committed and not self.budget_ok(new.campaign, new.committed):
                self._steps.append(_row(Step(change.held.code, f"over_budget:{new.code}", "over_budget",
                                             new.issued_at, new.committed, {"kind": new.kind}), change.held))
                continue
            self._store(new)
            self._adjust(new.campaign, new.committed)
            self._steps.append(_row(Step(new.code, "issued", "issued", new.issued_at, new.face_value,
                                         {"parent": new.parent}), new))

    def _store(self, held: Held) -> None:
        self.offers[held.code] = held
        self._dirty[held.code] = held
        self._track(held)

    def _adjust(self, campaign: str, amount: float) -> None:
        if amount:
            self.adjustment[campaign] += amount

    def flush(self) -> None:
        """Write the changed offers and the new steps (steps already stored are skipped)."""
        if not self._dirty and not self._steps:
            return
        with self.engine.begin() as conn:
            if self._dirty:
                conn.execute(upsert(self.engine, offer, "code"), [_offer_row(h) for h in self._dirty.values()])
            if self._steps:
                conn.execute(insert_ignoring_duplicates(self.engine, offer_step),
                             [{**vars(s), "detail": json.dumps(s.detail, sort_keys=True)} for s in self._steps])
        self._dirty, self._steps = {}, []


def _row(step: Step, held: Held) -> StepRow:
    return StepRow(step.code, step.ref, step.kind, held.campaign, held.customer_id, step.at, step.amount,
                   step.detail)


def _offer_row(held: Held) -> dict:
    return {"code": held.code, "kind": held.kind, "campaign": held.campaign, "customer_id": held.customer_id,
            "key": held.key, "parent": held.parent, "issued_at": held.issued_at, "valid_until": held.valid_until,
            "face_value": held.face_value, "currency": held.currency, "zone": held.zone, "status": held.status,
            "closed_at": held.closed_at, "cost": held.cost, "terms": json.dumps(held.terms, sort_keys=True),
            "progress": json.dumps(held.progress, sort_keys=True)}


def _held(row) -> Held:
    m = row._mapping
    return Held(m["code"], m["kind"], m["campaign"], m["customer_id"], m["key"], m["parent"], m["issued_at"],
                m["valid_until"], m["face_value"], m["currency"], m["zone"], m["status"], json.loads(m["terms"]),
                json.loads(m["progress"]), m["closed_at"], m["cost"])


def reminder_campaign(campaign: Campaign, held: Held) -> Campaign:
    """The campaign as its coupon's reminder: the reminder template, no offer of its own (it costs nothing more and
    spends no budget), no holdout (only customers who got the coupon are reminded); caps and consent as the
    campaign's."""
    template = held.terms.get("reminder_template") or campaign.reminder_template or f"{campaign.template}_reminder"
    return campaign.model_copy(update={"template": template, "offer": None, "budget": None, "holdout": 0})


def reminder_occurrence(code: str) -> str:
    """The ledger occurrence of a coupon's reminder: one per coupon."""
    return f"{REMINDER}{code}"


def reminder_code(occurrence: str) -> str | None:
    """The coupon a reminder occurrence is for, or None for any other occurrence."""
    return occurrence[len(REMINDER):] if occurrence.startswith(REMINDER) else None

