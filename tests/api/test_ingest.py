"""POST /api/events: an event goes the way every source's does — into the state, the line store and the checkpoint —
and a malformed one is a 422 and a dead letter with the reason."""

from __future__ import annotations

import json

import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from engine.api.app import create_app
from engine.db import connect, dead_letter
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore
from tests.api.conftest import copy_home, write_headers

pytestmark = pytest.mark.slow  # the session's backtest


@pytest.fixture(scope="module")
def home(built, tmp_path_factory):
    settings = copy_home(built.settings, tmp_path_factory.mktemp("ingest") / "home")
    return settings, TestClient(create_app(settings))


def _event(**fields) -> dict:
    return {"schema": 1, "type": "purchase", "event_id": "api-r1", "customer_id": "api-c1",
            "event_time": "2017-12-30T10:00:00+00:00", "store_id": "9",
            "lines": [["1082185", ["PRODUCE", "BANANAS"], 2, 1.98], ["995242", ["GROCERY", "FLUID MILK"], 1, 2.49]],
            **fields}


def test_a_purchase_goes_into_state_lines_and_checkpoint(home) -> None:
    settings, client = home
    engine = connect(settings.database_url)
    checkpoints = CheckpointStore(engine)
    answer = client.post("/api/events", json=_event(), headers=write_headers())
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"source": "api", "position": 0, "outcome": "applied", "type": "purchase",
                             "event_id": "api-r1", "customer_id": "api-c1"}
    state = checkpoints.load_state("api-c1")
    assert state.baskets == 1 and state.monetary == pytest.approx(4.47) and set(state.categories) == {"PRODUCE",
                                                                                                       "GROCERY"}
    stored = LineStore(settings.lines_dir, engine).read()
    mine = stored.filter(pc.equal(stored.column("event_id"), "api-r1"))
    assert mine.num_rows == 1 and mine.column("customer_id")[0].as_py() == "api-c1"
    assert checkpoints.load("api").position == 1 and checkpoints.load("api").counters.purchases == 1
    again = client.post("/api/events", json=_event(), headers=write_headers())
    assert again.json()["outcome"] == "duplicate" and checkpoints.load_state("api-c1").baskets == 1
    shown = client.get("/api/customers/api-c1", headers=write_headers()).json()
    assert shown["state"]["monetary"] == pytest.approx(4.47)
    profile = client.post("/api/events", headers=write_headers(),
                          json={"schema": 1, "type": "profile", "customer_id": "api-c1", "time_zone": "Asia/Seoul"})
    assert profile.json()["outcome"] == "profile"
    assert checkpoints.load_profiles()["api-c1"].time_zone == "Asia/Seoul"


@pytest.mark.parametrize(("body", "reason"), [
    (json.dumps(_event(event_time=None)), "event_time"),
    (json.dumps(_event(schema=2)), "schema: 2 is not a version this consumer reads"),
    (json.dumps(_event(lines=[["p", [], 1, 1.0]])), "lines"),
    (json.dumps(_event(colour="red")), "colour"),
    ('{"schema": 1, "event_id": ', "not JSON"),
    (b"\xff\xfe not utf-8", "not JSON"),
])
def test_a_malformed_event_is_a_422_and_a_dead_letter(home, body, reason) -> None:
    settings, client = home
    engine = connect(settings.database_url)
    checkpoints = CheckpointStore(engine)
    customers = checkpoints.customers()
    answer = client.post("/api/events", content=body, headers={**write_headers(), "content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    shown = answer.json()
    assert shown["source"] == "api" and reason in shown["reason"]
    with engine.connect() as conn:
        row = conn.execute(select(dead_letter).where(dead_letter.c.source == "api",
                                                     dead_letter.c.position == shown["position"])).one()
    assert row.reason == shown["reason"] and row.where == f"api event {shown['position']}"
    assert checkpoints.customers() == customers  # nothing applied
    listed = client.get("/api/deadletters", params={"source": "api"}).json()
    assert listed[-1]["reason"] == shown["reason"] and "raw" not in listed[-1]


def test_writes_need_the_write_token(home, built) -> None:
    _, client = home
    assert client.post("/api/events", json=_event(event_id="api-r9")).status_code == 401
    wrong = client.post("/api/events", json=_event(event_id="api-r9"), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert client.delete("/api/customers/api-c1").status_code == 401
    unset = TestClient(create_app(built.settings.model_copy(update={"api_write_token": None})))
    refused = unset.post("/api/events", json=_event(event_id="api-r9"), headers=write_headers())
    assert refused.status_code == 403 and "NUDGE_API_WRITE_TOKEN" in refused.json()["detail"]
    with connect(built.settings.database_url).connect() as conn:  # nothing reached the shared home
        assert conn.execute(select(func.count()).select_from(dead_letter)
                            .where(dead_letter.c.source == "api")).scalar_one() == 0
