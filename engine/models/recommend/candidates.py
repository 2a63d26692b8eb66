"""The (customer, product) candidates the ranker and explore score."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.models.recommend.baselines import als_top
from engine.models.recommend.interactions import Interactions
from engine.models.recommend.scores import CoBought, Neighbours


def candidates(inter: Interactions, als: Any, knn: Neighbours, own: int, from_als: int, popular: int, from_knn: int,
               unseen: bool = False, cobought: CoBought | None = None, from_cobought: int = 0) -> pd.DataFrame:
    """(c, p) candidates: top own products by decayed count, ALS's, neighbours' and co-bought top, the most popular."""
    parts = [knn.top_unseen(inter, from_knn)]
    if cobought is not None and from_cobought > 0:
        parts.append(cobought.top_unseen(inter, from_cobought))
    if not unseen:
        mine = inter.pairs.sort_values(["c", "decayed"], ascending=[True, False], kind="stable")
        parts.append(mine.groupby("c", sort=False).head(own)[["c", "p"]])
    ids, _ = als_top(als, inter.counts, from_als, unseen=unseen)
    n_cust = len(inter.customers)
    parts.append(pd.DataFrame({"c": np.repeat(np.arange(n_cust), from_als), "p": ids.ravel()}))
    top = np.argsort(-inter.popularity, kind="stable")[:popular + (own if unseen else 0)]
    parts.append(pd.DataFrame({"c": np.repeat(np.arange(n_cust), len(top)), "p": np.tile(top, n_cust)}))
    frame = pd.concat(parts, ignore_index=True).drop_duplicates(["c", "p"])
    frame = frame[frame["p"] >= 0]
    if unseen:
        bought = frame.merge(inter.pairs[["c", "p"]], on=["c", "p"], how="left", indicator=True)["_merge"]
        frame = frame[(bought == "left_only").to_numpy()]
    return frame.reset_index(drop=True)
