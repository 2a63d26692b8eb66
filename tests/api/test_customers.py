"""GET /api/customers/{id} and /api/segments answer what the stores hold, figure for figure."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from engine.campaigns.consent import ConsentStore
from engine.db import connect
from engine.events import CustomerProfile
from engine.offers.book import OfferBook
from engine.queries import offer_view
from engine.store.checkpoints import CheckpointStore
from engine.store.scores import ScoreStore
from engine.summary import LRFMV
from tests.api.conftest import read_headers, write_headers

pytestmark = pytest.mark.slow  # the session's backtest


@pytest.fixture(scope="module")
def stores(built) -> dict[str, Any]:
    engine = connect(built.settings.database_url)
    checkpoints = CheckpointStore(engine)
    return {"engine": engine, "states": checkpoints.load_states(), "watermark": checkpoints.watermark(),
            "profiles": checkpoints.load_profiles(), "scores": ScoreStore(engine).frame(), "book": OfferBook(engine)}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_the_360_view_is_the_stores_figures(client, stores) -> None:
    book = stores["book"]
    # the customer holding the most offers, a stamp mission among them
    holders = Counter(h.customer_id for h in book.offers.values())
    cid = next(c for c, _ in holders.most_common() if any(h.kind == "stamp_mission" for h in book.of_customer(c)))
    answer = client.get(f"/api/customers/{cid}", headers=read_headers())
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    state, now = stores["states"][cid], stores["watermark"]
    assert shown["customer_id"] == cid and shown["watermark"] == now.isoformat()
    assert shown["state"] == pytest.approx(state.lrfmv(now))
    assert shown["state"]["frequency"] == state.baskets and shown["events"] == state.events
    assert {c["category"]: c["spend"] for c in shown["categories"]} == \
        pytest.approx({k: c.spend / 100 for k, c in state.categories.items()})
    scores = stores["scores"][stores["scores"]["customer_id"] == cid]
    level = {o: v for o, v, c in zip(scores["output"], scores["value"], scores["category"], strict=True) if not c}
    assert shown["segment"] == level["segment"] and shown["grade"] == level.get("grade")
    assert shown["clv"] == pytest.approx(level["clv_12m"]) and shown["p_alive"] == pytest.approx(level["p_alive"])
    by_category = {(c, o): v for o, v, c in zip(scores["output"], scores["value"], scores["category"], strict=True)
                   if c}
    assert shown["preferences"] == {c: v for (c, o), v in by_category.items() if o == "category.preference"}
    dates = {(c, o.rsplit(".", 1)[1]): str(v) for (c, o), v in by_category.items() if "next_purchase" in o}
    assert shown["next_purchase"] and all(dates[(n["category"], k)] == n[k] for n in shown["next_purchase"]
                                          for k in ("date", "low", "high"))
    assert shown["recommendations"] == level.get("recommended", [])
    held = book.of_customer(cid)
    assert shown["offers"] == [offer_view(h).model_dump(mode="json") for h in held]
    missions = [h for h in held if h.kind == "stamp_mission"]
    assert [m["stamps"] for m in shown["missions"]] == [len(h.progress.get("stamps", [])) for h in missions]
    consent = ConsentStore(stores["engine"]).book(now).customer(cid)
    assert {(c["channel"], c["purpose"], c["granted"]) for c in shown["consent"]["in_effect"]} == \
        {(c.channel, c.purpose, c.granted) for c in consent}
    # ids only: nothing of the profile (attributes, age band, sex, region) is in the answer
    assert not _keys(shown) & (set(CustomerProfile.model_fields) - {"customer_id"})


def test_an_unknown_customer_is_a_404_naming_them(client) -> None:
    answer = client.get("/api/customers/no-such-customer", headers=read_headers())
    assert answer.status_code == 404 and "no-such-customer" in answer.json()["detail"]


def test_customer_reads_need_the_read_or_the_write_token(client, stores) -> None:
    cid = min(stores["states"])
    assert client.get(f"/api/customers/{cid}").status_code == 401
    wrong = client.get(f"/api/customers/{cid}", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert client.get(f"/api/customers/{cid}", headers={"Authorization": read_headers()["Authorization"][7:]}) \
        .status_code == 401  # no "Bearer" scheme
    assert client.get(f"/api/customers/{cid}", headers=write_headers()).status_code == 200


def test_segments_sum_to_the_customers_and_hold_their_scores(client, stores) -> None:
    shown = client.get("/api/segments").json()
    states, frame = stores["states"], stores["scores"]
    assert shown["customers"] == len(states) == sum(s["size"] for s in shown["segments"])
    level = frame[frame["category"] == ""]
    segment = dict(zip(level[level["output"] == "segment"]["customer_id"],
                       level[level["output"] == "segment"]["value"], strict=True))
    clv = dict(zip(level[level["output"] == "clv_12m"]["customer_id"],
                   level[level["output"] == "clv_12m"]["value"], strict=True))
    sizes = Counter(segment.get(c, "unsegmented") for c in states)
    assert {s["name"]: s["size"] for s in shown["segments"]} == dict(sizes)
    biggest = shown["segments"][0]
    members = [c for c in states if segment.get(c) == biggest["name"]]
    values = [clv[c] for c in members if c in clv]
    assert biggest["clv"]["p50"] == pytest.approx(float(np.median(values)))
    assert biggest["clv"]["mean"] == pytest.approx(float(np.mean(values)))
    now = stores["watermark"]
    for figure in LRFMV:
        figures = [v for c in members if (v := states[c].lrfmv(now)[figure]) is not None]
        assert biggest["lrfmv"][figure] == pytest.approx(float(np.mean(figures))), figure
    months = Counter(s.first_purchase.strftime("%Y-%m") for s in states.values() if s.first_purchase)
    assert {c["month"]: c["customers"] for c in shown["cohorts"]} == dict(months)
    first = shown["cohorts"][0]
    cohort = [c for c, s in states.items() if s.first_purchase and s.first_purchase.strftime("%Y-%m") == first["month"]]
    assert first["clv_mean"] == pytest.approx(float(np.mean([clv[c] for c in cohort if c in clv])))
