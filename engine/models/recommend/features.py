"""The ranker's and explore's features of each candidate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.models.recommend.interactions import Interactions
from engine.models.recommend.scores import CoBought, Neighbours

FEATURES = ("decayed", "decayed_fast", "net", "days", "since_last", "own_gap", "due", "product_gap", "als",
            "als_rank", "knn", "knn_rank", "popularity", "recent", "buyers", "repeat_rate", "category_share",
            "customer_lines", "customer_recency", "own")
# Products never bought by the customer have no own history: explore keeps the features that rank new products.
# What else was tried for explore, with its validation figures: docs/experiments/recommend-explore.md.
EXPLORE_FEATURES = ("knn", "knn_rank", "als", "als_rank", "popularity", "recent", "category_share", "customer_lines",
                    "cobought", "cobought_rank")


def features(inter: Interactions, als: Any, knn: Neighbours, cands: pd.DataFrame,
             cobought: CoBought | None = None) -> pd.DataFrame:
    """The ranker's features for each candidate (c, p)."""
    frame = cands.merge(inter.pairs, on=["c", "p"], how="left")
    c, p = frame["c"].to_numpy(), frame["p"].to_numpy()
    frame["own"] = frame["net"].notna().astype(float)
    frame["since_last"] = -frame["last"]
    frame["own_gap"] = (frame["last"] - frame["first"]) / (frame["days"] - 1).where(frame["days"] > 1)
    pairs = inter.pairs
    multi = pairs[pairs["days"] > 1]
    gap = ((multi["last"] - multi["first"]) / (multi["days"] - 1)).groupby(multi["p"]).median()
    product_gap = np.full(len(inter.products), np.nan)
    product_gap[gap.index.to_numpy()] = gap.to_numpy()
    frame["product_gap"] = product_gap[p]
    frame["due"] = frame["since_last"] / frame["own_gap"].fillna(frame["product_gap"])
    user, item = np.asarray(als.user_factors), np.asarray(als.item_factors)
    frame["als"] = np.einsum("ij,ij->i", user[c], item[p])
    frame["als_rank"] = frame.groupby("c")["als"].rank(ascending=False, method="first")
    frame["knn"] = knn.of(c, p)
    frame["knn_rank"] = frame.groupby("c")["knn"].rank(ascending=False, method="first")
    if cobought is not None:
        frame["cobought"] = cobought.of(c, p)
        frame["cobought_rank"] = frame.groupby("c")["cobought"].rank(ascending=False, method="first")
    frame["popularity"] = np.log1p(np.maximum(inter.popularity[p], 0))
    frame["recent"] = np.log1p(inter.recent[p])
    frame["buyers"] = np.log1p(inter.buyers[p])
    repeaters = np.bincount(pairs["p"][pairs["days"] > 1], minlength=len(inter.products))
    frame["repeat_rate"] = repeaters[p] / np.maximum(inter.buyers[p], 1)
    frame["category_share"] = np.asarray(inter.category_share[c, inter.category[p]]).ravel()
    frame["customer_lines"] = np.log1p(inter.customer_lines[c])
    frame["customer_recency"] = inter.customer_recency[c]
    for name in ("decayed", "decayed_fast", "net", "days"):
        frame[name] = frame[name].fillna(0.0)
    return frame
