"""recall@10 and candidate AUC of the recommenders on a split, next to their baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.models.data import TrainingData, bought_mask
from engine.models.recommend.baselines import (
    ALSRecommender,
    CategoryRecommender,
    PopularityRecommender,
    RepeatRecommender,
    TopN,
)
from engine.models.recommend.features import EXPLORE_FEATURES, FEATURES
from engine.models.recommend.interactions import watermark
from engine.models.recommend.ranker import RankedRecommender, bought_codes, labelled


def recall_at_10(ranked: dict[str, list[str]], truth: dict[str, set[str]],
                 before: dict[str, set[str]] | None = None) -> tuple[float, int]:
    """Mean |top-10 ∩ truth| / min(10, |truth|); with `before`, products bought before are dropped from both."""
    scores = []
    for cid, bought in truth.items():
        top = ranked[cid]
        if before is not None:
            old = before.get(cid, set())
            bought = bought - old
            top = [p for p in top if p not in old]
            if not bought:
                continue
        scores.append(len(set(top[:10]) & bought) / min(10, len(bought)))
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)


def grouped_auc(groups: np.ndarray, label: np.ndarray, score: np.ndarray) -> tuple[float, int]:
    """ROC AUC within each group (ties count half), averaged over the groups holding both classes; and their count."""
    frame = pd.DataFrame({"g": groups, "y": label.astype(bool), "s": score})
    rank = frame.groupby("g")["s"].rank(method="average")
    by = frame.assign(r=rank.where(frame["y"], 0.0)).groupby("g")
    pos, size, rank_sum = by["y"].sum(), by.size(), by["r"].sum()
    neg = size - pos
    both = (pos > 0) & (neg > 0)
    if not both.any():
        return float("nan"), 0
    auc = (rank_sum[both] - pos[both] * (pos[both] + 1) / 2) / (pos[both] * neg[both])
    return float(auc.mean()), int(both.sum())


def _candidate_auc(ranked: RankedRecommender, train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
    """AUC of the ranker and of explore over their own candidates at the split (bought after it or not), per
    customer, next to single features on the same candidates."""
    from threadpoolctl import threadpool_limits

    now = pd.Timestamp(watermark(train))
    inter, repeat_frame, explore_frame = ranked._frames(train.lines, now)
    assert repeat_frame is not None
    # Labelled as the rankers' training rows are: bought on or after the split, by a customer buying then.
    bought = bought_codes(inter, test_lines, now, test_lines["event_time"].max() + pd.Timedelta(seconds=1))
    out: dict[str, float] = {}
    for name, model, frame, columns, baselines in (
            ("auc_product", ranked.ranker_, repeat_frame, FEATURES, {"als": "als", "repeat_decay90": "decayed"}),
            ("auc_new", ranked.explorer_, explore_frame, EXPLORE_FEATURES, {"als": "als", "neighbours": "knn"})):
        frame, label = labelled(inter, frame, bought)
        c = frame["c"].to_numpy()
        with threadpool_limits(1):
            score = model.predict_proba(frame[list(columns)].to_numpy(float))[:, 1]
        out[name], out[f"n_customers_{name}"] = grouped_auc(c, label, score)
        for baseline, column in baselines.items():
            out[f"{name}_{baseline}"], _ = grouped_auc(c, label, frame[column].to_numpy(float))
    return out


def evaluate(train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
    """recall@10 (product, new-to-customer, category) of the ranker, explore and the category model, with baselines.

    auc_product / auc_new: how well the ranker and explore order their own candidates (see `_candidate_auc`).

    recall10_category is `CategoryRecommender`; recall10_category_als the customer × category ALS it replaced.
    """
    bought_after = test_lines[bought_mask(test_lines)]
    known = {cid for cid, s in train.states.items() if s.baskets > 0} if train.states else \
        set(train.lines["customer_id"].astype(str))
    bought_after = bought_after[bought_after["customer_id"].astype(str).isin(known)]
    customers = bought_after["customer_id"].astype(str)
    truth = {c: set(g) for c, g in bought_after["product_id"].astype(str).groupby(customers)}
    before_lines = train.lines[train.lines["customer_id"].astype(str).isin(truth)]
    before = {c: set(g) for c, g in before_lines["product_id"].astype(str).groupby(
        before_lines["customer_id"].astype(str))}
    ids = sorted(truth)
    deep = 60  # new-to-customer lists drop what was bought before, so ask for more than 10

    def lists(model: TopN, n: int = 10) -> dict[str, list[str]]:
        return model.recommend_batch(ids, n)

    out: dict[str, float] = {}
    popularity = PopularityRecommender().fit(train)
    als = ALSRecommender().fit(train)
    ranked = RankedRecommender().fit(train)
    out["recall10_product"], out["n_customers_product"] = recall_at_10(lists(ranked), truth)
    out["recall10_product_popularity"], _ = recall_at_10(lists(popularity), truth)
    out["recall10_product_als"], _ = recall_at_10(lists(als), truth)
    out["recall10_product_repeat"], _ = recall_at_10(lists(RepeatRecommender(half_life_days=None).fit(train)), truth)
    out["recall10_product_repeat_decay90"], _ = recall_at_10(lists(RepeatRecommender(90.0).fit(train)), truth)
    explore = {cid: ranked.explore(cid, deep) for cid in ids}
    out["recall10_new"], out["n_customers_new"] = recall_at_10(explore, truth, before)
    out["recall10_new_popularity"], _ = recall_at_10(lists(popularity, deep), truth, before)
    out["recall10_new_als"], _ = recall_at_10(lists(als, deep), truth, before)
    out.update(_candidate_auc(ranked, train, test_lines))

    cat_after = bought_after.assign(customer_id=customers, category=bought_after["category"].astype(str))
    cat_truth = {c: set(g) for c, g in cat_after["category"].groupby(cat_after["customer_id"])}
    als_cat = ALSRecommender(level="category").fit(train)
    category = CategoryRecommender().fit(train)
    out["recall10_category"], out["n_customers_category"] = recall_at_10(lists(category), cat_truth)
    out["recall10_category_popularity"], _ = recall_at_10(
        {cid: als_cat.popular_[:10] for cid in ids}, cat_truth)
    out["recall10_category_als"], _ = recall_at_10(lists(als_cat), cat_truth)
    return out
