"""DELETE /api/customers/{id}: the customer's state, profile, scores and lines go, the ledger keeps its rows under a
one-way token — and a campaign run that meets the customer's whole history again never messages them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.api.app import create_app
from engine.campaigns.candidates import Verdict
from engine.campaigns.consent import ConsentStore
from engine.db import connect, offer, suppression
from engine.delivery.ledger import Ledger
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore
from engine.store.scores import ScoreStore
from tests.api.conftest import copy_home, read_headers, run_campaigns, write_headers

pytestmark = pytest.mark.slow  # the session's backtest, and a second run


def _outbox_keys(home: Path, customer_id: str) -> int:
    return sum(1 for path in (home / "outbox").glob("*.jsonl") for line in path.read_text().splitlines()
               if f"|{customer_id}|" in json.loads(line)["key"])


def test_an_erased_customer_is_gone_and_never_messaged_again(built, tmp_path) -> None:
    settings = copy_home(built.settings, tmp_path / "home")
    engine = connect(settings.database_url)
    ledger = Ledger(engine)
    sent = Counter(e.customer_id for e in ledger.entries(verdict=Verdict.SENT))
    cid = next(c for c, _ in sent.most_common() if ConsentStore(engine).changes(c))  # messaged most, with consent
    rows = ledger.entries(customer_id=cid)
    with engine.connect() as conn:
        offers = conn.execute(select(offer.c.code).where(offer.c.customer_id == cid)).scalars().all()
    client = TestClient(create_app(settings))

    assert client.delete(f"/api/customers/{cid}").status_code == 401
    answer = client.delete(f"/api/customers/{cid}", headers=write_headers())
    assert answer.status_code == 200, answer.text
    erased = answer.json()
    token = erased["token"]
    assert erased["removed"]["state"] == 1 and erased["removed"]["lines"] > 0 and erased["tokenized"]["ledger"] == \
        len(rows)
    assert f"\"{cid}\"" not in json.dumps(erased)  # the id itself is what was erased
    checkpoints = CheckpointStore(engine)
    assert checkpoints.load_state(cid) is None and cid not in checkpoints.load_profiles()
    assert ScoreStore(engine).customer(cid) == []
    stored = LineStore(settings.lines_dir, engine).read()
    assert not pc.any(pc.equal(stored.column("customer_id"), cid)).as_py() and stored.num_rows > 0
    kept = ledger.entries(customer_id=token)
    assert ledger.entries(customer_id=cid) == [] and len(kept) == len(rows)
    assert sorted((e.campaign, e.occurrence, e.verdict) for e in kept) == \
        sorted((e.campaign, e.occurrence, Verdict.ABORTED if e.verdict is Verdict.QUEUED else e.verdict)
               for e in rows)
    assert all(f"|{cid}|" not in e.key and e.key.split("|")[1] == token for e in kept)
    with engine.connect() as conn:
        assert sorted(conn.execute(select(offer.c.code).where(offer.c.customer_id == token)).scalars()) == \
            sorted(offers)
        assert conn.execute(select(suppression.c.token)).scalars().all() == [token]
    assert ConsentStore(engine).changes(cid) == [] and ConsentStore(engine).changes(token)
    assert client.get(f"/api/customers/{cid}", headers=read_headers()).status_code == 404
    assert client.delete(f"/api/customers/{cid}", headers=write_headers()).status_code == 404

    # The source still holds the customer's year: a fresh replay brings the whole history back, consent re-imported
    # with it, over the same ledger and scores (no refit) — the customer is judged, and never messaged.
    outboxed = _outbox_keys(settings.home, cid)
    run_campaigns(settings, built.source, fresh=True, reset=False, models=())
    assert CheckpointStore(engine).load_state(cid) is not None  # back in state: a candidate again
    again = ledger.entries(customer_id=cid)
    assert again and all(e.verdict is Verdict.NO_CONSENT and "erased" in e.detail for e in again)
    assert _outbox_keys(settings.home, cid) == outboxed  # no message written for them
    assert len(ledger.entries(customer_id=token)) == len(rows)
