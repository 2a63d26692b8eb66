"""The shared store on a real PostgreSQL server: the ledger, consent, offer book and checkpoints read back what
SQLite gives for the same operations; two OS processes sharing one ledger record and deliver each key once (claimed
rows are skipped by the other, concurrent recorders never deadlock); a whole embedded campaign run on PostgreSQL ends
as it does on SQLite."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.campaigns.candidates import Candidate, Decision, Verdict
from engine.campaigns.consent import ConsentStore, read_csv
from engine.db import connect
from engine.deadletters import DeadLetter, list_dead_letters
from engine.delivery.channels import FileOutbox
from engine.delivery.deliver import Deliverer
from engine.delivery.ledger import Ledger, Mark
from engine.delivery.message import Message
from engine.delivery.render import Renderer
from engine.errors import NudgeError
from engine.offers.book import OfferBook
from engine.offers.issue import end_of_day
from engine.pipeline import Counters
from engine.store.checkpoints import Checkpoint, CheckpointStore
from tests.delivery.conftest import NOW, TEMPLATES
from tests.delivery.test_deliver import CAMPAIGNS, CONTEXTS, FAST
from tests.delivery.test_ledger import CHANNELS, T0, decision
from tests.offers.test_book import COUPON, MISSION, TIERS, _buy, _campaign, _issued
from tests.offers.test_book import T0 as OFFERS_T0
from tests.offers.test_response_run import (
    test_an_accept_event_takes_a_subscription_up_once_and_its_purchases_earn_points as response_run,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KEYS_PER_CUSTOMER = 100  # x 3 customers: the keys both processes record and deliver


def _sqlite(tmp_path: Path) -> Engine:
    return connect(f"sqlite:///{tmp_path}/nudge.db")


# -- the ledger ----------------------------------------------------------------------------------------------------
def _ledger_story(engine: Engine) -> dict:
    """Record, record again, mark, claim: what the ledger then holds (ids left out: a sequence skips the values an
    ignored duplicate drew on PostgreSQL)."""
    ledger = Ledger(engine)
    first = [decision("a", "1", "o1", hours=2), decision("a", "2", "o1", wait=10), decision("b", "3", "o1", hours=1),
             decision("c", "1", "o1", Verdict.CAPPED), decision("a", "1", "o1", Verdict.HELD_OUT),  # a repeat
             decision("b", "2", "o2", hours=3), decision("c", "3", "o2", hours=4)]
    assert ledger.record(first, CHANNELS) == 6
    assert ledger.record([*first, decision("a", "3", "o3", Verdict.HELD_OUT)], CHANNELS) == 1
    at = T0 + timedelta(hours=5)
    sent = ledger.entry("a|1|o1")
    assert sent is not None and ledger.mark(sent.key, Verdict.SENT, at, offer_code="CJ-1", face_value=2.5,
                                            provider_id="p-1", attempts=2)
    assert not ledger.mark(sent.key, Verdict.FAILED, at)  # a sent row stays sent
    with pytest.raises(NudgeError, match="no entry with key"):
        ledger.mark("nope", Verdict.SENT, at)
    ledger.mark_many([Mark("b|3|o1", Verdict.FAILED, at, "HTTP 500", attempts=3)])
    with ledger.claim(T0 + timedelta(hours=20), 1) as claim:
        [row] = claim.entries
        claim.commit([Mark(row.key, Verdict.ABORTED, at, "stale")])
    keys = [d.candidate.key for d in first]
    return {
        "entries": [{k: v for k, v in asdict(e).items() if k != "id"} for e in ledger.entries()],
        "queued": [e.key for e in ledger.queued(T0 + timedelta(hours=20))],
        "counts": ledger.counts(), "deferrals": ledger.deferrals(), "sent": ledger.keys(Verdict.SENT),
        "decided": ledger.decided(keys), "known": ledger.known([*keys, "nope"]),
    }


def test_the_ledger_on_postgres_holds_what_sqlite_holds_after_the_same_operations(pg_engine, tmp_path) -> None:
    on_pg = _ledger_story(pg_engine)
    assert on_pg == _ledger_story(_sqlite(tmp_path))
    assert len(on_pg["entries"]) == len({e["key"] for e in on_pg["entries"]}) == 7  # each key once
    sent = next(e for e in on_pg["entries"] if e["key"] == "a|1|o1")
    assert sent["verdict"] is Verdict.SENT and sent["sent_at"] == T0 + timedelta(hours=5)
    assert sent["sent_at"].tzinfo is not None and sent["face_value"] == 2.5 and sent["attempts"] == 2
    night = next(e for e in on_pg["entries"] if e["key"] == "a|2|o1")
    assert night["not_before"] == T0 + timedelta(hours=10) and night["deferred"] == "night"


def test_a_claimed_row_is_passed_over_by_a_second_claim_until_it_is_released(pg_engine) -> None:
    ledger = Ledger(pg_engine)
    ledger.record([decision("a", str(i), "o1", hours=i) for i in range(4)], CHANNELS)
    now = T0 + timedelta(hours=10)
    with ledger.claim(now, 2) as mine:
        with ledger.claim(now, 10) as theirs:  # another connection: another process's view
            assert [e.customer_id for e in mine.entries] == ["0", "1"]
            assert [e.customer_id for e in theirs.entries] == ["2", "3"]
            theirs.commit([Mark(e.key, Verdict.SENT, now) for e in theirs.entries])
        mine.commit([Mark(mine.entries[0].key, Verdict.SENT, now)])  # the second row is left as it was
    assert [e.customer_id for e in ledger.queued(now)] == ["1"]
    with ledger.claim(now, 10) as after_a_crash:  # leaving without commit rolls back: still queued
        assert [e.customer_id for e in after_a_crash.entries] == ["1"]
    assert [e.customer_id for e in ledger.queued(now)] == ["1"]


# -- two processes, one ledger -------------------------------------------------------------------------------------
class _SlowOutbox(FileOutbox):
    """The file outbox, a millisecond per message: both processes are still sending while the other claims."""

    def send(self, message: Message) -> str:
        time.sleep(0.001)
        return super().send(message)


def _decisions(tag: str = "o") -> list[Decision]:
    return [Decision(Candidate("cj_winback", cid, f"{tag}{i}", NOW, "due", "MEAT"), Verdict.QUEUED, NOW)
            for cid in ("1001", "1002", "1003") for i in range(KEYS_PER_CUSTOMER)]


def _record_shuffled(ledger: Ledger, tag: str, seed: int) -> int:
    """Record the decisions of `tag` in a shuffled order, 100 at a time: how many were new."""
    decisions = _decisions(tag)
    random.Random(seed).shuffle(decisions)
    return sum(ledger.record(decisions[i:i + 100], {"cj_winback": "file"}) for i in range(0, len(decisions), 100))


def test_recorders_of_the_same_keys_in_different_orders_never_deadlock(pg_engine) -> None:
    ledger = Ledger(pg_engine)
    with ThreadPoolExecutor(4) as pool:
        for round_ in range(8):  # before the rows were sorted by key, about one round in five deadlocked
            recorders = [pool.submit(_record_shuffled, ledger, f"r{round_}-", 10 * round_ + n) for n in range(4)]
            assert sum(r.result(timeout=60) for r in recorders) == 3 * KEYS_PER_CUSTOMER
    assert len(ledger.keys()) == 8 * 3 * KEYS_PER_CUSTOMER


def _worker(url: str, outbox: str, seed: str, go: str) -> None:
    """One process: record every decision in its own order, 25 at a time, then deliver what is queued."""
    engine = connect(url)
    ledger = Ledger(engine)
    decisions = _decisions()
    random.Random(int(seed)).shuffle(decisions)
    Path(f"{go}.ready{seed}").touch()
    while not Path(go).exists():  # both processes have started and imported: go together
        time.sleep(0.002)
    inserted = sum(ledger.record(decisions[i:i + 25], {"cj_winback": "file"}) for i in range(0, len(decisions), 25))
    channel = _SlowOutbox(Path(outbox))
    report = Deliverer(ledger, Renderer(TEMPLATES), {"file": channel}, engine, FAST, batch=10).deliver(
        NOW, CONTEXTS.__getitem__, CAMPAIGNS)
    channel.close()
    print(json.dumps({"inserted": inserted, "due": report.due, "sent": report.sent}))


def _delivered(folder: Path) -> list[str]:
    """The keys in the two deliverers' outboxes, repeats included."""
    keys: list[str] = []
    for n in (1, 2):
        keys += FileOutbox(folder / f"outbox{n}.jsonl").keys()
    return keys


def test_two_processes_sharing_one_ledger_record_and_deliver_each_key_once(pg_url, pg_engine, tmp_path) -> None:
    go = tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env["PYTHONPATH"] = str(ROOT)
    code = "import sys; from tests.pg.test_shared_store import _worker; _worker(*sys.argv[1:])"
    procs = [subprocess.Popen([sys.executable, "-c", code, pg_url, str(tmp_path / f"outbox{n}.jsonl"), str(n),
                               str(go)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in (1, 2)]
    deadline = time.monotonic() + 120
    while not all(Path(f"{go}.ready{n}").exists() for n in (1, 2)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
        time.sleep(0.01)
    go.touch()
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        runs.append(json.loads(out.strip().splitlines()[-1]))
    keys = {d.candidate.key for d in _decisions()}
    assert sum(r["inserted"] for r in runs) == len(keys)  # every key recorded once, by one of the two
    delivered = _delivered(tmp_path)
    assert len(delivered) == len(set(delivered)) == len(keys) and set(delivered) == keys  # once in total
    assert sum(r["sent"] for r in runs) == len(keys) and all(r["sent"] > 0 for r in runs), runs  # both sent
    entries = Ledger(pg_engine).entries()
    assert len(entries) == len(keys) and {e.verdict for e in entries} == {Verdict.SENT}
    assert {e.attempts for e in entries} == {1}


def test_deliverers_in_two_threads_send_each_key_once(pg_engine, tmp_path) -> None:
    ledger = Ledger(pg_engine)
    ledger.record(_decisions(), {"cj_winback": "file"})
    reports = {}

    def run(n: int) -> None:
        channel = _SlowOutbox(tmp_path / f"outbox{n}.jsonl")
        reports[n] = Deliverer(Ledger(pg_engine), Renderer(TEMPLATES), {"file": channel}, pg_engine, FAST,
                               batch=7).deliver(NOW, CONTEXTS.__getitem__, CAMPAIGNS)
        channel.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    delivered = _delivered(tmp_path)
    assert sorted(delivered) == sorted(ledger.keys()) and len(delivered) == len(set(delivered))
    assert reports[1].sent + reports[2].sent == len(delivered) and ledger.keys(Verdict.QUEUED) == set()


# -- consent and offers --------------------------------------------------------------------------------------------
def _consent_story(engine: Engine) -> tuple:
    store = ConsentStore(engine)
    changes = read_csv(ROOT / "campaigns/consent/cj_consent.csv")
    assert store.record(changes) == len(changes)
    assert store.record(changes[:50]) == 0  # re-importing adds nothing
    withdrawn = changes[0]
    later = type(withdrawn)(withdrawn.customer_id, withdrawn.channel, withdrawn.purpose, False,
                            datetime(2017, 3, 1, tzinfo=UTC), "test")
    assert store.record([later, later]) == 1
    now = datetime(2017, 6, 1, tzinfo=UTC)
    book = store.book(now)
    customers = sorted({c.customer_id for c in changes})
    return (store.changes(), store.changes(withdrawn.customer_id, until=now),
            [book.customer(c) for c in customers], book.reconfirmations_due())


def test_the_consent_store_round_trips_on_postgres_as_on_sqlite(pg_engine, tmp_path) -> None:
    on_pg = _consent_story(pg_engine)
    assert on_pg == _consent_story(_sqlite(tmp_path))
    assert all(c.at.tzinfo is not None for c in on_pg[0]) and on_pg[1][-1].source == "test"


def _offer_story(engine: Engine) -> tuple:
    """Coupons, a stamp mission and a subscription moved by purchases and months, flushed and reloaded midway."""
    t0 = OFFERS_T0
    book = OfferBook(engine)
    until = end_of_day(t0, "UTC", 7)
    book.issue(_campaign(COUPON, "cp"), "h1", "k0", _issued("coupon", "K1", 5.0, until), "UTC", t0)
    book.issue(_campaign(COUPON, "cp"), "h2", "k1", _issued("coupon", "K2", 5.0, until), "UTC", t0)
    book.issue(_campaign(MISSION, "ms"), "h1", "k2", _issued("stamp_mission", "M1", 5.0, end_of_day(t0, "UTC", 10),
                                                            categories=("MEAT", "DAIRY")), "UTC", t0)
    book.issue(_campaign(TIERS, "sb"), "h1", "k3", _issued("subscription", "S1", 2.0, end_of_day(t0, "UTC", 30)),
               "UTC", t0)
    for day in range(1, 4):
        book.purchase(_buy(f"e{day}", t0 + timedelta(days=day), ("MEAT", 45.0), ("DAIRY", 12.0)))
    book.flush()
    book = OfferBook(engine)  # a restart
    book.purchase(_buy("e3", t0 + timedelta(days=3), ("MEAT", 45.0), ("DAIRY", 12.0)))  # replayed: nothing
    book.purchase(_buy("e4", t0 + timedelta(days=4), ("MEAT", 250.0)))
    book.tick(datetime(2017, 12, 1, 0, 30, tzinfo=UTC))
    book.flush()
    reloaded = OfferBook(engine)
    assert reloaded.offers == book.offers and dict(reloaded.adjustment) == dict(book.adjustment)
    return reloaded.offers, reloaded.steps(), reloaded.liability(), dict(reloaded.adjustment)


def test_the_offer_book_flushes_and_reloads_on_postgres_as_on_sqlite(pg_engine, tmp_path) -> None:
    offers, steps, liability, adjustment = _offer_story(pg_engine)
    assert (offers, steps, liability, adjustment) == _offer_story(_sqlite(tmp_path))
    assert offers["K1"].status == "redeemed" and offers["K2"].status == "expired"
    assert offers["S1"].status == "active" and offers["S1"].progress["tier"] == "Plus"
    assert offers["M1"].status == "completed"
    assert all(s.at.tzinfo is not None for s in steps)


# -- checkpoints -----------------------------------------------------------------------------------------------------
def _checkpoint_story(engine: Engine) -> tuple:
    """A Kafka partition's checkpoint at an offset past 2**31, with a state, a profile and a dead letter."""
    store = CheckpointStore(engine)
    offset = 2**40 + 7
    ctx = CONTEXTS["1001"]
    cp = Checkpoint("kafka:purchases:3", offset, NOW, Counters(records=9, purchases=8, dead_letters=1))
    letter = DeadLetter(cp.source, offset - 1, "offset 1099511627782", "not JSON", "{", NOW)
    store.save(cp, [ctx.state], [ctx.profile], [letter], runner={"fired": {"sweep": NOW.isoformat()}})
    store.save(cp, [ctx.state], [], [letter])  # saved again after a restart: the letter is kept once
    return (store.load(cp.source), store.load_states(), store.load_profiles(), list_dead_letters(engine),
            store.load_runner(cp.source), store.watermark())


def test_checkpoints_round_trip_on_postgres_as_on_sqlite(pg_engine, tmp_path) -> None:
    on_pg = _checkpoint_story(pg_engine)
    assert on_pg == _checkpoint_story(_sqlite(tmp_path))
    cp, states, _, letters, runner, watermark = on_pg
    assert cp.position == 2**40 + 7 and watermark == NOW and states == {"1001": CONTEXTS["1001"].state}
    assert [d.position for d in letters] == [2**40 + 6] and runner == {"fired": {"sweep": NOW.isoformat()}}


# -- a whole embedded run ------------------------------------------------------------------------------------------
def test_the_subscription_run_ends_on_postgres_as_on_sqlite(pg_url, pg_engine, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NUDGE_DB_URL", pg_url)  # the settings the run builds read it
    response_run(tmp_path)  # the SQLite test's scenario and assertions, on PostgreSQL
    assert not (tmp_path / "home" / "nudge.db").exists()
    [entry] = Ledger(pg_engine).entries(verdict=Verdict.SENT)
    assert entry.campaign == "members" and OfferBook(pg_engine).offers[entry.offer_code].status == "active"
