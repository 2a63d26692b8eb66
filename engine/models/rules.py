"""Association rules on baskets (mlxtend FP-growth), at product and top-category level, served for cross-sell.

A basket is one purchase event (its lines grouped by event_id). Only the `top_n` items bought in most
baskets enter the one-hot matrix (a sparse boolean DataFrame): rules among rare products have too
little support to trust, and the cap keeps FP-growth to seconds on a year of baskets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from mlxtend.frequent_patterns import association_rules, fpgrowth

from engine.errors import ConfigError, NudgeError
from engine.models.base import Estimator, scores_frame
from engine.models.data import TrainingData, bought_mask, factorize, indexer
from engine.models.outputs import Output, outputs_of
from engine.state import CustomerState

LEVELS = {"product": "product_id", "category": "category"}
RULE_COLUMNS = ["antecedents", "consequents", "support", "confidence", "lift"]


def basket_matrix(lines: pd.DataFrame, column: str, items: list[str] | None = None,
                  ) -> tuple[sp.csr_matrix, list[str]]:
    """Baskets × items (bought lines only) as a boolean CSR matrix, and its item names (`items` if given)."""
    bought = lines[bought_mask(lines)]
    if items is None:
        col, names = factorize(bought[column])
        items = list(names)
    else:
        col = indexer(pd.Index(items), bought[column])
    keep = col >= 0
    rows, _ = factorize(bought["event_id"])
    matrix = sp.csr_matrix((np.ones(int(keep.sum()), dtype=bool), (rows[keep], col[keep])),
                           shape=(int(rows.max()) + 1 if len(rows) else 0, len(items)))
    matrix.sum_duplicates()
    return matrix, list(items)


class AssociationRules(Estimator):
    """FP-growth rules (support, confidence, lift) among the most frequent products or top categories."""

    name: ClassVar[str] = "rules"
    outputs: ClassVar[tuple[Output, ...]] = outputs_of("rules")
    served: ClassVar[int] = 10  # products suggested per customer

    def __init__(self, level: str = "product", top_n: int = 1000, min_support: float = 0.002,
                 min_confidence: float = 0.1, min_lift: float = 1.2, max_len: int = 3) -> None:
        self.level = level
        self.top_n = top_n
        self.min_support = min_support
        self.min_confidence = min_confidence
        self.min_lift = min_lift
        self.max_len = max_len

    def fit(self, data: TrainingData) -> Self:
        """Mine frequent itemsets and rules from the training baskets."""
        if self.level not in LEVELS:
            raise ConfigError(f"rules level {self.level!r} is not one of {sorted(LEVELS)}")
        if not 0 < self.min_support < 1 or not 0 <= self.min_confidence <= 1 or self.top_n < 2:
            raise ConfigError(f"rules need 0 < min_support < 1, 0 <= min_confidence <= 1, top_n >= 2; got "
                              f"{self.min_support}, {self.min_confidence}, {self.top_n}")
        matrix, items = basket_matrix(data.lines, LEVELS[self.level])
        if matrix.shape[0] == 0:
            raise NudgeError("rules found no purchase baskets in the training lines")
        counts = np.asarray(matrix.sum(axis=0)).ravel()
        # Most frequent first; ties by name so the vocabulary is deterministic.
        order = sorted(range(len(items)), key=lambda i: (-counts[i], items[i]))[: self.top_n]
        self.items_ = [items[i] for i in order]
        sub = matrix[:, order]
        onehot = pd.DataFrame.sparse.from_spmatrix(sub, columns=self.items_)
        frequent = fpgrowth(onehot, min_support=self.min_support, use_colnames=True, max_len=self.max_len)
        if len(frequent) and (frequent["itemsets"].map(len) > 1).any():
            rules = association_rules(frequent, metric="confidence", min_threshold=self.min_confidence,
                                      num_itemsets=sub.shape[0])
            rules = rules[rules["lift"] >= self.min_lift][RULE_COLUMNS]
        else:
            rules = pd.DataFrame(columns=RULE_COLUMNS)
        rules = rules.assign(key=rules["antecedents"].map(sorted).astype(str) + rules["consequents"].map(sorted)
                             .astype(str))
        self.rules_ = (rules.sort_values(["confidence", "lift", "key"], ascending=[False, False, True])
                       .drop(columns="key").reset_index(drop=True))
        self.support_ = pd.Series(counts[order] / matrix.shape[0], index=self.items_)
        self.metrics_ = {"rules": float(len(self.rules_)), "baskets": float(matrix.shape[0]),
                         "itemsets": float(len(frequent)),
                         "mean_lift": float(self.rules_["lift"].mean()) if len(self.rules_) else 0.0}
        return self

    def rules_for(self, items: Iterable[str]) -> pd.DataFrame:
        """Rules whose antecedent the items hold and whose consequent they do not, best confidence first."""
        if not hasattr(self, "rules_"):
            raise NudgeError("rules are not fitted: call fit(data) before rules_for")
        have = frozenset(map(str, items))
        mask = [a <= have and not c <= have for a, c in zip(self.rules_["antecedents"], self.rules_["consequents"],
                                                             strict=True)]
        return self.rules_[mask]

    def cross_sell(self, customer_products: Iterable[str], n: int = 5) -> list[str]:
        """Up to `n` items the rules suggest for these items (not already held), by best rule confidence."""
        have = frozenset(map(str, customer_products))
        suggested: list[str] = []
        for consequents in self.rules_for(have)["consequents"]:
            for item in sorted(consequents - have):
                if item not in suggested:
                    suggested.append(item)
            if len(suggested) >= n:
                break
        return suggested[:n]

    def score(self, states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
        """`cross_sell` of every customer, from the products their state holds (net count above 0)."""
        ids = sorted(states)
        suggested = [self.cross_sell([p for p, count in states[c].products.items() if count > 0], self.served)
                     for c in ids]
        return scores_frame(pd.DataFrame({"customer_id": ids, "cross_sell": suggested}),
                            {"cross_sell": "cross_sell"}, self.outputs)


def _rows_with(matrix: sp.csr_matrix) -> list[np.ndarray]:
    csc = matrix.tocsc()
    return [np.sort(csc.indices[csc.indptr[j]:csc.indptr[j + 1]]) for j in range(csc.shape[1])]


def _rows_holding(rows_with: list[np.ndarray], index: dict[str, int], itemset: frozenset) -> np.ndarray:
    found: np.ndarray | None = None
    for item in itemset:
        rows = rows_with[index[item]]
        found = rows if found is None else np.intersect1d(found, rows, assume_unique=True)
    return found if found is not None else np.empty(0, dtype=np.int64)


def evaluate_level(train: TrainingData, test_lines: pd.DataFrame, level: str,
                   model: AssociationRules | None = None) -> dict[str, float]:
    """Rule count, mean lift, and how often a fired rule's consequent is in the test basket vs its base rate."""
    model = (model or AssociationRules(level=level)).fit(train)
    prefix = f"rules_{level}"
    test, _ = basket_matrix(test_lines, LEVELS[level], model.items_)
    rows_with = _rows_with(test)
    index = {item: i for i, item in enumerate(model.items_)}
    fired = hits = 0
    base = 0.0
    top_rule: dict[int, bool] = {}  # basket -> was the consequent of its best fired rule in it
    for antecedents, consequents in zip(model.rules_["antecedents"], model.rules_["consequents"], strict=True):
        a_rows = _rows_holding(rows_with, index, antecedents)
        if not len(a_rows):
            continue
        c_rows = _rows_holding(rows_with, index, consequents)
        hit = np.isin(a_rows, c_rows, assume_unique=True)
        fired += len(a_rows)
        hits += int(hit.sum())
        # What guessing the consequent for any basket would score: its share of all test baskets.
        base += len(a_rows) * len(c_rows) / max(test.shape[0], 1)
        for row, h in zip(a_rows.tolist(), hit.tolist(), strict=True):
            top_rule.setdefault(row, h)  # rules are sorted by confidence: the first to fire is the best
    return {
        f"{prefix}_n_rules": float(len(model.rules_)),
        f"{prefix}_mean_lift": model.metrics_["mean_lift"],
        f"{prefix}_mean_confidence": float(model.rules_["confidence"].mean()) if len(model.rules_) else 0.0,
        f"{prefix}_hit_rate": hits / fired if fired else 0.0,
        f"{prefix}_hit_rate_base": base / fired if fired else 0.0,
        f"{prefix}_top_rule_hit_rate": float(np.mean(list(top_rule.values()))) if top_rule else 0.0,
        f"n_{prefix}_test_baskets": float(test.shape[0]),
        f"n_{prefix}_fired_baskets": float(len(top_rule)),
    }


def evaluate(train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
    """Association-rule figures at product and top-category level on the split."""
    figures = evaluate_level(train, test_lines, "product")
    figures.update(evaluate_level(train, test_lines, "category", AssociationRules(
        level="category", top_n=40, min_support=0.01, min_confidence=0.3, max_len=3)))
    return figures
