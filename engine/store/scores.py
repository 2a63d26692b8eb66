"""The scores store: each model's outputs by name per customer (and customer × category), with the model version.

What campaign rules, the due sweep, the CLI and the API read, instead of calling models per request. A refit
replaces a model's rows in one transaction (`publish`); a changed customer's state-dependent rows are replaced
alone (`replace_customers`). Values are typed by the vocabulary (`engine.models.outputs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, bindparam, delete, func, select

from engine.db import score, score_version, upsert
from engine.errors import NudgeError
from engine.models.outputs import output

_CHUNK = 500  # customer ids per DELETE ... IN (...): well under every dialect's bound-parameter limit


@dataclass(frozen=True)
class Score:
    """One output's value for a customer (category "" at customer level), and where it came from."""

    model: str
    version: str
    category: str
    output: str
    value: Any
    as_of: datetime


@dataclass(frozen=True)
class ScoredVersion:
    """The version whose scores a model's rows hold, the time it scored everyone at, and its row count."""

    model: str
    version: str
    as_of: datetime
    rows: int
    written_at: datetime


class ScoreStore:
    """Model outputs in the engine's database (SQLite by default, PostgreSQL alike)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def publish(self, model: str, version: str, frame: pd.DataFrame, as_of: datetime) -> int:
        """Replace every row of `model` with `frame` (customer_id, category, output, value), atomically."""
        rows = _rows(model, version, frame, as_of)
        with self.engine.begin() as conn:
            conn.execute(delete(score).where(score.c.model == model))
            _insert(conn, rows)
            conn.execute(upsert(self.engine, score_version, "model").values(
                model=model, version=version, as_of=as_of, rows=len(rows),
                written_at=datetime.now(UTC)))
        return len(rows)

    def replace_customers(self, model: str, version: str, frame: pd.DataFrame, as_of: datetime,
                          customer_ids: Iterable[str], outputs: Iterable[str]) -> int:
        """Replace `model`'s rows of `outputs` for `customer_ids` alone with `frame`, atomically."""
        ids, names = sorted(set(map(str, customer_ids))), sorted(set(outputs))
        rows = _rows(model, version, frame, as_of)
        stray = {r["customer_id"] for r in rows} - set(ids) or {r["output"] for r in rows} - set(names)
        if stray:
            raise NudgeError(f"scores of {model}: rows for {sorted(stray)[:5]} outside the customers or outputs "
                             "being replaced")
        with self.engine.begin() as conn:
            for start in range(0, len(ids), _CHUNK):
                conn.execute(delete(score).where(score.c.model == model, score.c.output.in_(names),
                                                 score.c.customer_id.in_(ids[start:start + _CHUNK])))
            _insert(conn, rows)
            total = conn.execute(select(func.count()).where(score.c.model == model)).scalar_one()
            conn.execute(score_version.update().where(score_version.c.model == model).values(rows=total))
        return len(rows)

    def replace_pairs(self, model: str, version: str, frame: pd.DataFrame, as_of: datetime,
                      pairs: Iterable[tuple[str, str]], outputs: Iterable[str]) -> int:
        """Replace `model`'s rows of `outputs` for these (customer, category) pairs alone with `frame`, atomically."""
        keys, names = sorted(set(pairs)), sorted(set(outputs))
        rows = _rows(model, version, frame, as_of)
        stray = ({(r["customer_id"], r["category"]) for r in rows} - set(keys)
                 or {r["output"] for r in rows} - set(names))
        if stray:
            raise NudgeError(f"scores of {model}: rows for {sorted(stray)[:5]} outside the pairs or outputs "
                             "being replaced")
        with self.engine.begin() as conn:
            if keys:
                conn.execute(delete(score).where(score.c.model == model,
                                                 score.c.customer_id == bindparam("pair_customer"),
                                                 score.c.category == bindparam("pair_category"),
                                                 score.c.output == bindparam("pair_output")),
                             [{"pair_customer": c, "pair_category": k, "pair_output": o}
                              for c, k in keys for o in names])
            _insert(conn, rows)
            total = conn.execute(select(func.count()).where(score.c.model == model)).scalar_one()
            conn.execute(score_version.update().where(score_version.c.model == model).values(rows=total))
        return len(rows)

    def versions(self) -> dict[str, ScoredVersion]:
        """Each model with scores: the version they come from."""
        with self.engine.connect() as conn:
            found = conn.execute(select(score_version)).all()
        return {r.model: ScoredVersion(r.model, r.version, r.as_of, r.rows, r.written_at) for r in found}

    def customer(self, customer_id: str) -> list[Score]:
        """Every score of one customer, customer-level first, then by category and output."""
        with self.engine.connect() as conn:
            found = conn.execute(select(score).where(score.c.customer_id == customer_id)
                                 .order_by(score.c.category, score.c.output)).all()
        return [Score(r.model, r.version, r.category, r.output, output(r.output).decode(r.number, r.text),
                      r.as_of) for r in found]

    def frame(self, model: str | None = None, customer_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows as a frame (customer_id, category, output, model, version, value, as_of), sorted by key."""
        query = select(score)
        if model is not None:
            query = query.where(score.c.model == model)
        with self.engine.connect() as conn:
            if customer_ids is None:
                found = conn.execute(query).all()
            else:
                ids = sorted(set(map(str, customer_ids)))
                found = [r for start in range(0, len(ids), _CHUNK)
                         for r in conn.execute(query.where(score.c.customer_id.in_(ids[start:start + _CHUNK])))]
        records = [(r.customer_id, r.category, r.output, r.model, r.version,
                    output(r.output).decode(r.number, r.text), r.as_of) for r in found]
        columns = ["customer_id", "category", "output", "model", "version", "value", "as_of"]
        return (pd.DataFrame.from_records(records, columns=columns)
                .sort_values(["customer_id", "category", "output"]).reset_index(drop=True))


def _rows(model: str, version: str, frame: pd.DataFrame, as_of: datetime) -> list[dict[str, Any]]:
    """Table rows of a score frame; every output must be one `model` declares in the vocabulary."""
    rows = []
    for name, part in frame.groupby("output", sort=True):
        out = output(str(name))
        if out.model != model:
            raise NudgeError(f"scores of {model}: output {name!r} belongs to model {out.model!r}")
        for cid, category, value in zip(part["customer_id"], part["category"], part["value"], strict=True):
            number, text = out.encode(value)
            rows.append({"customer_id": str(cid), "category": str(category), "output": out.name, "model": model,
                         "version": version, "number": number, "text": text, "as_of": as_of})
    return rows


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(score.insert(), rows)


