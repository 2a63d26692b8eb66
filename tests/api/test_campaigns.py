"""The campaign endpoints: the list and reports equal the ledger and `build_report`; a dry run decides as arbitration
would and records nothing; validation names lines and fields; the kill switch moves and says so."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from engine.campaigns.candidates import Verdict
from engine.campaigns.consent import ConsentStore
from engine.campaigns.holdout import held_out, in_control
from engine.campaigns.running import CampaignSet
from engine.db import connect
from engine.delivery.ledger import Ledger
from engine.models.data import line_frame
from engine.offers.book import OfferBook
from engine.report.build import build_report
from engine.runtime.campaigns import stored_campaigns
from engine.store.lines import LineStore
from tests.api.conftest import CAMPAIGNS, read_headers, write_headers

pytestmark = pytest.mark.slow  # the session's backtest


@pytest.fixture(scope="module")
def report(built) -> dict:
    engine = connect(built.settings.database_url)
    return build_report(Ledger(engine).entries(), OfferBook(engine),
                        line_frame(LineStore(built.settings.lines_dir, engine).read()),
                        stored_campaigns(built.settings, engine), title="t", period=(None, None), backtest=True)


def _sent(entries, name: str, verdict: Verdict) -> int:
    return sum(1 for e in entries if e.campaign == name and e.verdict is verdict
               and not (verdict is Verdict.SENT and e.occurrence.startswith("reminder@")))


def test_the_list_counts_what_the_ledger_holds(client, built, report) -> None:
    entries = Ledger(connect(built.settings.database_url)).entries()
    listed = {c["name"]: c for c in client.get("/api/campaigns").json()}
    assert set(listed) == {p.stem for p in CAMPAIGNS.glob("*.yaml")} | {"consent_reconfirm"}
    rows = {r["campaign"]: r for r in report["campaigns"]}
    for name, c in listed.items():
        assert c["sent"] == _sent(entries, name, Verdict.SENT) == rows[name]["sent"], name
        assert c["held_out"] == _sent(entries, name, Verdict.HELD_OUT) == rows[name]["held_out"], name
        assert c["paused"] is False and c["running"] is True
    assert listed["cj_repurchase_coupon"]["sent"] > 0 and listed["cj_repurchase_coupon"]["held_out"] > 0


def test_each_report_is_build_reports_row(client, report) -> None:
    for row in report["campaigns"]:
        name = row["campaign"]
        shown = client.get(f"/api/campaigns/{name}/report").json()
        assert (shown["sent"], shown["held_out"], shown["reminders"]) == (row["sent"], row["held_out"],
                                                                          row["reminders"])
        u = row["uplift"]
        assert shown["uplift"] == {"value": u["estimate"], "low": u["low"], "high": u["high"],
                                   "measurable": u["measurable"], "reason": u["reason"],
                                   "contains_zero": u["contains_zero"]}
        assert shown["net_revenue"] == row["net_incremental_revenue"]
        days = [d for d in report["conversions_over_time"] if d["campaign"] == name]
        assert [(d["day"], d["treated"], d["control"]) for d in shown["conversions"]] == \
            [(d["date"], d["treated"], d["held_out"]) for d in days]
    coupon = client.get("/api/campaigns/cj_repurchase_coupon/report").json()
    assert coupon["uplift"]["measurable"] and coupon["uplift"]["low"] <= coupon["uplift"]["value"] \
        <= coupon["uplift"]["high"]
    assert sum(d["treated"] for d in coupon["conversions"]) > 0
    missing = client.get("/api/campaigns/no_such_campaign/report")
    assert missing.status_code == 404 and "no_such_campaign" in missing.json()["detail"]


def test_a_dry_run_decides_as_arbitration_and_records_nothing(client, built) -> None:
    engine = connect(built.settings.database_url)
    before = Ledger(engine).counts()
    at = datetime(2017, 12, 31, 12, tzinfo=UTC)
    assert client.get("/api/campaigns/cj_stamp_mission/preview").status_code == 401
    answer = client.get("/api/campaigns/cj_stamp_mission/preview", headers=read_headers(),
                        params={"at": at.isoformat(), "limit": 500})
    assert answer.status_code == 200, answer.text
    dry = answer.json()
    assert dry["candidates"] == dry["already_decided"] + dry["already_subscribed"] + sum(dry["audience"].values()) \
        + sum(dry["verdicts"].values())
    assert dry["verdicts"].get("queued", 0) > 0 and dry["verdicts"].get("no_consent", 0) > 0
    assert len(dry["sample"]) == min(500, sum(dry["verdicts"].values()))
    campaign = stored_campaigns(built.settings, engine)["cj_stamp_mission"]
    consent = ConsentStore(engine).book(at)
    for row in dry["sample"]:
        cid = row["customer_id"]
        if row["verdict"] == "queued":
            assert not held_out(campaign, cid) and not in_control(cid, built.settings.control_percent)
            assert consent.granted(cid, campaign.channel, "advertising") and row["offer_code"].startswith("MSN")
        elif row["verdict"] == "held_out":
            assert held_out(campaign, cid)
        elif row["verdict"] == "no_consent":
            assert not consent.granted(cid, campaign.channel, "advertising")
    one = dry["sample"][0]["customer_id"]
    shown = client.get("/api/campaigns/cj_stamp_mission/preview", headers=read_headers(),
                       params={"at": at.isoformat(), "customer_id": one, "limit": 0}).json()
    assert shown["customer"]["checks"]["audience"] == "matches" and shown["customer"]["title"]
    assert Ledger(engine).counts() == before  # a dry run records nothing


def test_validate_says_which_line_and_field(client) -> None:
    text = (CAMPAIGNS / "cj_winback.yaml").read_text(encoding="utf-8")
    assert client.post("/api/campaigns/validate", content=text).status_code == 401
    good = client.post("/api/campaigns/validate", content=text, headers=write_headers())
    assert good.status_code == 200 and good.json()["name"] == "cj_winback" and good.json()["trigger"] == "lapse"
    bad_text = text.replace("type: lapse", "type: lapsed").replace("channel:", "chanel:")
    bad = client.post("/api/campaigns/validate", content=bad_text, headers=write_headers())
    assert bad.status_code == 422
    problems = {tuple(p["loc"]): p for p in bad.json()["detail"]}
    lines = bad_text.splitlines()
    assert "lapsed" in lines[problems[("trigger", "type")]["line"] - 1]
    assert "chanel" in lines[problems[("chanel",)]["line"] - 1] and "unknown field" in problems[("chanel",)]["msg"]
    broken = client.post("/api/campaigns/validate", content="name: [unclosed", headers=write_headers())
    assert broken.status_code == 422 and broken.json()["detail"][0]["line"] == 1


def test_pause_and_resume_move_the_kill_switch(client, built) -> None:
    engine = connect(built.settings.database_url)
    folder = CampaignSet(CAMPAIGNS, built.settings.templates_dir, engine)
    name = "cj_winback"
    assert client.post(f"/api/campaigns/{name}/pause", json={"reason": "x"}).status_code == 401
    paused = client.post(f"/api/campaigns/{name}/pause", json={"reason": "creative under review"},
                         headers=write_headers())
    assert paused.json() == {"name": name, "paused": True, "changed": True} and folder.is_paused(name)
    assert {c["name"]: c["paused"] for c in client.get("/api/campaigns").json()}[name] is True
    again = client.post(f"/api/campaigns/{name}/pause", json={"reason": "twice"}, headers=write_headers())
    assert again.json()["changed"] is False
    resumed = client.post(f"/api/campaigns/{name}/resume", headers=write_headers())
    assert resumed.json() == {"name": name, "paused": False, "changed": True} and not folder.is_paused(name)
    assert [e.action for e in folder.audit(name)][-2:] == ["paused", "resumed"]
    assert client.post("/api/campaigns/nope/pause", json={"reason": "x"}, headers=write_headers()).status_code == 404
    assert client.post(f"/api/campaigns/{name}/pause", json={"reason": ""}, headers=write_headers()).status_code \
        == 422
    assert Counter(e.action for e in folder.audit(name))["paused"] == 1
