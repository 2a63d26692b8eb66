"""End to end: the example campaigns backtested over real Complete Journey households, through the real stores,
refits, ledger and file outboxes. What a marketer relies on: messages go out, each key once per channel, and
neither a second replay, a SIGKILL and resume, nor a pause and resume sends anything twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.campaigns.candidates import Verdict
from engine.campaigns.consent import ConsentBook, ConsentStore, is_night, read_csv
from engine.campaigns.holdout import held_out, in_control
from engine.clock import zone_info
from engine.config import Settings
from engine.delivery.ledger import Ledger
from engine.runtime.campaigns import campaign_table, open_campaigns, reset_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources import Record
from engine.sources.completejourney import CompleteJourneySource

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = ROOT / "campaigns"
CONSENT = CAMPAIGNS / "consent" / "cj_consent.csv"
HOUSEHOLDS = 120
START = datetime(2017, 12, 1, tzinfo=UTC)
OUTBOXES = ("push", "email", "webhook")


def _settings(home: Path) -> Settings:
    return Settings(home=home, campaigns_dir=CAMPAIGNS, templates_dir=ROOT / "templates", checkpoint_every=5_000)


@pytest.fixture(scope="module")
def source(cj_tables) -> CompleteJourneySource:
    ids = set(sorted(cj_tables["transactions"]["household_id"].unique())[:HOUSEHOLDS])
    return CompleteJourneySource(households=ids, tables=cj_tables)


class Prefix:
    """The first `n` records of a source under the source's own key: the replay stops there, as if the rest
    had not arrived yet, and a later replay of the whole source reads on from its checkpoint."""

    def __init__(self, source, n: int) -> None:
        self.source, self.n = source, n
        self.key, self.decoder = source.key, source.decoder

    def __len__(self) -> int:
        return self.n

    def records(self, start: int = 0) -> Iterator[Record]:
        for record in self.source.records(start):
            if record.position >= self.n:
                return
            yield record


def _position_at(source, when: datetime) -> int:
    """The position of the first record at or after `when` (profiles have no time and come first)."""
    for record in source.records():
        event = source.decoder.decode(record.raw, record.where)
        if getattr(event, "event_time", None) is not None and event.event_time >= when:
            return record.position
    return len(source)


def _run(settings: Settings, source, *, fresh: bool):
    runtime = EmbeddedRuntime(settings)
    if fresh:
        reset_campaigns(settings, runtime.engine)
        ConsentStore(runtime.engine).record(read_csv(CONSENT))
    campaigns = open_campaigns(settings, runtime.engine, start=START)
    runtime.replay(source, fresh=fresh, observer=campaigns)
    return runtime, campaigns


def _outbox_keys(home: Path) -> Counter:
    keys: Counter = Counter()
    for name in OUTBOXES:
        path = home / "outbox" / f"{name}.jsonl"
        if path.exists():
            keys.update(json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip())
    return keys


def _sent(engine) -> set[str]:
    return Ledger(engine).keys(Verdict.SENT)


@pytest.fixture(scope="module")
def backtest(tmp_path_factory, source):
    """One uninterrupted backtest: the reference every other run is compared with."""
    home = tmp_path_factory.mktemp("clean")
    settings = _settings(home)
    runtime, campaigns = _run(settings, source, fresh=True)
    return home, settings, runtime, campaigns


def test_backtest_sends_each_key_once_within_holdout_control_consent_and_night(backtest) -> None:
    home, settings, runtime, campaigns = backtest
    ledger = campaigns.ledger
    rows = {r["campaign"]: r for r in campaign_table(ledger, campaigns.campaign_set.campaigns)}
    sent = [e for e in ledger.entries() if e.verdict is Verdict.SENT]
    assert len(sent) >= 20, rows
    assert sum(r["held_out"] for r in rows.values()) >= 1, rows
    outbox = _outbox_keys(home)
    assert max(outbox.values()) == 1  # no key twice on any channel
    assert {e.key for e in sent if e.channel in OUTBOXES} == set(outbox)
    changes = ConsentStore(runtime.engine).changes()
    running = campaigns.running()
    for e in sent:
        campaign = running[e.campaign]
        assert not held_out(campaign, e.customer_id), e.key
        local = e.sent_at.astimezone(zone_info(campaigns.contexts[e.customer_id].zone))
        if campaign.kind == "advertising":
            assert not in_control(e.customer_id, settings.control_percent), e.key
            book = ConsentBook.of(changes, e.sent_at)
            assert book.granted(e.customer_id, e.channel, "advertising"), e.key
            if is_night(local) and e.channel != "email":
                assert book.granted(e.customer_id, e.channel, "night"), (e.key, local)
    # caps: never more sends in a window than a campaign's cap allows
    for name, campaign in running.items():
        for cap in campaign.caps:
            if cap.tag is not None:
                continue
            days: dict[str, list] = {}
            for e in sent:
                if e.campaign == name:
                    days.setdefault(e.customer_id, []).append(e.sent_at.date())
            for cid, dates in days.items():
                dates.sort()
                for i, first in enumerate(dates):
                    inside = [d for d in dates[i:] if (d - first).days < cap.days]
                    assert len(inside) <= cap.sends, (name, cid, dates)


def _offers(db: Path) -> tuple[dict, set]:
    """The offer book as stored: each code's status, cost and progress, and every step."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        offers = {code: (status, round(cost, 2), progress) for code, status, cost, progress in
                  conn.execute("SELECT code, status, cost, progress FROM offer")}
        steps = set(conn.execute("SELECT code, ref, kind, round(amount, 2) FROM offer_step"))
    finally:
        conn.close()
    return offers, steps


def test_sent_offers_live_on_redeemed_only_in_scope_within_validity_and_above_the_minimum(backtest) -> None:
    from engine.models.data import bought_mask, line_frame
    from engine.offers.book import OfferBook
    from engine.report.build import build_report

    _, _, runtime, campaigns = backtest
    book = OfferBook(runtime.engine)
    sent = [e for e in campaigns.ledger.entries(verdict=Verdict.SENT)
            if e.offer_code and not e.occurrence.startswith("reminder@")]
    assert sent and all(e.offer_code in book.offers for e in sent)  # every offer a message carried is held
    lines = line_frame(runtime.lines.read())
    bought = lines[bought_mask(lines)]
    redeemed = [h for h in book.offers.values() if h.status == "redeemed"]
    assert len(redeemed) >= 5, Counter((h.kind, h.status) for h in book.offers.values())
    steps = {(s.code, s.kind): s for s in book.steps()}
    for held in redeemed:
        coupon = held.coupon()
        step = steps[(held.code, "redeemed")]
        assert held.issued_at < step.at <= held.valid_until, held.code
        basket = bought[(bought["customer_id"].astype(str) == held.customer_id) & (bought["event_time"] == step.at)]
        scope = set(coupon.scope.categories)
        in_scope = basket[basket["category"].astype(str).isin(scope)] if scope else basket
        assert round(float(in_scope["amount"].sum()), 2) >= coupon.min_spend, held.code
        assert 0 < held.cost <= held.face_value + 1e-9, held.code
    for held in book.offers.values():  # one stamp per day and category; the card's count completes it
        if held.kind != "stamp_mission":
            continue
        days = [tuple(s) for s in held.progress.get("stamps", [])]
        assert len(days) == len(set(days)), held.code
        assert (len(days) >= held.terms["stamps"]) == (held.status == "completed"), held.code
    report = build_report(campaigns.ledger.entries(), book, lines, campaigns.running(), title="t",
                          period=(START, None), backtest=True)
    liability = {r["campaign"]: r["total"] for r in report["liability"]}
    open_face = Counter()
    for held in book.offers.values():
        if held.status == "open" and held.kind in ("coupon", "reward", "tier_coupon"):
            open_face[held.campaign] += held.face_value
    points = Counter()
    for s in book.steps():
        if s.kind == "points":
            points[s.campaign] += s.amount
    for name in set(open_face) | set(points):
        assert abs(liability[name] - open_face[name] - points[name]) < 0.01, name
    by_name = {r["campaign"]: r for r in report["campaigns"]}
    assert sum(r["redemptions"] for r in by_name.values()) == len(redeemed)


def test_replaying_again_over_the_same_ledger_sends_nothing_more(backtest, source) -> None:
    home, settings, _, _ = backtest
    before = _outbox_keys(home)
    offers = _offers(home / "nudge.db")
    runtime = EmbeddedRuntime(settings)
    campaigns = open_campaigns(settings, runtime.engine, start=START)
    runtime.replay(source, fresh=True, observer=campaigns)  # state from nothing, the ledger kept
    assert _outbox_keys(home) == before
    assert max(before.values()) == 1
    assert _offers(home / "nudge.db") == offers  # every purchase again: no offer redeemed, stamped or charged twice


def test_pause_then_resume_sends_nothing_twice_and_nothing_paused(source, tmp_path) -> None:
    settings = _settings(tmp_path / "paused")
    name = "cj_repurchase_coupon"
    runtime, campaigns = _run(settings, Prefix(source, _position_at(source, datetime(2017, 12, 10, tzinfo=UTC))),
                              fresh=True)
    sent_before = {k for k in _sent(runtime.engine) if k.startswith(name)}
    assert sent_before
    campaigns.campaign_set.pause(name, by="test", reason="creative under review", now=datetime.now(UTC))
    runtime, campaigns = _run(settings, Prefix(source, _position_at(source, datetime(2017, 12, 18, tzinfo=UTC))),
                              fresh=False)
    paused = Ledger(runtime.engine).keys(Verdict.PAUSED)
    assert any(k.startswith(name) for k in paused)
    campaigns.campaign_set.resume(name, by="test", now=datetime.now(UTC))
    runtime, campaigns = _run(settings, source, fresh=False)
    sent = {k for k in _sent(runtime.engine) if k.startswith(name)}
    assert sent - sent_before, "the resumed campaign sent nothing new"
    assert not (sent & paused)
    assert max(_outbox_keys(settings.home).values()) == 1


# -- a real SIGKILL in the middle of a backtest ---------------------------------------------------------------
def _nudge() -> str:
    script = Path(sys.executable).parent / "nudge"
    return str(script) if script.exists() else shutil.which("nudge") or pytest.fail("no nudge console script")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env.update(NUDGE_HOME=str(home), NUDGE_CAMPAIGNS_DIR=str(CAMPAIGNS), NUDGE_TEMPLATES_DIR=str(ROOT / "templates"),
               NUDGE_CHECKPOINT_EVERY="5000")
    return env


def _command(*extra: str) -> list[str]:
    return [_nudge(), "run", "--source", "cj", "--households", str(HOUSEHOLDS), "--from", START.date().isoformat(),
            *extra]


def _sent_rows(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
        try:
            return conn.execute("SELECT count(*) FROM delivery_ledger WHERE verdict = 'sent'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def test_a_killed_backtest_resumes_to_the_same_deliveries_with_no_key_twice(backtest, tmp_path) -> None:
    _, _, clean_runtime, _ = backtest
    home = tmp_path / "killed"
    proc = subprocess.Popen(_command("--fresh", "--consent", str(CONSENT)), env=_env(home), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while _sent_rows(home / "nudge.db") < 5:
            if proc.poll() is not None:
                pytest.fail(f"the run exited ({proc.returncode}) before it was killed:\n{proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("no message sent within 300 s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(_command("--json"), env=_env(home), cwd=ROOT, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    settings = _settings(home)
    resumed = _sent(EmbeddedRuntime(settings).engine)
    assert resumed == _sent(clean_runtime.engine)
    outbox = _outbox_keys(home)
    assert max(outbox.values()) == 1
    clean_db = Path(clean_runtime.settings.home) / "nudge.db"
    assert _offers(home / "nudge.db") == _offers(clean_db)  # the offers' lives too, through the kill


def test_a_bad_campaign_file_is_rejected_with_its_line_while_the_last_good_version_keeps_sending(source,
                                                                                               tmp_path) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(CAMPAIGNS, folder, ignore=shutil.ignore_patterns("lpoint", "consent"))
    settings = _settings(tmp_path / "home").model_copy(update={"campaigns_dir": folder})
    name = "cj_repurchase_coupon"
    middle = datetime(2017, 12, 12, tzinfo=UTC)
    _run(settings, Prefix(source, _position_at(source, middle)), fresh=True)
    path = folder / f"{name}.yaml"
    text = path.read_text()
    line = next(i for i, row in enumerate(text.splitlines(), 1) if row.startswith("channel:"))
    path.write_text(text.replace("channel: push", "channel: pigeon"))
    runtime, campaigns = _run(settings, source, fresh=False)
    error = campaigns.report.reload_errors[name]
    assert f"{path}:{line}: channel:" in error and "pigeon" in error
    assert name in campaigns.campaign_set.campaigns  # the last good version still runs
    later = [e for e in Ledger(runtime.engine).entries(campaign=name, verdict=Verdict.SENT) if e.decided_at > middle]
    assert later, "the last good version sent nothing after the bad file"
    actions = [a.action for a in campaigns.campaign_set.audit(name)]
    assert "rejected" in actions


def test_preview_renders_a_customers_message_and_says_what_would_stop_it(backtest) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    home, _, _, campaigns = backtest
    entry = next(e for e in campaigns.ledger.entries(campaign="cj_repurchase_coupon", verdict=Verdict.SENT))
    env = {"NUDGE_HOME": str(home), "NUDGE_CAMPAIGNS_DIR": str(CAMPAIGNS),
           "NUDGE_TEMPLATES_DIR": str(ROOT / "templates")}
    result = CliRunner().invoke(app, ["preview", "cj_repurchase_coupon", entry.customer_id, "--at",
                                      entry.decided_at.date().isoformat()], env=env)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "audience:" in out and "consent:" in out and "key: cj_repurchase_coupon|" in out
    assert "Complete Journey Market" in out and "unsubscribe" in out.lower()
    assert "CJRP-" in out  # the coupon's code, derived from the key
    missing = CliRunner().invoke(app, ["preview", "cj_repurchase_coupon", "no-such-customer"], env=env)
    assert missing.exit_code == 2 and "no customer 'no-such-customer'" in missing.output


def test_the_backtest_attributes_conversions_and_says_which_uplifts_are_not_measurable(backtest) -> None:
    from engine.measure.attribution import campaign_results
    from engine.models.data import line_frame

    _, _, runtime, campaigns = backtest
    results = {r.campaign: r for r in campaign_results(campaigns.ledger.entries(), line_frame(runtime.lines.read()))}
    coupon = results["cj_repurchase_coupon"].uplift
    assert coupon.treated >= 20 and 0 < coupon.treated_converted <= coupon.treated
    assert results["consent_reconfirm"].uplift.not_measurable == "no held-out customers"  # never held out
    for r in results.values():
        if r.uplift.measurable:
            assert -1 <= r.uplift.low <= r.uplift.difference <= r.uplift.high <= 1


def test_nudge_report_prints_the_backtest_and_writes_a_self_contained_page(backtest, tmp_path) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    home, _, _, campaigns = backtest
    env = {"NUDGE_HOME": str(home), "NUDGE_CAMPAIGNS_DIR": str(CAMPAIGNS),
           "NUDGE_TEMPLATES_DIR": str(ROOT / "templates")}
    page = tmp_path / "out" / "report.html"
    result = CliRunner().invoke(app, ["report", "--json", "--html", str(page)], env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["report"]
    ledger = Counter((e.campaign, e.verdict) for e in campaigns.ledger.entries()
                     if not (e.occurrence.startswith("reminder@") and e.verdict is Verdict.SENT))
    by_name = {r["campaign"]: r for r in report["campaigns"]}
    for name, row in by_name.items():  # the report counts what the ledger holds
        assert row["sent"] == ledger[(name, Verdict.SENT)], name
        assert row["held_out"] == ledger[(name, Verdict.HELD_OUT)], name
    assert report["backtest"] is True
    html = page.read_text()
    assert "A/A" in html and "<script src=" not in html and "http://" not in html.replace("http://www.w3.org", "")
    shown = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["report"], env=env)
    assert shown.exit_code == 0, shown.output
    for section in ("A/A", "liability", "cj_repurchase_coupon"):
        assert section in shown.output, section
