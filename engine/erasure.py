"""Erasure on request: a customer's state, profile, scores, stored lines and dead letters go; the ledger, the offers
and the consent history keep their rows with the id replaced by a one-way token; the token stays on the
suppression list, so arbitration and delivery never message the customer again (engine.campaigns.suppression).

Line parts are immutable files: each part holding the customer's purchases is written again without them (temporary
name, fsync, rename) before the database changes commit, so a crash in between leaves an erasure that can be run
again. A fitted model version may still know the id until the next refit, which reads the stores without it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from engine.campaigns.candidates import Verdict, idempotency_key
from engine.campaigns.suppression import Suppression
from engine.db import (
    consent_change,
    customer_profile,
    customer_state,
    dead_letter,
    delivery_ledger,
    line_part,
    offer,
    offer_step,
    score,
    store_meta,
    suppression,
    wallet_offer,
)
from engine.durable import fsync_dir
from engine.errors import NudgeError
from engine.store.lines import SCHEMA, LineStore

ERASED = "customer erased on request"


@dataclass
class Erasure:
    """What one erasure removed or re-keyed; `token` is what the id became."""

    customer_id: str
    token: str
    removed: dict[str, int] = field(default_factory=dict)  # store -> rows (lines: purchases) deleted
    tokenized: dict[str, int] = field(default_factory=dict)  # store -> rows kept under the token
    aborted: int = 0  # queued messages that will not go

    @property
    def found(self) -> bool:
        """Whether the engine held anything of the customer."""
        return any(self.removed.values()) or any(self.tokenized.values())

    def to_dict(self) -> dict[str, Any]:
        """The counts as plain values (the id itself is left out: it is what was erased)."""
        return {"token": self.token, "removed": dict(self.removed), "tokenized": dict(self.tokenized),
                "aborted": self.aborted}


def erase_customer(engine: Engine, lines: LineStore, suppressed: Suppression, customer_id: str, *,
                   reason: str = ERASED, at: datetime | None = None) -> Erasure:
    """Erase `customer_id` from every store (see the module docstring); raises NudgeError when nothing of the
    customer is held, and leaves the suppression list as it was then."""
    at = at or datetime.now(UTC)
    token = suppressed.token(customer_id)
    erasure = Erasure(customer_id, token)
    erasure.removed["lines"] = _erase_lines(lines, customer_id)
    with engine.begin() as conn:
        _erase_rows(conn, erasure, at)
        if not erasure.found:
            raise NudgeError(f"no customer {customer_id!r} in the engine's stores: nothing to erase")
        conn.execute(delete(suppression).where(suppression.c.token == token))
        conn.execute(suppression.insert(), [{"token": token, "at": at, "reason": reason}])
    suppressed.refresh()
    return erasure


def _erase_rows(conn: Connection, erasure: Erasure, at: datetime) -> None:
    cid, token = erasure.customer_id, erasure.token
    for name, table in (("state", customer_state), ("profile", customer_profile), ("scores", score),
                        ("wallet", wallet_offer)):
        erasure.removed[name] = conn.execute(delete(table).where(table.c.customer_id == cid)).rowcount
    led = delivery_ledger.c
    erasure.aborted = conn.execute(
        update(delivery_ledger).where(led.customer_id == cid, led.verdict == Verdict.QUEUED.value)
        .values(verdict=Verdict.ABORTED.value, detail=ERASED, updated_at=at)).rowcount
    # The ledger key spells the customer id: it is re-spelt with the token, keeping each key unique.
    rows = conn.execute(select(led.id, led.campaign, led.occurrence).where(led.customer_id == cid)).all()
    if rows:
        conn.execute(update(delivery_ledger).where(led.id == bindparam("row_id")).values(
            customer_id=token, key=bindparam("new_key")),
            [{"row_id": r.id, "new_key": idempotency_key(r.campaign, token, r.occurrence)} for r in rows])
    erasure.tokenized["ledger"] = len(rows)
    held = conn.execute(select(offer.c.code, offer.c.key).where(offer.c.customer_id == cid)).all()
    if held:
        conn.execute(update(offer).where(offer.c.code == bindparam("held_code")).values(
            customer_id=token, key=bindparam("new_key")),
            [{"held_code": h.code, "new_key": _rekey(h.key, cid, token)} for h in held])
    erasure.tokenized["offers"] = len(held)
    erasure.tokenized["offer_steps"] = conn.execute(
        update(offer_step).where(offer_step.c.customer_id == cid).values(customer_id=token)).rowcount
    erasure.tokenized["consent"] = conn.execute(
        update(consent_change).where(consent_change.c.customer_id == cid).values(customer_id=token)).rowcount
    erasure.removed["dead_letters"] = _erase_dead_letters(conn, cid)
    _scrub_runners(conn, cid)


def _rekey(key: str, customer_id: str, token: str) -> str:
    """A ledger key (campaign|customer|occurrence) with the customer's id replaced by the token."""
    campaign, sep, rest = key.partition("|")
    if rest.startswith(customer_id + "|"):
        return f"{campaign}{sep}{token}{rest[len(customer_id):]}"
    return key


def _erase_dead_letters(conn: Connection, customer_id: str) -> int:
    """Dead letters whose record names the customer (a rejected event of theirs, a message that failed)."""
    doomed = []
    for row in conn.execute(select(dead_letter.c.id, dead_letter.c.where, dead_letter.c.raw)):
        if f"|{customer_id}|" in row.where:  # a delivery failure: `where` is the message's ledger key
            doomed.append(row.id)
            continue
        try:
            raw = json.loads(row.raw)
        except (TypeError, ValueError):
            continue
        if isinstance(raw, str):  # a JSON text inside (a message value or a line, as read)
            try:
                raw = json.loads(raw)
            except ValueError:
                continue
        if isinstance(raw, dict) and str(raw.get("customer_id")) == customer_id:
            doomed.append(row.id)
    for start in range(0, len(doomed), 500):
        conn.execute(delete(dead_letter).where(dead_letter.c.id.in_(doomed[start:start + 500])))
    return len(doomed)


def _scrub_runners(conn: Connection, customer_id: str) -> None:
    """The campaign runtime's checkpointed cursors name the customers its next jobs owe work: drop this one."""
    for row in conn.execute(select(store_meta).where(store_meta.c.key.like("runner:%"))).all():
        saved = json.loads(row.value)
        if not isinstance(saved, dict):
            continue
        saved["dirty"] = [c for c in saved.get("dirty", []) if c != customer_id]
        saved["touched"] = {c: v for c, v in saved.get("touched", {}).items() if c != customer_id}
        saved["pending"] = [p for p in saved.get("pending", []) if p.get("customer_id") != customer_id]
        conn.execute(update(store_meta).where(store_meta.c.key == row.key)
                     .values(value=json.dumps(saved, sort_keys=True)))


def _erase_lines(lines: LineStore, customer_id: str) -> int:
    """Write every committed part holding the customer's purchases again without them; purchases removed."""
    removed = 0
    for part in lines.parts():
        path = lines.path(part.seq)
        if not path.is_file():
            continue
        ids = pq.read_table(path, columns=["customer_id"]).column("customer_id")
        mine = pc.equal(ids, pa.scalar(customer_id))
        hits = pc.sum(mine).as_py() or 0
        if not hits:
            continue
        kept = pq.read_table(path, schema=SCHEMA).filter(pc.invert(mine))
        _replace_part(lines, part.seq, kept)
        removed += hits
        counts = {"purchases": kept.num_rows,
                  "lines": pc.sum(pc.list_value_length(kept.column("lines"))).as_py() or 0}
        if kept.num_rows:  # an emptied part keeps its old span: the columns cannot be empty
            times = kept.column("event_time")
            counts |= {"first_time": pc.min(times).as_py(), "last_time": pc.max(times).as_py()}
        with lines.engine.begin() as conn:
            conn.execute(update(line_part).where(line_part.c.seq == part.seq).values(**counts))
    return removed


def _replace_part(lines: LineStore, seq: int, table: pa.Table) -> None:
    """Replace part `seq` with `table` as the line store writes a part: temporary name, fsync, rename."""
    final, tmp = lines.path(seq), lines.root / f".part-{seq:06d}.erase.tmp"
    pq.write_table(table, tmp, compression="zstd")
    with tmp.open("rb") as written:
        os.fsync(written.fileno())
    tmp.replace(final)
    fsync_dir(lines.root)

