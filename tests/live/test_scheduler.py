"""The live path end to end on a real broker and a real PostgreSQL: `nudge worker` and `nudge scheduler --clock
event` over the same history make the embedded backtest's campaign table and ledger, and publish each sent
message on the messages topic under its key — also when the worker and the scheduler are killed mid-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.campaigns.consent import ConsentStore, read_csv
from engine.config import Settings
from engine.db import connect, delivery_ledger
from engine.live.messages import distinct_keys
from engine.runtime.campaigns import campaign_table, open_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.completejourney import CompleteJourneySource
from tests.live.workers import produce, saved, start_worker, stop, wait_saved, wire_messages

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
HOUSEHOLDS = 150
START, END = datetime(2017, 11, 1, tzinfo=UTC), datetime(2017, 12, 1, tzinfo=UTC)
CONSENT = ROOT / "campaigns" / "consent" / "cj_consent.csv"


@pytest.fixture(scope="module")
def source(cj_tables) -> CompleteJourneySource:
    ids = set(sorted(cj_tables["transactions"]["household_id"].unique())[:HOUSEHOLDS])
    return CompleteJourneySource(households=ids, tables=cj_tables)


def _ledger(url: str) -> dict[str, str]:
    engine = connect(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(delivery_ledger.c.key, delivery_ledger.c.verdict)).all())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def backtest(tmp_path_factory, source) -> tuple[list[dict], dict[str, str]]:
    """The embedded backtest of the same history: its campaign table and its ledger (key -> verdict)."""
    settings = Settings(home=tmp_path_factory.mktemp("embedded"))
    runtime = EmbeddedRuntime(settings)
    ConsentStore(runtime.engine).record(read_csv(CONSENT))
    campaigns = open_campaigns(settings, runtime.engine, start=START, end=END)
    runtime.replay(source, fresh=True, observer=campaigns)
    rows = campaign_table(campaigns.ledger, campaigns.running(), campaigns.report.outranked)
    return rows, _ledger(settings.database_url)


def _scheduler(home: Path, bootstrap: str, topic: str, db_url: str, messages: str) -> subprocess.Popen:
    env = {**os.environ, "NUDGE_HOME": str(home), "NUDGE_DB_URL": db_url, "NUDGE_KAFKA_BOOTSTRAP": bootstrap,
           "NUDGE_KAFKA_TOPIC": topic, "NUDGE_KAFKA_MESSAGES_TOPIC": messages, "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "engine.cli", "scheduler", "--clock", "event", "--drain", "--json",
               "--from", START.date().isoformat(), "--until", END.date().isoformat(), "--consent", str(CONSENT)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=(home.parent / "scheduler.log").open("w"),
                            text=True)


def _finish(proc: subprocess.Popen, home: Path, timeout: float = 600) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (home.parent / "scheduler.log").read_text()[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _topics(kafka_broker) -> tuple[str, str, str]:
    topic, group = f"p-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, 4)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    kafka_broker.create_topic(f"{topic}.messages", 4)
    return topic, group, f"{topic}.messages"


def _sent(ledger: dict[str, str]) -> set[str]:
    return {key for key, verdict in ledger.items() if verdict == "sent"}


def test_worker_and_scheduler_make_the_embedded_backtest(kafka_broker, tmp_path, pg_url, source, backtest) -> None:
    rows, ledger = backtest
    topic, group, messages = _topics(kafka_broker)
    produce(kafka_broker.bootstrap, topic, wire_messages(source))
    home = tmp_path / "home"
    home.mkdir()
    worker = start_worker(home, kafka_broker.bootstrap, topic, group, db_url=pg_url)
    try:
        result = _finish(_scheduler(home, kafka_broker.bootstrap, topic, pg_url, messages), home)
    finally:
        stop(worker)
    assert result["campaigns"] == rows
    assert _ledger(pg_url) == ledger
    assert sum(r["sent"] for r in rows) > 0
    keys, _ = distinct_keys(kafka_broker.bootstrap, messages)
    assert keys == _sent(ledger)


def test_killed_worker_and_scheduler_send_the_same_keys(kafka_broker, tmp_path, pg_url, source, backtest) -> None:
    rows, ledger = backtest
    topic, group, messages = _topics(kafka_broker)
    values = wire_messages(source)
    produce(kafka_broker.bootstrap, topic, values)
    home = tmp_path / "home"
    home.mkdir()
    worker = start_worker(home, kafka_broker.bootstrap, topic, group, db_url=pg_url)
    scheduler = _scheduler(home, kafka_broker.bootstrap, topic, pg_url, messages)
    try:
        wait_saved(home, len(values) // 3, url=pg_url)
        worker.kill()  # SIGKILL mid-stream
        worker.wait()
        worker = start_worker(home, kafka_broker.bootstrap, topic, group, db_url=pg_url)
        deadline = time.monotonic() + 300
        while not _sent(_ledger(pg_url)) and time.monotonic() < deadline:
            time.sleep(0.5)  # the scheduler is sending
        scheduler.kill()  # mid-delivery: some messages may be on the topic, not yet marked sent
        scheduler.wait()
        assert saved(home, pg_url) <= len(values)
        result = _finish(_scheduler(home, kafka_broker.bootstrap, topic, pg_url, messages), home)
    finally:
        stop(worker)
        if scheduler.poll() is None:
            scheduler.kill()
    # What the ledger holds is the crash-free run's; the outranked counts are the resumed process's own.
    assert [_recorded(r) for r in result["campaigns"]] == [_recorded(r) for r in rows]
    assert _ledger(pg_url) == ledger
    keys, count = distinct_keys(kafka_broker.bootstrap, messages)
    assert keys == _sent(ledger)  # a duplicate carries the same key: the consumer's set is the crash-free one
    assert count >= len(keys)


def _recorded(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("candidates", "outranked")}
