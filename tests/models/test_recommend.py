"""Recommendations on real Complete Journey households: catalog products only, returns respected, repeat
ranks what a customer keeps buying, the ranker beats personal repeat on the split, fits are deterministic;
categories: the customer's own recent categories rank first and the model beats category popularity."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from engine.errors import ConfigError
from engine.events import Line, Purchase
from engine.models import recommend
from engine.models.catalogue import CATALOGUE
from engine.models.data import LINE_COLUMNS, TrainingData, collect, factorize, indexer
from engine.models.recommend import (
    CategoryRecommender,
    CoBought,
    PopularityRecommender,
    RankedRecommender,
    RepeatRecommender,
    evaluate,
    grouped_auc,
)
from engine.models.recommend.interactions import interactions
from engine.sources.completejourney import CompleteJourneySource
from engine.state import apply

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)
# Fewer factors than the default keep the subset fits fast; the behaviour under test does not depend on them.
SMALL = {"factors": 16, "iterations": 8, "max_iter": 60, "knn_products": 2000, "neighbours": 20}


@pytest.fixture(scope="module")
def households(cj_tables: dict) -> set[int]:
    """Eighty real households: the first ones by id."""
    return set(sorted(cj_tables["transactions"]["household_id"].unique())[:80])


@pytest.fixture(scope="module")
def subset(cj_tables: dict, households: set[int]) -> TrainingData:
    """Their states and lines before the split."""
    train, _ = collect(CompleteJourneySource(households=households, tables=cj_tables), until=SPLIT)
    return train


@pytest.fixture(scope="module")
def ranked(subset: TrainingData) -> RankedRecommender:
    """The ranker fitted on the subset."""
    return RankedRecommender(**SMALL).fit(subset)


def _with_purchases(data: TrainingData, purchases: list[Purchase]) -> TrainingData:
    """A copy of `data` with `purchases` applied to its states (engine.state.apply) and added to its lines."""
    states = {cid: s for cid, s in data.states.items()}
    rows = []
    for purchase in purchases:
        # apply() updates in place: work on a copy of the state so the shared fixture stays intact.
        state = states.get(purchase.customer_id)
        if state is not None and state is data.states.get(purchase.customer_id):
            state = copy.deepcopy(state)
        states[purchase.customer_id] = apply(state, purchase)
        for pid, category, quantity, amount in purchase.lines:
            rows.append((purchase.customer_id, purchase.event_id, purchase.event_time, pid, category[0], quantity,
                         amount))
    extra = pd.DataFrame(rows, columns=list(LINE_COLUMNS))
    lines = pd.concat([data.lines.astype({c: str for c in ("customer_id", "event_id", "product_id", "category")}),
                       extra], ignore_index=True)
    lines["event_time"] = pd.to_datetime(lines["event_time"], utc=True)
    return TrainingData(states, lines, data.until, data.profiles)


def _top_product(data: TrainingData, customer_id: str) -> str:
    products = data.states[customer_id].products
    return max(sorted(products), key=lambda p: products[p])


def test_recommended_products_exist_in_the_catalog(cj_tables: dict, subset: TrainingData,
                                                   ranked: RankedRecommender) -> None:
    catalog = set(cj_tables["products"]["product_id"].astype(str))
    customers = sorted(subset.states)
    lists = ranked.recommend_batch(customers, n=10)
    assert all(len(top) == 10 for top in lists.values())
    recommended = {p for top in lists.values() for p in top}
    recommended |= {p for cid in customers for p in ranked.explore(cid, 10)}
    assert recommended <= catalog
    # A customer the model never saw still gets the popular products.
    assert ranked.recommend("no-such-customer", 5) == ranked.popular_[:5]


def test_explore_only_recommends_products_never_bought(subset: TrainingData, ranked: RankedRecommender) -> None:
    for cid in sorted(subset.states)[:20]:
        new = ranked.explore(cid, 10)
        assert len(new) == 10
        assert not set(new) & set(subset.states[cid].products)


def test_explore_learns_from_earlier_cuts_too(subset: TrainingData, ranked: RankedRecommender) -> None:
    # A second cut 28 days before the first: about twice the explore rows of one cut (the default).
    one = ranked
    ranked = RankedRecommender(**SMALL, explore_cuts=2).fit(subset)
    assert ranked.metrics_["explore_train_cuts"] == 2 and one.metrics_["explore_train_cuts"] == 1
    assert ranked.metrics_["explore_train_rows"] > 1.5 * one.metrics_["explore_train_rows"]
    # Only explore changes: the repeat ranker's lists are the same.
    customers = sorted(subset.states)
    assert one.recommend_batch(customers) == ranked.recommend_batch(customers)
    # Cuts before the first line are skipped, not an error.
    assert RankedRecommender(**SMALL, explore_cuts=40).fit(subset).metrics_["explore_train_cuts"] < 40
    with pytest.raises(ConfigError, match="explore_cuts"):
        RankedRecommender(**SMALL, explore_cuts=0).fit(subset)


def test_returned_products_are_never_recommended(subset: TrainingData) -> None:
    customers = sorted(subset.states)
    buyer, returner, other = customers[0], customers[1], customers[2]
    when = SPLIT - timedelta(days=3)
    grocery = ("GROCERY", "SOUP")
    # Bought 20 times by `buyer` (who would therefore be recommended it) but returned 21 times by `returner`:
    # net ≤ 0 over everyone. PURE-RETURN is only ever returned.
    bought = [Purchase(event_id=f"t-buy-{i}", customer_id=buyer, event_time=when - timedelta(days=i),
                       lines=(Line("NET-NEGATIVE", grocery, 1, 2.0),)) for i in range(20)]
    returns = [Purchase(event_id="t-ret", customer_id=returner, event_time=when,
                        lines=(*[Line("NET-NEGATIVE", grocery, -1, -2.0)] * 21,
                               Line("PURE-RETURN", grocery, -1, -3.0)))]
    # `other` returns every line of its most bought product: it may not come back as a repeat.
    gone = _top_product(subset, other)
    undo = [Purchase(event_id="t-undo", customer_id=other, event_time=when,
                     lines=tuple(Line(gone, grocery, -1, -1.0) for _ in range(subset.states[other].products[gone])))]

    only_bought = _with_purchases(subset, bought)
    assert "NET-NEGATIVE" in RepeatRecommender().fit(only_bought).recommend(buyer, 3)  # the fixture can fail
    assert gone in RepeatRecommender().fit(subset).recommend(other, 10)

    data = _with_purchases(subset, bought + returns + undo)
    assert data.states[other].products[gone] == 0
    models = [PopularityRecommender().fit(data), RepeatRecommender().fit(data), RepeatRecommender(None).fit(data),
              RankedRecommender(**SMALL).fit(data)]
    for model in models:
        lists = model.recommend_batch(customers, n=20)
        recommended = {p for top in lists.values() for p in top}
        assert not recommended & {"NET-NEGATIVE", "PURE-RETURN"}, model.name
        assert gone not in lists[other], model.name
    assert "NET-NEGATIVE" not in models[-1].explore(other, 20)


def test_personal_repeat_ranks_the_most_bought_recent_product_high(subset: TrainingData) -> None:
    lines = subset.lines[subset.lines["event_time"] >= pd.Timestamp(SPLIT - timedelta(days=60))]
    repeat = RepeatRecommender(half_life_days=90.0).fit(subset)
    customers = hits = 0
    for cid, rows in lines.groupby(lines["customer_id"].astype(str)):
        counts = rows["product_id"].astype(str).value_counts()
        if len(counts) < 2 or counts.iloc[0] < 3 or counts.iloc[0] == counts.iloc[1]:
            continue  # no single favourite in the last two months
        customers += 1
        hits += counts.index[0] in repeat.recommend(cid, 10)
    # Heavy buyers can have ten products bought more often over the year: most, not all, rank it top-10.
    assert customers >= 10
    assert hits >= 0.8 * customers, (hits, customers)

    # A customer who bought a product every week of the last two months gets it first.
    cid = sorted(subset.states)[3]
    weekly = [Purchase(event_id=f"t-week-{i}", customer_id=cid, event_time=SPLIT - timedelta(days=7 * i + 1),
                       lines=(Line("1028816", ("GROCERY", "BAKED BREAD/BUNS/ROLLS"), 1, 2.5),)) for i in range(9)]
    data = _with_purchases(subset, weekly)
    assert RepeatRecommender(half_life_days=90.0).fit(data).recommend(cid, 1) == ["1028816"]
    assert "1028816" in RankedRecommender(**SMALL).fit(data).recommend(cid, 3)


def test_same_seed_gives_the_same_top10(subset: TrainingData, ranked: RankedRecommender) -> None:
    again = RankedRecommender(**SMALL).fit(subset)
    customers = sorted(subset.states)
    assert again.recommend_batch(customers) == ranked.recommend_batch(customers)
    assert [again.explore(c) for c in customers] == [ranked.explore(c) for c in customers]


def test_cobought_scores_only_products_sharing_a_basket_with_the_customers(subset: TrainingData) -> None:
    inter = interactions(subset.lines, SPLIT)
    scores = CoBought.fit(inter, subset.lines, products=2000, power=0.3)
    lines = subset.lines.assign(product_id=subset.lines["product_id"].astype(str))
    cid = sorted(subset.states)[3]
    mine = set(lines.loc[lines["customer_id"].astype(str) == cid, "product_id"])
    baskets = set(lines.loc[lines["product_id"].isin(mine), "event_id"])
    together = set(lines.loc[lines["event_id"].isin(baskets), "product_id"])
    row = inter.customers.get_loc(cid)
    scored = {inter.products[p] for p, s in zip(scores.columns, scores.scores[row], strict=True) if s > 0}
    assert scored and scored <= together
    # Every scored product the customer never bought is a candidate for explore, best first.
    top = scores.top_unseen(inter, 5)
    new = [inter.products[p] for p in top.loc[top["c"] == row, "p"]]
    assert new and not set(new) & mine and set(new) <= scored


def test_refit_fits_only_the_served_recommenders() -> None:
    # Baselines (popularity, repeat, ALS) are refitted by evaluate(), not versioned by every refit.
    fitted = [e.factory for e in CATALOGUE if e.factory.__module__.startswith("engine.models.recommend")]
    assert fitted == [recommend.RankedRecommender, recommend.CategoryRecommender]


def test_category_model_ranks_the_customers_recent_categories(subset: TrainingData) -> None:
    model = CategoryRecommender().fit(subset)
    categories = set(subset.lines["category"].astype(str)) - {"UNKNOWN"}
    lists = model.recommend_batch(sorted(subset.states), n=10)
    assert all(len(top) == 10 and set(top) <= categories for top in lists.values())
    assert model.recommend("no-such-customer", 3) == [c for c in model.popular_ if c != "UNKNOWN"][:3]

    # A category the customer never bought, bought four times a week for the last two months, enters its top 10.
    cid = sorted(subset.states)[5]
    rare = next(c for c in reversed(model.popular_) if c != "UNKNOWN" and c not in subset.states[cid].categories)
    assert rare not in model.recommend(cid, 10)  # the fixture can fail
    weekly = [Purchase(event_id=f"t-cat-{i}", customer_id=cid, event_time=SPLIT - timedelta(days=7 * i + 1),
                       lines=tuple(Line(f"RARE-{k}", (rare, "ANY"), 1, 1.0) for k in range(4))) for i in range(9)]
    assert rare in CategoryRecommender().fit(_with_purchases(subset, weekly)).recommend(cid, 10)


@pytest.mark.slow
def test_ranker_beats_personal_repeat_on_the_split() -> None:
    train, test = collect(CompleteJourneySource(), until=SPLIT)
    figures = evaluate(train, test)
    assert figures["n_customers_product"] == 2305
    assert figures["recall10_product_popularity"] == pytest.approx(0.251, abs=0.01)
    assert figures["recall10_new_popularity"] == pytest.approx(0.078, abs=0.01)
    assert figures["recall10_product"] > figures["recall10_product_repeat_decay90"]
    assert figures["recall10_product"] > figures["recall10_product_repeat"]
    assert figures["recall10_new"] > figures["recall10_new_als"] > figures["recall10_new_popularity"]
    assert figures["recall10_category"] > figures["recall10_category_popularity"]
    assert figures["recall10_category"] > figures["recall10_category_als"]
    # Both rankers order their own candidates better than the single scores they learn from.
    assert figures["auc_product"] > max(figures["auc_product_als"], figures["auc_product_repeat_decay90"]) > 0.5
    assert figures["auc_new"] > max(figures["auc_new_als"], figures["auc_new_neighbours"]) > 0.5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans(), st.integers(0, 3)), min_size=1, max_size=60))
def test_grouped_auc_is_sklearns_auc_averaged_over_groups_with_both_classes(rows: list) -> None:
    groups, label, score = (np.array(col) for col in zip(*rows, strict=True))
    expected = [roc_auc_score(label[groups == g], score[groups == g]) for g in np.unique(groups)
                if 0 < label[groups == g].sum() < (groups == g).sum()]
    auc, n = grouped_auc(groups, label, score.astype(float))
    assert n == len(expected)
    assert (np.isnan(auc) and not expected) or auc == pytest.approx(np.mean(expected))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["7", "10", "9", "100", "x", "07"]), min_size=1, max_size=40),
       st.lists(st.sampled_from(["7", "10", "8", "zz"]), max_size=5))
def test_factorizing_categorical_ids_equals_factorizing_their_strings(values: list, unused: list) -> None:
    categorical = pd.Series(pd.Categorical(values, categories=sorted(set(values) | set(unused))))
    codes, uniques = factorize(categorical)
    expected_codes, expected_uniques = pd.factorize(categorical.astype(str), sort=True)
    assert codes.tolist() == expected_codes.tolist() and uniques.tolist() == expected_uniques.tolist()
    index = pd.Index(sorted(set(values[::2]) | {"8"}))
    with_missing = pd.Series(pd.Categorical([*values, None], categories=categorical.cat.categories))
    assert indexer(index, with_missing).tolist() == index.get_indexer(
        [*values, "nan"]).tolist()
