"""Arbitration: the verdict each candidate gets, and the law and the caps as properties over generated cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaigns.arbitration import arbitrate
from engine.campaigns.candidates import Candidate, CustomerContext, Decision, Verdict
from engine.campaigns.caps import USES_CAP, BudgetBook, CapBook
from engine.campaigns.consent import ConsentBook, ConsentChange, is_night
from engine.campaigns.holdout import held_out, in_control
from engine.campaigns.schema import Campaign
from engine.clock import day_number, zone_info
from engine.errors import ArbitrationError
from engine.events import CustomerProfile

SEOUL = ZoneInfo("Asia/Seoul")
NOON = datetime(2017, 6, 1, 12, tzinfo=SEOUL)
GIVEN = datetime(2016, 1, 1, tzinfo=UTC)
IDS = [f"M{i:09d}" for i in range(1, 400)]


def _campaign(name: str, **fields) -> Campaign:
    base = {"name": name, "trigger": {"type": "lapse", "p_alive_below": 0.3}, "channel": "push",
            "template": name, "sender": "롯데멤버스", "holdout": 0}
    return Campaign.model_validate(base | fields)


def _ordinary(*campaigns: Campaign) -> list[str]:
    """Customers in no control group and no holdout of `campaigns`."""
    return [c for c in IDS if not in_control(c) and not any(held_out(k, c) for k in campaigns)]


def _consent(ids, channels=("push", "email"), night: bool = False) -> ConsentBook:
    changes = [ConsentChange(c, ch, "advertising", True, GIVEN, "test") for c in ids for ch in channels]
    if night:
        changes += [ConsentChange(c, ch, "night", True, GIVEN, "test") for c in ids for ch in channels]
    return ConsentBook.of(changes, NOON + timedelta(days=365))


def _run(candidates, campaigns, consent, now=NOON, paused=(), caps=None, budgets=None, zone="Asia/Seoul"):
    ctx = {c.customer_id: _zoned(c.customer_id, zone) for c in candidates}
    return {d.candidate.campaign + "/" + d.candidate.occurrence: d
            for d in arbitrate(candidates, {c.name: c for c in campaigns}, ctx, consent,
                               caps if caps is not None else CapBook(), budgets or BudgetBook(), now, paused)}


def _zoned(customer_id: str, zone: str) -> CustomerContext:
    """A customer whose profile puts them in `zone`."""
    return CustomerContext(customer_id, profile=CustomerProfile(customer_id=customer_id, time_zone=zone))


def _cand(campaign: str, cid: str, occurrence: str = "o1", at: datetime = NOON) -> Candidate:
    return Candidate(campaign, cid, occurrence, at)


def test_priority_then_value_then_name_wins_the_channel_and_others_are_outranked() -> None:
    low, high = _campaign("low", priority=1), _campaign("high", priority=5)
    rich, mail = _campaign("rich", priority=1, value=3.0), _campaign("mail", channel="email")
    [cid] = _ordinary(low, high, rich, mail)[:1]
    got = _run([_cand("low", cid), _cand("rich", cid), _cand("high", cid), _cand("mail", cid)],
               [low, high, rich, mail], _consent([cid]))
    assert got["high/o1"].verdict is Verdict.QUEUED
    assert got["rich/o1"].verdict is got["low/o1"].verdict is Verdict.OUTRANKED
    assert got["mail/o1"].verdict is Verdict.QUEUED  # another channel: one message per channel
    got = _run([_cand("low", cid), _cand("rich", cid)], [low, rich], _consent([cid]))
    assert (got["rich/o1"].verdict, got["low/o1"].verdict) == (Verdict.QUEUED, Verdict.OUTRANKED)


def test_paused_control_and_no_consent_are_recorded_and_leave_the_channel_free() -> None:
    paused, next_ = _campaign("paused", priority=9), _campaign("next")
    cid = _ordinary(paused, next_)[0]
    got = _run([_cand("paused", cid), _cand("next", cid)], [paused, next_], _consent([cid]), paused={"paused"})
    assert (got["paused/o1"].verdict, got["next/o1"].verdict) == (Verdict.PAUSED, Verdict.QUEUED)
    control = next(c for c in IDS if in_control(c))
    assert _run([_cand("next", control)], [next_], _consent([control]))["next/o1"].verdict is Verdict.CONTROL
    got = _run([_cand("next", cid)], [next_], _consent([cid], channels=("email",)))["next/o1"]
    assert (got.verdict, got.detail) == (Verdict.NO_CONSENT, "no advertising consent on push")


def test_transactional_needs_no_consent_and_skips_control_and_holdout() -> None:
    notice = _campaign("notice", kind="transactional", holdout=50)
    control = next(c for c in IDS if in_control(c) and held_out(notice, c))
    got = _run([_cand("notice", control)], [notice], ConsentBook.of([], NOON), now=NOON.replace(hour=23))
    assert (got["notice/o1"].verdict, got["notice/o1"].not_before) == (Verdict.QUEUED, None)


def test_the_held_out_pass_the_filters_and_take_the_slot_as_if_sent() -> None:
    camp = _campaign("camp", holdout=50, caps=[{"sends": 1, "days": 7}], priority=2)
    other = _campaign("other")
    cid = next(c for c in IDS if not in_control(c) and held_out(camp, c))
    caps = CapBook()
    got = _run([_cand("camp", cid), _cand("other", cid)], [camp, other], _consent([cid]), caps=caps)
    assert got["camp/o1"].verdict is Verdict.HELD_OUT and "would have been sent" in got["camp/o1"].detail
    assert got["other/o1"].verdict is Verdict.OUTRANKED
    assert _run([_cand("camp", cid, "o2")], [camp], _consent([cid]), caps=caps)["camp/o2"].verdict is Verdict.CAPPED
    # Without consent a held-out customer would not have been sent: recorded as no consent, not held out.
    assert _run([_cand("camp", cid)], [camp], _consent([]))["camp/o1"].verdict is Verdict.NO_CONSENT


def test_caps_and_budget() -> None:
    capped = _campaign("capped", caps=[{"sends": 1, "days": 2}])
    coupon = {"type": "coupon", "amount_off": 3000}
    thrifty = _campaign("thrifty", channel="email", offer=coupon, budget={"max_face_value": 5000})
    a, b = _ordinary(capped, thrifty)[:2]
    caps, budgets = CapBook(), BudgetBook()
    first = _run([_cand("capped", a), _cand("thrifty", a)], [capped, thrifty], _consent([a, b]), caps=caps,
                 budgets=budgets)
    assert first["capped/o1"].verdict is first["thrifty/o1"].verdict is Verdict.QUEUED
    second = _run([_cand("capped", a, "o2"), _cand("thrifty", b)], [capped, thrifty], _consent([a, b]),
                  now=NOON + timedelta(days=1), caps=caps, budgets=budgets)
    assert second["capped/o2"].verdict is Verdict.CAPPED
    assert second["thrifty/o1"].verdict is Verdict.OVER_BUDGET
    assert budgets.spent["thrifty"] == 3000


def test_quiet_hours_and_the_night_defer_and_a_too_long_wait_is_aborted() -> None:
    quiet = _campaign("quiet", quiet_hours={"push": {"start": "12:00", "end": "14:00"}})
    mail = _campaign("mail", channel="email", quiet_hours={"push": {"start": "12:00", "end": "14:00"}})
    cid = _ordinary(quiet, mail)[0]
    got = _run([_cand("quiet", cid), _cand("mail", cid)], [quiet, mail], _consent([cid], night=True))
    assert (got["quiet/o1"].deferred, got["quiet/o1"].not_before) == ("quiet_hours", NOON.replace(hour=14))
    assert (got["mail/o1"].verdict, got["mail/o1"].not_before) == (Verdict.QUEUED, None)  # quiet for push only
    late = NOON.replace(hour=22, minute=15)
    plain = _campaign("plain")
    got = _run([_cand("plain", cid), _cand("mail", cid)], [plain, mail], _consent([cid]), now=late)
    assert (got["plain/o1"].verdict, got["plain/o1"].deferred) == (Verdict.QUEUED, "night")
    assert got["plain/o1"].not_before == datetime(2017, 6, 2, 8, tzinfo=SEOUL)
    assert got["mail/o1"].not_before is None  # email is exempt from the night rule
    assert _run([_cand("plain", cid)], [plain], _consent([cid], night=True), now=late)["plain/o1"].not_before is None
    # Quiet hours running into the night: both waits apply, in turn.
    evening = _campaign("evening", quiet_hours={"push": {"start": "18:00", "end": "21:30"}})
    got = _run([_cand("evening", cid)], [evening], _consent([cid]), now=NOON.replace(hour=19))["evening/o1"]
    assert (got.deferred, got.not_before) == ("quiet_hours", datetime(2017, 6, 2, 8, tzinfo=SEOUL))
    hasty = _campaign("hasty", max_delay_hours=2)
    got = _run([_cand("hasty", cid)], [hasty], _consent([cid]), now=late)["hasty/o1"]
    assert got.verdict is Verdict.ABORTED and "past max_delay_hours 2" in got.detail


def test_unknown_campaign_or_customer_is_an_error() -> None:
    c = _campaign("c")
    with pytest.raises(ArbitrationError, match="campaign 'gone' is not in the running set"):
        arbitrate([_cand("gone", "M1")], {"c": c}, {"M1": CustomerContext("M1")}, _consent([]), CapBook(),
                  BudgetBook(), NOON)
    with pytest.raises(ArbitrationError, match="customer 'M2' has no context"):
        arbitrate([_cand("c", "M2")], {"c": c}, {}, _consent([]), CapBook(), BudgetBook(), NOON)


# --- properties over generated campaigns, customers, consent and times ---

ZONES = ("UTC", "Asia/Seoul", "America/New_York")
POOL = IDS[:40]


@st.composite
def _campaigns(draw) -> dict[str, Campaign]:
    out = {}
    for i in range(draw(st.integers(1, 4))):
        caps = draw(st.lists(st.fixed_dictionaries({"sends": st.integers(0, 3), "days": st.integers(1, 10),
                                                    "tag": st.sampled_from([None, "promo"])}), max_size=2))
        quiet = draw(st.sampled_from([{}, {"push": {"start": "22:00", "end": "07:00"}},
                                      {"email": {"start": "12:00", "end": "13:00"}}]))
        c = _campaign(f"c{i}", channel=draw(st.sampled_from(["push", "email", "wallet"])),
                      kind=draw(st.sampled_from(["advertising", "advertising", "transactional"])),
                      priority=draw(st.integers(0, 2)), holdout=draw(st.sampled_from([0, 10, 50])),
                      caps=caps, tags=draw(st.sampled_from([[], ["promo"]])), quiet_hours=quiet,
                      offer={"type": "coupon", "amount_off": 10}, budget={"max_face_value": 200})
        out[c.name] = c
    return out


@st.composite
def _cases(draw):
    campaigns = draw(_campaigns())
    customers = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=12, unique=True))
    zones = {c: draw(st.sampled_from(ZONES)) for c in customers}
    changes = []
    for c in customers:
        for ch in ("push", "email", "wallet"):
            for purpose in ("advertising", "night"):
                if draw(st.booleans()):
                    at = GIVEN + timedelta(days=draw(st.integers(0, 600)))
                    changes.append(ConsentChange(c, ch, purpose, draw(st.booleans()) or purpose == "night", at,
                                                 "test"))
    rounds = draw(st.lists(st.tuples(st.integers(0, 24 * 20), st.lists(
        st.tuples(st.sampled_from(sorted(campaigns)), st.sampled_from(customers)), max_size=15)),
        min_size=1, max_size=6))
    return campaigns, zones, changes, sorted(rounds)


def _replay(case) -> tuple[list[Decision], dict[str, str], list[ConsentChange], dict[str, Campaign]]:
    """Arbitrate each round at its time, caps and budgets carried over, as the engine does."""
    campaigns, zones, changes, rounds = case
    caps, budgets, decisions = CapBook(), BudgetBook(), []
    contexts = {c: _zoned(c, z) for c, z in zones.items()}
    start = datetime(2017, 3, 1, tzinfo=UTC)
    for n, (hours, wanted) in enumerate(rounds):
        now = start + timedelta(hours=hours, minutes=17 * n)
        cands = {Candidate(k, c, f"r{n}", now) for k, c in wanted}  # one occurrence per round: fresh keys
        decisions += arbitrate(cands, campaigns, contexts, ConsentBook.of(changes, now), caps, budgets, now)
    return decisions, zones, changes, campaigns


def _send_time(d: Decision) -> datetime:
    return d.not_before or d.decided_at


def _property(check) -> None:
    queued: list[int] = []

    @settings(max_examples=120, deadline=None)
    @given(_cases())
    def run(case) -> None:
        decisions, zones, changes, campaigns = _replay(case)
        check(decisions, zones, changes, campaigns)
        queued.append(sum(d.verdict is Verdict.QUEUED for d in decisions))

    run()
    assert sum(queued) > 0  # the generated cases did send: the property is not vacuous


def test_no_customer_ever_exceeds_a_cap() -> None:
    def check(decisions, zones, changes, campaigns) -> None:
        used = [d for d in decisions if d.verdict in USES_CAP]
        for name, campaign in campaigns.items():
            for cap in campaign.caps:
                for cid, zone in zones.items():
                    days = [day_number(_send_time(d), zone) for d in used if d.candidate.customer_id == cid and
                            (d.candidate.campaign == name if cap.tag is None
                             else cap.tag in campaigns[d.candidate.campaign].tags)]
                    for s in {d - cap.days + 1 + k for d in days for k in range(cap.days)}:
                        assert sum(s <= d < s + cap.days for d in days) <= cap.sends

    _property(check)


def test_held_out_control_and_opted_out_customers_are_never_queued() -> None:
    def check(decisions, zones, changes, campaigns) -> None:
        for d in decisions:
            campaign, cid = campaigns[d.candidate.campaign], d.candidate.customer_id
            if d.verdict is not Verdict.QUEUED or campaign.kind != "advertising":
                continue
            assert not in_control(cid) and not held_out(campaign, cid)
            latest = [c for c in changes if c.customer_id == cid and c.channel == campaign.channel
                      and c.purpose == "advertising" and c.at <= d.decided_at]
            assert latest and max(latest, key=lambda c: (c.at, not c.granted)).granted

    _property(check)


def test_no_advertising_is_queued_for_the_night_without_night_consent_except_email() -> None:
    def check(decisions, zones, changes, campaigns) -> None:
        for d in decisions:
            campaign, cid = campaigns[d.candidate.campaign], d.candidate.customer_id
            if d.verdict is not Verdict.QUEUED or campaign.kind != "advertising" or campaign.channel == "email":
                continue
            go = _send_time(d).astimezone(zone_info(zones[cid]))
            night_ok = ConsentBook.of(changes, d.decided_at).granted(cid, campaign.channel, "night")
            assert night_ok or not is_night(go), f"{d.candidate.key} at {go.isoformat()}"
            quiet = campaign.quiet_hours.get(campaign.channel)
            assert quiet is None or not quiet.covers(go.time())

    _property(check)


def test_every_candidate_gets_exactly_one_decision_and_one_message_per_channel() -> None:
    def check(decisions, zones, changes, campaigns) -> None:
        keys = [d.candidate.key for d in decisions]
        assert len(keys) == len(set(keys))
        sent = [(d.candidate.customer_id, campaigns[d.candidate.campaign].channel, d.decided_at)
                for d in decisions if d.verdict in (Verdict.QUEUED, Verdict.HELD_OUT)]
        assert len(sent) == len(set(sent))

    _property(check)
