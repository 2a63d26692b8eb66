"""CORS closed unless configured, request bodies capped, logs with ids and never a profile's attributes."""

from __future__ import annotations

import logging

import pytest
import structlog
from fastapi.testclient import TestClient
from structlog.testing import capture_logs

from engine.api.app import create_app
from engine.db import connect
from engine.store.checkpoints import CheckpointStore
from tests.api.conftest import copy_home, write_headers

pytestmark = pytest.mark.slow  # the session's backtest

PREFLIGHT = {"Origin": "https://console.example", "Access-Control-Request-Method": "GET"}


def test_cors_is_closed_unless_origins_are_configured(client, built) -> None:
    assert "access-control-allow-origin" not in client.get("/api/overview", headers={"Origin": PREFLIGHT["Origin"]}) \
        .headers
    assert "access-control-allow-origin" not in client.options("/api/overview", headers=PREFLIGHT).headers
    opened = TestClient(create_app(built.settings.model_copy(
        update={"api_cors_origins": ["https://console.example"]})))
    allowed = opened.options("/api/overview", headers=PREFLIGHT)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://console.example"
    other = opened.get("/api/overview", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_a_body_over_the_limit_is_a_413_and_reaches_nothing(built, tmp_path) -> None:
    settings = copy_home(built.settings, tmp_path / "home").model_copy(update={"api_max_body_bytes": 2_000})
    client = TestClient(create_app(settings))
    checkpoints = CheckpointStore(connect(settings.database_url))
    big = b'{"schema": 1, "pad": "' + b"x" * 3_000 + b'"}'
    assert client.post("/api/events", content=big, headers=write_headers()).status_code == 413

    def chunks():  # no Content-Length: counted as it comes
        for _ in range(4):
            yield b"x" * 1_000

    assert client.post("/api/events", content=chunks(), headers=write_headers()).status_code == 413
    assert checkpoints.load("api") is None  # neither became a record, nor a dead letter
    assert client.post("/api/campaigns/validate", content="x" * 2_001, headers=write_headers()).status_code == 413


def test_logs_name_customers_by_id_only(built, tmp_path) -> None:
    settings = copy_home(built.settings, tmp_path / "home")
    client = TestClient(create_app(settings))
    profiles = CheckpointStore(connect(settings.database_url)).load_profiles()
    cid = min(profiles)
    kept = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with capture_logs() as logs:
            assert client.post("/api/events", headers=write_headers(), json={
                "schema": 1, "event_id": "log-1", "customer_id": cid, "event_time": "2017-12-30T10:00:00+00:00",
                "lines": [["1082185", ["PRODUCE", "BANANAS"], 1, 0.99]]}).status_code == 200
            assert client.delete(f"/api/customers/{cid}", headers=write_headers()).status_code == 200
    finally:
        structlog.configure(**kept)
    assert {e["event"] for e in logs} >= {"api.event", "api.erased"}
    attributes = {v for v in profiles[cid].attributes.values() if len(v) > 2}
    for entry in logs:
        assert not set(entry) & {"profile", "attributes", "age_band", "sex", "region"}, entry
        assert not attributes & {str(v) for v in entry.values()}, entry
    erased = next(e for e in logs if e["event"] == "api.erased")
    assert "customer_id" not in erased and erased["token"].startswith("erased:")  # the erased id is not logged
