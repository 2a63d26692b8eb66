"""Training data is the engine's own state at a watermark, plus the lines on each side of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from engine.models.data import LINE_COLUMNS, collect
from engine.sources.completejourney import CompleteJourneySource

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


def test_collect_splits_lines_at_the_watermark(cj_tables: dict, cj_households: set[int]) -> None:
    source = CompleteJourneySource(households=cj_households, tables=cj_tables)
    train, test = collect(source, until=SPLIT)
    assert tuple(train.lines.columns) == LINE_COLUMNS
    assert (train.lines["event_time"] < pd.Timestamp(SPLIT)).all()
    assert (test["event_time"] >= pd.Timestamp(SPLIT)).all()
    tx = cj_tables["transactions"]
    mine = tx[tx["household_id"].isin(cj_households)]
    assert len(train.lines) + len(test) == len(mine)
    before = mine[mine["transaction_timestamp"] < SPLIT.replace(tzinfo=None)]
    # A purchase basket holds a bought line: not a return, and not a line of quantity 0 and amount 0 (a voided scan).
    bought = before[(before["quantity"] >= 0) & (before["sales_value"] >= 0)
                    & ((before["quantity"] > 0) | (before["sales_value"] > 0))]
    for hh, rows in bought.groupby("household_id"):
        assert train.states[str(hh)].baskets == rows["basket_id"].nunique()
    assert bought["basket_id"].nunique() < before["basket_id"].nunique()  # the subset holds a zero-only basket
    assert len(train.profiles) == len(cj_households)
    assert train.data_hash == collect(source, until=SPLIT)[0].data_hash
