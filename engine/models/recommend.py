"""Recommendations: popularity, personal repeat, implicit ALS, a learned ranker over them, and explore.

Every recommender is fitted on `TrainingData` and answers `recommend(customer_id, n) -> [product_id]`.
The ranker (`RankedRecommender`) is a pointwise gradient-boosting model over candidates (the
customer's own products, ALS's top products, the top products of the customer's nearest neighbours — customers
who bought alike — and the popular ones), trained on a time-shifted split
inside the training period: features up to `until - label_days`, labels = bought in the `label_days`
after. It is then applied to features up to `until`. Explore recommendations are the same idea
restricted to products the customer has never bought (its ranker can also learn from earlier cuts: `explore_cuts`).
`CategoryRecommender` ranks top categories per customer.
The refit job fits only those two (`MODELS`); the others are the baselines `evaluate` measures them against.

Returns: a product whose net line count in the customer's state is ≤ 0 (bought, then returned) is
never recommended to that customer, and a product whose net count over everyone is ≤ 0 is never
recommended at all. Products of `exclude_categories` (by default UNKNOWN: no catalog row to show) neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from engine.errors import ConfigError, NudgeError
from engine.events import UNKNOWN_CATEGORY
from engine.models.base import Estimator
from engine.models.data import TrainingData, bought_mask, factorize, indexer, voided_mask

# The BLAS under implicit must run single-threaded: threads make ALS slower here and non-deterministic.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DAY = 86400.0


# -- interactions --------------------------------------------------------------------------------


@dataclass
class Interactions:
    """Customer × product figures from the lines before `now`: the one input every recommender reads."""

    now: pd.Timestamp
    customers: pd.Index  # customer ids (str), row order
    products: pd.Index  # product ids (str), column order
    category: np.ndarray  # top category code per product
    categories: pd.Index  # top category names
    pairs: pd.DataFrame  # one row a (customer, product) with net > 0: c, p, net, decayed, days, first, last
    counts: sp.csr_matrix  # net line counts (> 0 only)
    popularity: np.ndarray  # net lines per product (all customers)
    recent: np.ndarray  # bought lines per product in the last `recent_days`
    buyers: np.ndarray  # customers per product
    customer_lines: np.ndarray  # net lines per customer
    customer_recency: np.ndarray  # days from the customer's last purchase to `now`
    category_share: sp.csr_matrix  # customer × category share of the customer's lines


def interactions(lines: pd.DataFrame, now: datetime | pd.Timestamp, half_life_days: float = 90.0,
                 recent_days: int = 28) -> Interactions:
    """Aggregate `lines` before `now` per customer and product (returned lines count −1)."""
    now = pd.Timestamp(now)
    lines = lines[(lines["event_time"] < now) & ~voided_mask(lines)]  # a voided scan is neither bought nor returned
    if lines.empty:
        raise NudgeError(f"recommend: no purchase lines before {now.isoformat()} to fit on")
    cust_codes, customers = factorize(lines["customer_id"])
    prod_codes, products = factorize(lines["product_id"])
    returned = ((lines["quantity"] < 0) | (lines["amount"] < 0)).to_numpy()
    sign = np.where(returned, -1.0, 1.0)
    age = ((now - lines["event_time"]).dt.total_seconds() / DAY).to_numpy()
    day = np.floor(-age).astype(np.int64)  # day number relative to `now` (negative)
    bought = ~returned
    frame = pd.DataFrame({
        "c": cust_codes, "p": prod_codes, "net": sign,
        "decayed": np.where(bought, 0.5 ** (age / half_life_days), 0.0),
        "decayed_fast": np.where(bought, 0.5 ** (age / 21.0), 0.0),
        "day": np.where(bought, day, np.iinfo(np.int64).min),
    })
    grouped = frame.groupby(["c", "p"], sort=True)
    pairs = grouped.agg(net=("net", "sum"), decayed=("decayed", "sum"), decayed_fast=("decayed_fast", "sum"),
                        last=("day", "max")).reset_index()
    days = frame[bought].drop_duplicates(["c", "p", "day"]).groupby(["c", "p"], sort=True)["day"]
    span = days.agg(["min", "count"]).rename(columns={"min": "first", "count": "days"}).reset_index()
    pairs = pairs.merge(span, on=["c", "p"], how="left")
    pairs = pairs[pairs["net"] > 0].reset_index(drop=True)
    shape = (len(customers), len(products))
    counts = sp.csr_matrix((pairs["net"].to_numpy(np.float32), (pairs["c"], pairs["p"])), shape=shape)

    cat_codes, categories = factorize(lines["category"])
    category = np.zeros(len(products), dtype=np.int64)
    category[prod_codes] = cat_codes
    popularity = np.bincount(prod_codes, weights=sign, minlength=len(products))
    recent_mask = bought & (age < recent_days)
    recent = np.bincount(prod_codes[recent_mask], minlength=len(products)).astype(float)
    buyers = np.bincount(pairs["p"], minlength=len(products)).astype(float)
    customer_lines = np.bincount(pairs["c"], weights=pairs["net"], minlength=len(customers))
    last_day = np.full(len(customers), np.iinfo(np.int64).min)
    np.maximum.at(last_day, cust_codes[bought], day[bought])
    per_cat = sp.csr_matrix((pairs["net"].to_numpy(float), (pairs["c"], category[pairs["p"]])),
                            shape=(len(customers), len(categories)))
    share = sp.diags(1.0 / np.maximum(customer_lines, 1.0)) @ per_cat
    return Interactions(now, customers, products, category, categories, pairs, counts, popularity, recent,
                        buyers, customer_lines, -last_day.astype(float), share.tocsr())


def _banned(data: TrainingData, inter: Interactions, exclude_categories: tuple[str, ...]) -> set[str]:
    """Products never to recommend: net ≤ 0 over everyone (states when present), or an excluded category."""
    banned = set(inter.products[inter.popularity <= 0])
    if data.states:
        totals: dict[str, int] = {}
        for state in data.states.values():
            for pid, count in state.products.items():
                totals[pid] = totals.get(pid, 0) + count
        banned |= {pid for pid, total in totals.items() if total <= 0}
    excluded = [i for i, name in enumerate(inter.categories) if name in exclude_categories]
    banned |= set(inter.products[np.isin(inter.category, excluded)])
    return banned


# -- the shared serving part ---------------------------------------------------------------------


class _TopN(Estimator):
    """Serving shared by every recommender: stored rankings, exclusions, popular fill-in."""

    name: ClassVar[str]
    ranked_: dict[str, list[str]]
    popular_: list[str]
    banned_: set[str]
    returned_: dict[str, set[str]]  # customer -> products bought and returned (net ≤ 0 in the state)
    metrics_: dict[str, float]

    def _serving(self, data: TrainingData, inter: Interactions, exclude_categories: tuple[str, ...]) -> None:
        self.banned_ = _banned(data, inter, exclude_categories)
        order = np.argsort(-inter.popularity, kind="stable")
        self.popular_ = [p for p in inter.products[order[:500]] if p not in self.banned_]
        self.returned_ = {}
        for cid, state in data.states.items():
            gone = {pid for pid, count in state.products.items() if count <= 0}
            if gone:
                self.returned_[cid] = gone

    def _check_fitted(self) -> None:
        if not hasattr(self, "ranked_"):
            raise NudgeError(f"{self.name}: recommend() called before fit()")

    def recommend(self, customer_id: str, n: int = 10) -> list[str]:
        """The top `n` products for `customer_id` (popular products for a customer never seen)."""
        self._check_fitted()
        if n < 1:
            raise ConfigError(f"{self.name}: n must be at least 1, got {n}")
        returned = self.returned_.get(customer_id, set())
        out: list[str] = []
        seen: set[str] = set()
        for source in (self.ranked_.get(customer_id, ()), self.popular_):
            for pid in source:
                if pid in seen or pid in returned or pid in self.banned_:
                    continue
                seen.add(pid)
                out.append(pid)
                if len(out) == n:
                    return out
        return out

    def recommend_batch(self, customer_ids: list[str], n: int = 10) -> dict[str, list[str]]:
        """`recommend` for many customers."""
        return {cid: self.recommend(cid, n) for cid in customer_ids}


def _rankings(customers: pd.Index, products: pd.Index, rows: np.ndarray, cols: np.ndarray,
              scores: np.ndarray, depth: int) -> dict[str, list[str]]:
    """Per customer, products by descending score (ties by product id order), cut at `depth`."""
    order = np.lexsort((cols, -scores, rows))
    rows, cols = rows[order], cols[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(rows)]
    names = products.to_numpy()
    return {customers[rows[s]]: names[cols[s:min(e, s + depth)]].tolist() for s, e in zip(starts, ends, strict=True)}


# -- baselines -----------------------------------------------------------------------------------


class PopularityRecommender(_TopN):
    """Products ranked by line count before the watermark, the same list for everyone."""

    name: ClassVar[str] = "popularity"

    def __init__(self, exclude_categories: tuple[str, ...] = (UNKNOWN_CATEGORY,)) -> None:
        self.exclude_categories = exclude_categories


    def fit(self, data: TrainingData) -> Self:
        """Count lines per product."""
        inter = interactions(data.lines, _watermark(data))
        self._serving(data, inter, self.exclude_categories)
        self.ranked_ = {}
        self.metrics_ = {"products": float(len(inter.products))}
        return self


class RepeatRecommender(_TopN):
    """The customer's own products by line count, or by recency-decayed count; popular ones fill in."""

    name: ClassVar[str] = "repeat"

    def __init__(self, half_life_days: float | None = 90.0,
                 exclude_categories: tuple[str, ...] = (UNKNOWN_CATEGORY,)) -> None:
        self.half_life_days = half_life_days
        self.exclude_categories = exclude_categories


    def fit(self, data: TrainingData) -> Self:
        """Rank each customer's products; a None half-life ranks by plain count."""
        inter = interactions(data.lines, _watermark(data), self.half_life_days or 90.0)
        self._serving(data, inter, self.exclude_categories)
        pairs = inter.pairs
        score = pairs["net" if self.half_life_days is None else "decayed"].to_numpy(float)
        self.ranked_ = _rankings(inter.customers, inter.products, pairs["c"].to_numpy(), pairs["p"].to_numpy(),
                                 score, depth=100)
        self.metrics_ = {"customers": float(len(self.ranked_))}
        return self


class ALSRecommender(_TopN):
    """`implicit` ALS on customer × product (or × top category) with log1p(count) confidence."""

    name: ClassVar[str] = "als"

    def __init__(self, level: str = "product", factors: int = 64, regularization: float = 0.05,
                 alpha: float = 1.0, iterations: int = 15, random_state: int = 0,
                 exclude_categories: tuple[str, ...] = (UNKNOWN_CATEGORY,)) -> None:
        self.level = level
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.exclude_categories = exclude_categories


    def fit(self, data: TrainingData) -> Self:
        """Fit ALS and store each customer's top items (products, or categories for level='category')."""
        if self.level not in ("product", "category"):
            raise ConfigError(f"als: level must be 'product' or 'category', got {self.level!r}")
        inter = interactions(data.lines, _watermark(data))
        self._serving(data, inter, self.exclude_categories)
        if self.level == "category":
            matrix = _category_counts(inter)
            items = inter.categories
            self.popular_ = list(items[np.argsort(-np.asarray(matrix.sum(axis=0)).ravel(), kind="stable")])
            self.banned_ = set()
        else:
            matrix, items = inter.counts, inter.products
        self.model_ = fit_als(matrix, self.factors, self.regularization, self.alpha, self.iterations,
                              self.random_state)
        self.customers_, self.items_ = inter.customers, items
        depth = min(100, len(items))
        ids, scores = _als_top(self.model_, matrix, depth)
        rows = np.repeat(np.arange(len(inter.customers)), depth)
        self.ranked_ = _rankings(inter.customers, items, rows, ids.ravel(), scores.ravel(), depth)
        self.metrics_ = {"customers": float(len(inter.customers)), "items": float(len(items))}
        return self


class CategoryRecommender(_TopN):
    """Top categories per customer: the customer's share of recency-decayed lines in each, plus category popularity.

    On July–September (fitted before July) this beat category popularity (0.909 vs 0.890 recall@10) where
    ALS on customer × category did not; the popularity term orders categories the customer shares evenly.
    """

    name: ClassVar[str] = "recommend_category"

    def __init__(self, half_life_days: float = 90.0, popularity_weight: float = 0.5,
                 exclude_categories: tuple[str, ...] = (UNKNOWN_CATEGORY,)) -> None:
        self.half_life_days = half_life_days
        self.popularity_weight = popularity_weight
        self.exclude_categories = exclude_categories


    def fit(self, data: TrainingData) -> Self:
        """Score each customer's categories; categories popular overall fill in."""
        if self.half_life_days <= 0 or self.popularity_weight < 0:
            raise ConfigError(f"{self.name}: half_life_days must be > 0 and popularity_weight ≥ 0, got "
                              f"{self.half_life_days} and {self.popularity_weight}")
        inter = interactions(data.lines, _watermark(data), self.half_life_days)
        pairs = inter.pairs
        shape = (len(inter.customers), len(inter.categories))
        decayed = sp.csr_matrix((pairs["decayed"].to_numpy(float), (pairs["c"], inter.category[pairs["p"]])),
                                shape=shape)
        share = sp.diags(1.0 / np.maximum(np.asarray(decayed.sum(axis=1)).ravel(), 1e-12)) @ decayed
        popularity = np.asarray(_category_counts(inter).sum(axis=0)).ravel()
        popularity_share = popularity / max(popularity.sum(), 1.0)
        own = share.tocoo()
        score = own.data + self.popularity_weight * popularity_share[own.col]
        self.ranked_ = _rankings(inter.customers, inter.categories, own.row, own.col, score,
                                 depth=len(inter.categories))
        self.popular_ = list(inter.categories[np.argsort(-popularity, kind="stable")])
        self.banned_ = set(self.exclude_categories)
        self.returned_ = {}
        self.metrics_ = {"customers": float(len(self.ranked_)), "categories": float(len(inter.categories))}
        return self


def _category_counts(inter: Interactions) -> sp.csr_matrix:
    pairs = inter.pairs
    return sp.csr_matrix((pairs["net"].to_numpy(np.float32), (pairs["c"], inter.category[pairs["p"]])),
                         shape=(len(inter.customers), len(inter.categories)))


def fit_als(counts: sp.csr_matrix, factors: int, regularization: float, alpha: float, iterations: int,
            random_state: int) -> Any:
    """Seeded single-threaded `implicit` ALS on log1p(count) confidence."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    weighted = counts.astype(np.float32, copy=True).tocsr()
    weighted.data = np.log1p(weighted.data)
    with threadpool_limits(1):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=random_state, num_threads=1)
        model.fit(weighted, show_progress=False)
    return model


def _als_top(model: Any, counts: sp.csr_matrix, depth: int, unseen: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top `depth` items for every customer row (optionally only items the customer has not bought)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        ids, scores = model.recommend(np.arange(counts.shape[0]), counts, N=depth, filter_already_liked_items=unseen)
    return ids, scores


def neighbour_scores(inter: Interactions, columns: np.ndarray, neighbours: int) -> np.ndarray:
    """Customers × `columns` (product codes): summed cosine similarity of the customer's nearest buyers of each.

    User-based nearest neighbours on who bought what: on July–September (fitted before July) it finds more of
    the products a customer buys for the first time than ALS or popularity do.
    """
    bought = (inter.counts > 0).astype(np.float32).tocsr()
    norm = 1.0 / np.sqrt(np.maximum(np.asarray(bought.sum(axis=1)).ravel(), 1.0))
    unit = sp.diags(norm.astype(np.float32)) @ bought
    similarity = (unit @ unit.T).toarray()
    np.fill_diagonal(similarity, 0.0)
    if neighbours < similarity.shape[1]:
        # Keep each customer's `neighbours` most similar customers (ties at the threshold stay: deterministic).
        threshold = -np.partition(-similarity, neighbours - 1, axis=1)[:, neighbours - 1:neighbours]
        similarity[similarity < threshold] = 0.0
    scores = sp.csr_matrix(similarity) @ bought[:, columns].tocsc()
    return np.asarray(scores.toarray(), dtype=np.float32)


@dataclass
class ProductScores:
    """Customer × product scores of the most popular products (the columns)."""

    columns: np.ndarray  # product codes scored
    position: np.ndarray  # product code -> its column in `scores`, −1 when not scored
    scores: np.ndarray  # customers × columns

    @staticmethod
    def _columns(inter: Interactions, products: int) -> tuple[np.ndarray, np.ndarray]:
        """The `products` most popular product codes, and each product code's column (−1 when not scored)."""
        columns = np.argsort(-inter.popularity, kind="stable")[:products]
        position = np.full(len(inter.products), -1, dtype=np.int64)
        position[columns] = np.arange(len(columns))
        return columns, position

    def top_unseen(self, inter: Interactions, depth: int) -> pd.DataFrame:
        """(c, p): each customer's `depth` best-scored products it never bought (score > 0 only)."""
        scores = self.scores.copy()
        seen = inter.counts[:, self.columns].tocoo()
        scores[seen.row, seen.col] = 0.0
        depth = min(depth, scores.shape[1])
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        rows = np.repeat(np.arange(scores.shape[0]), depth)
        keep = scores[rows, top.ravel()] > 0
        return pd.DataFrame({"c": rows[keep], "p": self.columns[top.ravel()[keep]]})

    def of(self, c: np.ndarray, p: np.ndarray) -> np.ndarray:
        """The score of each (c, p); 0 for a product outside the scored ones."""
        col = self.position[p]
        return np.where(col >= 0, self.scores[c, np.maximum(col, 0)], 0.0)


class Neighbours(ProductScores):
    """Nearest-neighbour scores of the most popular products, per customer."""

    @classmethod
    def fit(cls, inter: Interactions, products: int, neighbours: int) -> Neighbours:
        """Score the `products` most popular products for every customer from `neighbours` neighbours."""
        columns, position = cls._columns(inter, products)
        return cls(columns, position, neighbour_scores(inter, columns, neighbours))


class CoBought(ProductScores):
    """Item-to-item scores: how often each product shares a basket with the customer's (recency-decayed) products.

    C = BᵀB over baskets × products; C[i, j] / (n_i^(1−power) n_j^power), n = baskets holding the product, so
    `power` trades a product's popularity against its affinity. Alone, on July–September (fitted before July), it
    found 0.120 of the products new to the customer (power 0.3) against 0.118 with power 0 and 0.118 with 0.5.
    """

    @classmethod
    def fit(cls, inter: Interactions, lines: pd.DataFrame, products: int, power: float) -> CoBought:
        """Score the `products` most popular products for every customer from the baskets of `lines` before now."""
        columns, position = cls._columns(inter, products)
        lines = lines[(lines["event_time"] < inter.now) & bought_mask(lines)]
        code = indexer(inter.products, lines["product_id"])
        col = np.where(code >= 0, position[np.maximum(code, 0)], -1)
        basket, _ = factorize(lines["event_id"])
        keep = col >= 0
        baskets = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (basket[keep], col[keep])),
                                shape=(int(basket.max()) + 1 if len(basket) else 0, len(columns)))
        baskets.data[:] = 1.0  # a product twice in one basket counts once
        together = (baskets.T @ baskets).tocsr()
        held = np.maximum(together.diagonal(), 1.0)
        together.setdiag(0.0)
        together.eliminate_zeros()
        scaled = sp.diags((held ** (power - 1.0)).astype(np.float32)) @ together @ sp.diags(
            (held ** -power).astype(np.float32))
        pairs = inter.pairs
        pc = position[pairs["p"].to_numpy()]
        mine = pc >= 0
        profile = sp.csr_matrix((pairs["decayed"].to_numpy(np.float32)[mine], (pairs["c"].to_numpy()[mine], pc[mine])),
                                shape=(len(inter.customers), len(columns)))
        return cls(columns, position, np.asarray((profile @ scaled).toarray(), dtype=np.float32))


# -- the learned ranker --------------------------------------------------------------------------

FEATURES = ("decayed", "decayed_fast", "net", "days", "since_last", "own_gap", "due", "product_gap", "als",
            "als_rank", "knn", "knn_rank", "popularity", "recent", "buyers", "repeat_rate", "category_share",
            "customer_lines", "customer_recency", "own")
# Products never bought by the customer have no own history. Of the rest, explore keeps the ones that rank new
# products: with all of them (gaps, repeat rate, recency) it did worse on July–September than neighbours alone.
# Co-bought scores (CoBought) find new products too: as 30 more candidates and two features they raised explore's
# recall@10 on July–September (fitted before July) from 0.1355 to 0.1376, and on August–September (fitted before
# August) from 0.0899 to 0.0911; as features without the candidates, 0.1351. A product's share of its category,
# category share × that, and its last-28-days share of sales raised July–September to 0.1438 but lowered
# August–September to 0.0889: left out.
# Training rows: with `explore_cuts=2` explore also learns from a second cut 28 days earlier, 120 trees at 0.05:
# recall@10 July–September 0.1376 -> 0.1434, August–September 0.0911 -> 0.0923, September (fitted before
# September) 0.0501 -> 0.0524; two earlier cuts 0.1439 / 0.0939 / 0.0516 for another frame's fit time; the
# extra cut alone (60 trees at 0.1) 0.1432 / 0.0910 / 0.0524. On the test split (fitted before October, measured
# once after choosing) it did not carry over: 0.1124 -> 0.1120. It adds ~10 s to the full-year fit, the refit's long
# pole (bench/refit.py 58.2 s of the < 60 s target with it): the default stays one cut, 60 trees at 0.1.
# Tried with it and left out (none better on all three
# within noise, ±0.003): a product's new buyers (first purchase) in the last 28/56/92 days, their share of the
# recent buyers, their trend, buyers in the last 28 days who did not buy in the 56 before; the customer's share
# of recent products that were new to them; popularity and customer lines as shares (the cut has less history
# than the watermark); knn/co-bought/ALS relative to the customer's best. Without the stacked cut: more knn,
# co-bought, ALS or popular candidates (60 each: 0.1353 / 0.0894), the products with most new buyers as
# candidates (0.1374 / 0.0876), larger or more regularised trees (≤ 0.1357 / 0.0902). With it, neither a cut 14
# days earlier (0.1375 / 0.0908 / 0.0512) nor rows weighted by 1 / min(10, the customer's new products), as the
# metric weighs them (0.1425 / 0.0904 / 0.0515), did better; neighbours' recent (28-day) or newly adopted (56-day)
# products as knn features moved the three by ≤ 0.002 either way (0.1452 / 0.0922 / 0.0531 with both).
# Sub-category (Complete Journey product_category, e.g. YOGURT, kept as a `subcategory` line column) in place of the
# department: the customer's share of lines in the product's sub-category moved July–September / August–September
# 0.1376 / 0.0911 -> 0.1394 / 0.0921 (ALS seed 0), but 0.1340 / 0.0906 -> 0.1327 / 0.0937 with seed 1 (the seed
# alone moves the base by 0.0036): noise. Its recency-decayed share 0.1337 / 0.0898; with the product's share of its
# sub-category's buyers 0.1414 / 0.0888; share / the sub-category's share of all lines 0.1375 / 0.0898; distinct
# products bought in it 0.1370 / 0.0913; sub-category share instead of category share 0.1354 / 0.0908: left out.
# Also tried (session 7, same three checks Jul–Sep / Aug–Sep / Sep, base 0.1376 / 0.0911 / 0.0501, mean 0.0929), all
# within the seed noise and left out: EASE item-item scores (closed-form ridge on the 3,000 most popular products,
# binary; ~3.4 s a frame) as a feature with its rank — λ 200: 0.1402 / 0.0911 / 0.0501, λ 800: 0.1391 / 0.0930 /
# 0.0526, λ 2000: 0.1368 / 0.0926 / 0.0521, 6,000 products (18 s a frame): 0.1396 / 0.0913 / 0.0509; the score alone
# 0.1427 / 0.0916 / 0.0510; as 30 more candidates it adds 0.2 % of the new products bought. The customer's share of
# lines and distinct products in the candidate's Complete Journey product_type (0.1380 / 0.0924 / 0.0519) or its
# manufacturer × product_category (0.1395 / 0.0908 / 0.0498). ALS scores averaged over three seeds (0.1374 / 0.0910 /
# 0.0502). LightGBM instead of the pointwise classifier: lambdarank (0.1404 / 0.0916 / 0.0514), rank_xendcg (0.1370 /
# 0.0908 / 0.0515), its binary objective (0.1337 / 0.0897 / 0.0504) — not worth a new dependency.
# Diversifying the list (at most 1 / 2 / 3 products of one product_category in the top, the rest after) lowered it:
# 0.1325 / 0.0868 / 0.0484, 0.1367 / 0.0910 / 0.0492, 0.1373 / 0.0913 / 0.0501 (by product_type: 0.1368 / 0.0900 /
# 0.0494 at 1).
# Stacked cuts later than the ranker's, whose labels run to the watermark (28 or 56 days instead of 92), 120 trees at
# 0.05: a cut 28 days before the watermark 0.1352 / 0.0891 / 0.0502, 56 days 0.1442 / 0.0909 / 0.0528, both 0.1393 /
# 0.0916 / 0.0513, 56 days with the 28-days-earlier cut 0.1445 / 0.0946 / 0.0523 — no better than `explore_cuts=2`
# (0.1434 / 0.0923 / 0.0524), whose validation gain did not carry over to the test.
# The customer's recent share of lines in the candidate's category (last 28 or 56 days) and its change from the
# whole history's share: 0.1372 / 0.0903 / 0.0499 (28), 0.1351 / 0.0902 / 0.0500 (56), both changes 0.1377 / 0.0901 /
# 0.0502.
# A differently tuned ALS for explore only (the repeat ranker's ALS kept; session 8). Alone, top-10 never-bought
# by ALS score, Jul–Sep / Aug–Sep: the current ALS 0.1228 / 0.0829 (seeds 1, 2: 0.1238 / 0.0852, 0.1217 / 0.0851);
# fewer factors help it alone — 32: 0.1302 / 0.0863 (seeds 1, 2: 0.1300 / 0.0875, 0.1306 / 0.0881), 16: 0.1328 /
# 0.0875, 24: 0.1325 / 0.0888, 48: 0.1281 / 0.0856, 32 with regularization 5 on binary counts: 0.1334 / 0.0902 —
# and more hurt (128: 0.1120 / 0.0785, 200: 0.0982 / 0.0693); regularization 0.5 / 5 / 50: 0.1230 / 0.0834, 0.1265 /
# 0.0850, 0.1266 / 0.0830; alpha 5 / 20 / 40: 0.1243 / 0.0816, 0.0927 / 0.0568, 0.0665 / 0.0427; 30 iterations
# 0.1246 / 0.0833; binary 0.1259 / 0.0851; log1p of the 90-day decayed counts 0.1190 / 0.0795 (alpha 5: 0.1263 /
# 0.0837); BM25 weighting (K1 100 or 1000, B 0.5-0.9) 0.1039-0.1077 / 0.0684-0.0716; implicit's item-item
# recommenders: cosine (K 50-200) 0.1260-0.1274 / 0.0832-0.0837, TF-IDF (K 100, 200) 0.1282 / 0.0832, 0.1265 /
# 0.0843, BM25 (K 50, 200) 0.0447 / 0.0375, 0.0535 / 0.0446. In the ranker (Jul–Sep / Aug–Sep / Sep, base 0.1376 /
# 0.0911 / 0.0501) none beats the seed noise on all three: 32 factors as two more features (score, rank) 0.1381 /
# 0.0889 / 0.0497, replacing the ALS features 0.1380 / 0.0909 / 0.0494, features + its top-30 unseen as candidates
# 0.1423 / 0.0912 / 0.0504 (its seeds 1, 2: 0.1395 / 0.0914 / 0.0514, 0.1384 / 0.0901 / 0.0506), as the ALS of the
# explore features and candidates 0.1388 / 0.0908 / 0.0510, candidates alone 0.1364 / 0.0896 / 0.0511; 32 factors,
# regularization 5, binary: features 0.1360 / 0.0904 / 0.0500, replacing 0.1362 / 0.0913 / 0.0514, candidates 0.1378
# / 0.0902 / 0.0509, features + candidates 0.1392 / 0.0913 / 0.0491, as explore's ALS 0.1385 / 0.0906 / 0.0480;
# features + candidates with 16 factors 0.1410 / 0.0909 / 0.0514, 24: 0.1386 / 0.0928 / 0.0494, 64 at
# regularization 5: 0.1403 / 0.0909 / 0.0508, decayed alpha 5: 0.1363 / 0.0898 / 0.0501; 16 factors as explore's
# ALS 0.1367 / 0.0892 / 0.0505 (features only 0.1359 / 0.0902 / 0.0504): left out.
# A directed, temporal transition model (session 8): T[i, j] = share of the customers with i bought in the W days before
# a reference cut R who newly adopted j in [R, R + L), on the 6,000 most popular products; a customer's score for j = Σ
# over their last-W-days products of T[i, j]. No leakage: a frame at `now` uses R ≤ now − L, so with L = 92 the
# July–September training frame (cut Apr 1) has no history before R (its feature is all zero), and the Aug–Sep / Sep
# ones only 27 / 58 days. Alone (top-10 never-bought, Jul–Sep / Aug–Sep; CoBought 0.1210 / 0.0778, ALS 0.1228 / 0.0829):
# W=28 0.0959 / 0.0546, W=56 0.0988 / 0.0550, R = now − 92 and − 120 averaged 0.1051 / 0.0562 (W=56), shrinkage 20
# 0.0975, decayed profile weights 0.0957-0.0967, lift by j's adoption rate (power 0.5 / 1) 0.0553 / 0.0163, L=56 / 28
# 0.0937 / 0.0856 (shrinkage to L: Jul–Sep only) — mostly popularity. In the ranker (base 0.1376 / 0.0911 / 0.0501),
# score + rank as features: W=56 two cuts 0.1376 / 0.0905 / 0.0524, W=28 0.1376 / 0.0902 / 0.0511, lift 0.1376 / 0.0905
# / 0.0521, L=56 0.1405 / 0.0903 / 0.0499, L=56 W=56 two cuts 0.1382 / 0.0910 / 0.0508, L=28 0.1387 / 0.0886 / 0.0505;
# its top 30 as candidates 0.1374 / 0.0904 / 0.0500 (L=56: 0.1333 / 0.0895 / 0.0507), both 0.1374 / 0.0892 / 0.0500
# (L=56): within the seed noise, left out. (The rank of an all-zero score must be constant: ranked by frame order it
# looked like a gain, 0.1412 on Jul–Sep.)
EXPLORE_FEATURES = ("knn", "knn_rank", "als", "als_rank", "popularity", "recent", "category_share", "customer_lines",
                    "cobought", "cobought_rank")


def candidates(inter: Interactions, als: Any, knn: Neighbours, own: int, from_als: int, popular: int, from_knn: int,
               unseen: bool = False, cobought: CoBought | None = None, from_cobought: int = 0) -> pd.DataFrame:
    """(c, p) candidates: top own products by decayed count, ALS's, neighbours' and co-bought top, the most popular."""
    parts = [knn.top_unseen(inter, from_knn)]
    if cobought is not None and from_cobought > 0:
        parts.append(cobought.top_unseen(inter, from_cobought))
    if not unseen:
        mine = inter.pairs.sort_values(["c", "decayed"], ascending=[True, False], kind="stable")
        parts.append(mine.groupby("c", sort=False).head(own)[["c", "p"]])
    ids, _ = _als_top(als, inter.counts, from_als, unseen=unseen)
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


class RankedRecommender(_TopN):
    """A gradient-boosting ranker over own, ALS and popular candidates, trained on a time-shifted split.

    `explore(customer_id, n)` ranks only products the customer never bought, with a second ranker.
    """

    name: ClassVar[str] = "recommend"

    def __init__(self, factors: int = 64, regularization: float = 0.05, alpha: float = 1.0, iterations: int = 15,
                 half_life_days: float = 90.0, label_days: int = 92, own_candidates: int = 60,
                 als_candidates: int = 30, popular_candidates: int = 20, knn_candidates: int = 30,
                 knn_products: int = 6000, neighbours: int = 200, max_iter: int = 200,
                 learning_rate: float = 0.05, explore_max_iter: int = 60, explore_learning_rate: float = 0.1,
                 explore_cuts: int = 1, explore_cut_days: int = 28, cobought_candidates: int = 30,
                 cobought_power: float = 0.3, random_state: int = 0,
                 exclude_categories: tuple[str, ...] = (UNKNOWN_CATEGORY,)) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.half_life_days = half_life_days
        self.label_days = label_days
        self.own_candidates = own_candidates
        self.als_candidates = als_candidates
        self.popular_candidates = popular_candidates
        self.knn_candidates = knn_candidates
        self.knn_products = knn_products
        self.neighbours = neighbours
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.explore_max_iter = explore_max_iter
        self.explore_learning_rate = explore_learning_rate
        self.explore_cuts = explore_cuts
        self.explore_cut_days = explore_cut_days
        self.cobought_candidates = cobought_candidates
        self.cobought_power = cobought_power
        self.random_state = random_state
        self.exclude_categories = exclude_categories


    def _frames(self, lines: pd.DataFrame, now: pd.Timestamp,
                repeat: bool = True) -> tuple[Interactions, pd.DataFrame | None, pd.DataFrame]:
        """Interactions at `now`, and the featured candidates of the repeat (when `repeat`) and explore rankers."""
        inter = interactions(lines, now, self.half_life_days)
        als = fit_als(inter.counts, self.factors, self.regularization, self.alpha, self.iterations,
                      self.random_state)
        knn = Neighbours.fit(inter, self.knn_products, self.neighbours)
        ranked = features(inter, als, knn, candidates(inter, als, knn, self.own_candidates, self.als_candidates,
                                                      self.popular_candidates, self.knn_candidates)) if repeat else None
        # Only explore uses co-bought scores: the repeat ranker's features are left as they were chosen.
        cobought = CoBought.fit(inter, lines, self.knn_products, self.cobought_power)
        explore = features(inter, als, knn, candidates(inter, als, knn, self.own_candidates, self.als_candidates,
                                                       self.popular_candidates, self.knn_candidates, True, cobought,
                                                       self.cobought_candidates), cobought)
        return inter, ranked, explore

    def _learn(self, lines: pd.DataFrame, now: pd.Timestamp) -> tuple[Any, Any]:
        """Fit the repeat and explore rankers on features before `now - label_days`, labels after.

        Explore also learns from `explore_cuts - 1` earlier cuts, `explore_cut_days` apart, each with its
        `label_days` of labels (cuts with no lines before them are skipped).
        """
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        cut = now - pd.Timedelta(days=self.label_days)
        inter, ranked, explore = self._frames(lines, cut)
        assert ranked is not None
        bought = _bought(inter, lines, cut, now)
        training = {False: [_labelled(inter, ranked, bought)], True: [_labelled(inter, explore, bought)]}
        for k in range(1, self.explore_cuts):
            earlier = cut - pd.Timedelta(days=k * self.explore_cut_days)
            if not (lines["event_time"] < earlier).any():
                break
            inter_k, _, explore_k = self._frames(lines, earlier, repeat=False)
            bought_k = _bought(inter_k, lines, earlier, earlier + pd.Timedelta(days=self.label_days))
            training[True].append(_labelled(inter_k, explore_k, bought_k))
        models = []
        for unseen in (False, True):
            columns = list(EXPLORE_FEATURES if unseen else FEATURES)
            x = np.vstack([frame[columns].to_numpy(float) for frame, _ in training[unseen]])
            label = np.concatenate([y for _, y in training[unseen]])
            if label.sum() == 0 or label.all():
                raise NudgeError(f"recommend: no positive and negative labels between {cut.date()} and {now.date()}"
                                 " to train the ranker; fit on a longer period or lower label_days")
            with threadpool_limits(1):
                model = HistGradientBoostingClassifier(
                    max_iter=self.explore_max_iter if unseen else self.max_iter,
                    learning_rate=self.explore_learning_rate if unseen else self.learning_rate,
                    early_stopping=False, random_state=self.random_state)
                model.fit(x, label)
            models.append(model)
            kind = "explore" if unseen else "ranker"
            self.metrics_[f"{kind}_train_rows"] = float(len(label))
            self.metrics_[f"{kind}_train_positive_rate"] = float(label.mean())
        self.metrics_["explore_train_cuts"] = float(len(training[True]))
        return models[0], models[1]

    def fit(self, data: TrainingData) -> Self:
        """Train the rankers on the time-shifted split, then rank candidates at the watermark."""
        from threadpoolctl import threadpool_limits

        if self.neighbours < 1 or self.knn_products < 1 or self.knn_candidates < 1:
            raise ConfigError(f"{self.name}: neighbours, knn_products and knn_candidates must be at least 1, got "
                              f"{self.neighbours}, {self.knn_products} and {self.knn_candidates}")
        if self.explore_cuts < 1 or self.explore_cut_days < 1:
            raise ConfigError(f"{self.name}: explore_cuts and explore_cut_days must be at least 1, got "
                              f"{self.explore_cuts} and {self.explore_cut_days}")
        now = pd.Timestamp(_watermark(data))
        self.metrics_ = {}
        self.ranker_, self.explorer_ = self._learn(data.lines, now)
        inter, *frames = self._frames(data.lines, now)
        self._serving(data, inter, self.exclude_categories)
        rankings = []
        for model, unseen, frame in zip((self.ranker_, self.explorer_), (False, True), frames, strict=True):
            with threadpool_limits(1):
                columns = list(EXPLORE_FEATURES if unseen else FEATURES)
                score = model.predict_proba(frame[columns].to_numpy(float))[:, 1]
            rankings.append(_rankings(inter.customers, inter.products, frame["c"].to_numpy(), frame["p"].to_numpy(),
                                      score, depth=50))
        self.ranked_, self.explore_ = rankings
        self.metrics_["customers"] = float(len(self.ranked_))
        return self

    def explore(self, customer_id: str, n: int = 10) -> list[str]:
        """The top `n` products `customer_id` has never bought."""
        self._check_fitted()
        stored = self.ranked_
        try:
            self.ranked_ = self.explore_
            return self.recommend(customer_id, n)
        finally:
            self.ranked_ = stored


def _bought(inter: Interactions, lines: pd.DataFrame, start: pd.Timestamp,
            end: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
    """Codes (c * products + p) of what was bought in [start, end), and the customers (c) buying then."""
    later = lines[(lines["event_time"] >= start) & (lines["event_time"] < end) & bought_mask(lines)]
    c = indexer(inter.customers, later["customer_id"])
    p = indexer(inter.products, later["product_id"])
    known = (c >= 0) & (p >= 0)
    return np.unique(c[known].astype(np.int64) * len(inter.products) + p[known]), np.unique(c[c >= 0])


def _labelled(inter: Interactions, frame: pd.DataFrame,
              bought: tuple[np.ndarray, np.ndarray]) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of `frame` (candidates at the cut) of customers buying after it, and whether each was bought."""
    codes, active = bought  # active: customers seen on both sides of the cut
    frame = frame[np.isin(frame["c"].to_numpy(), active)]
    label = np.isin(frame["c"].to_numpy().astype(np.int64) * len(inter.products) + frame["p"].to_numpy(), codes)
    return frame, label


def _watermark(data: TrainingData) -> datetime:
    """The time features are computed at: the training watermark, or just after the last line."""
    if data.until is not None:
        return data.until
    if data.lines.empty:
        raise NudgeError("recommend: the training data holds no purchase lines")
    return data.lines["event_time"].max().to_pydatetime() + timedelta(seconds=1)


# What the refit job fits, versions and serves. Popularity, repeat and ALS are baselines (evaluate() refits
# them for comparison) and parts of the ranker: refitting them as models of their own only cost refit time.
MODELS: list[type[_TopN]] = [RankedRecommender, CategoryRecommender]


# -- evaluation ----------------------------------------------------------------------------------


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

    now = pd.Timestamp(_watermark(train))
    inter, repeat_frame, explore_frame = ranked._frames(train.lines, now)
    assert repeat_frame is not None
    # Labelled as the rankers' training rows are: bought on or after the split, by a customer buying then.
    bought = _bought(inter, test_lines, now, test_lines["event_time"].max() + pd.Timedelta(seconds=1))
    out: dict[str, float] = {}
    for name, model, frame, columns, baselines in (
            ("auc_product", ranked.ranker_, repeat_frame, FEATURES, {"als": "als", "repeat_decay90": "decayed"}),
            ("auc_new", ranked.explorer_, explore_frame, EXPLORE_FEATURES, {"als": "als", "neighbours": "knn"})):
        frame, label = _labelled(inter, frame, bought)
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

    def lists(model: _TopN, n: int = 10) -> dict[str, list[str]]:
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
