"""Population figures printed by `nudge summary` and `make demo`."""

from __future__ import annotations

import pytest

from engine.config import Settings
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from engine.summary import population_summary


def test_summary_counts_every_line_and_basket(cj_tables: dict, cj_households: set[int], settings: Settings) -> None:
    result = EmbeddedRuntime(settings).replay(CompleteJourneySource(households=cj_households, tables=cj_tables))
    figures = population_summary(result.states, result.watermark)
    tx = cj_tables["transactions"]
    mine = tx[tx["household_id"].isin(cj_households)]
    assert figures["customers"] == len(cj_households) == figures["buyers"]
    # A line of quantity 0 and amount 0 (a voided or zero-value scan) buys nothing; CJ has no returns.
    bought = mine[(mine["quantity"] > 0) | (mine["sales_value"].round(2) > 0)]
    assert figures["baskets"] == bought["basket_id"].nunique() < mine["basket_id"].nunique()
    assert figures["lines"] == len(bought) < len(mine)
    assert figures["revenue"] == pytest.approx(mine["sales_value"].sum(), rel=1e-9)
    recency = figures["lrfmv"]["recency"]
    assert recency["p0"] >= 0 and recency["p0"] <= recency["p50"] <= recency["p100"]
    assert figures["lrfmv"]["frequency"]["p100"] == bought.groupby("household_id")["basket_id"].nunique().max()


def test_summary_of_nothing_is_empty() -> None:
    figures = population_summary({}, None)
    assert figures["customers"] == 0 and figures["lrfmv"] == {}
