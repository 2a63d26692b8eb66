"""Training data is the engine's own state at a watermark, plus the lines on each side of it."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import is_bought_line
from engine.models.data import LINE_COLUMNS, bought_mask, collect
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
                    & ((before["quantity"] > 0) | (before["sales_value"].round(2) > 0))]
    for hh, rows in bought.groupby("household_id"):
        assert train.states[str(hh)].baskets == rows["basket_id"].nunique()
    assert bought["basket_id"].nunique() < before["basket_id"].nunique()  # the subset holds a zero-only basket
    assert len(train.profiles) == len(cj_households)
    assert train.data_hash == collect(source, until=SPLIT)[0].data_hash


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-2, 3), st.integers(-300, 300)), min_size=1, max_size=30))
def test_bought_mask_is_the_states_bought_line(rows: list) -> None:
    lines = [("p", ("TOP",), quantity, cents / 100) for quantity, cents in rows]
    frame = pd.DataFrame({"quantity": [q for _, _, q, _ in lines], "amount": [a for _, _, _, a in lines]})
    assert bought_mask(frame).tolist() == [is_bought_line(line) for line in lines]
