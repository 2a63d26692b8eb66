"""Arbitration: which candidate messages go, when, and why the others do not. Pure: no I/O, no wall clock.

Per customer, campaigns in order priority desc, value desc, name. A candidate is judged in this order:
erased on request (on the suppression list) -> NO_CONSENT, whatever the campaign's kind; paused -> PAUSED;
advertising to the global control group -> CONTROL; its channel already taken in this arbitration -> OUTRANKED;
no consent -> NO_CONSENT; a cap (its own, or any campaign's cap on a tag it carries) -> CAPPED; budget ->
OVER_BUDGET; then held out -> HELD_OUT, else QUEUED.

The holdout is drawn after the filters, as the issue asks ("holdout members pass the same filters"), so the
held-out are exactly the customers who would have been sent; a held-out candidate takes its channel and cap
slot as if sent. Transactional messages are owed to the customer: no control group, no holdout, no consent
needed. A QUEUED message waits (not_before) through the campaign's quiet hours for its channel and, for
advertising without night consent, through the night; one that would wait longer than the campaign's
max_delay_hours is ABORTED now. Caps are checked on the day the message will go.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Mapping
from datetime import UTC, datetime, timedelta

from engine.campaigns.candidates import Candidate, CustomerContext, Decision, Verdict
from engine.campaigns.caps import BudgetBook, CapBook, tag_caps
from engine.campaigns.consent import ConsentBook
from engine.campaigns.holdout import held_out, in_control
from engine.campaigns.schema import Campaign, Cap, QuietHours
from engine.clock import zone_info
from engine.errors import ArbitrationError


def quiet_end(quiet: QuietHours, local: datetime) -> datetime:
    """The local time the quiet hours covering `local` end (today or tomorrow)."""
    end = datetime.combine(local.date(), quiet.end, tzinfo=local.tzinfo)
    return end if end > local else datetime.combine(local.date() + timedelta(days=1), quiet.end,
                                                    tzinfo=local.tzinfo)


def release(campaign: Campaign, customer_id: str, consent: ConsentBook, local: datetime) -> tuple[datetime, str | None]:
    """The earliest local time from `local` the message may go, and why it waits ("quiet_hours", "night")."""
    quiet = campaign.quiet_hours.get(campaign.channel)
    first: str | None = None
    for _ in range(4):  # quiet hours end at most once and the night at most once before both are clear
        moved = False
        if quiet is not None and quiet.covers(local.time()):
            local, moved, first = quiet_end(quiet, local), True, first or "quiet_hours"
        night = consent.night_deferral(customer_id, campaign.channel, campaign.kind, local)
        if night is not None:
            local, moved, first = night, True, first or "night"
        if not moved:
            return local, first
    raise ArbitrationError(f"campaign {campaign.name!r}: quiet_hours for {campaign.channel} and the night "
                           f"leave no time to send")


def _order(candidate: Candidate, campaigns: Mapping[str, Campaign]) -> tuple:
    c = campaigns[candidate.campaign]
    return (candidate.customer_id, -c.priority, -c.value, c.name, candidate.at, candidate.occurrence)


def arbitrate(candidates: Iterable[Candidate], campaigns: Mapping[str, Campaign],
              contexts: Mapping[str, CustomerContext], consent: ConsentBook, caps: CapBook, budgets: BudgetBook,
              now: datetime, paused: Collection[str] = (), control_percent: float = 5.0,
              suppressed: Container[str] = ()) -> list[Decision]:
    """One Decision per candidate, in the order judged; QUEUED and HELD_OUT ones update `caps`, QUEUED `budgets`.

    Raises ArbitrationError for a candidate of a campaign not in `campaigns` or a customer not in `contexts`.
    Candidates whose key the ledger already holds should be left out by the caller: judging one again would
    count its cap slot twice.
    """
    if now.tzinfo is None:
        raise ArbitrationError(f"arbitrate: now {now.isoformat()} has no zone")
    pending = list(candidates)
    for cand in pending:
        if cand.campaign not in campaigns:
            raise ArbitrationError(f"candidate {cand.key}: campaign {cand.campaign!r} is not in the running set")
        if cand.customer_id not in contexts:
            raise ArbitrationError(f"candidate {cand.key}: customer {cand.customer_id!r} has no context")
    pending.sort(key=lambda cand: _order(cand, campaigns))
    taken: set[tuple[str, str]] = set()  # (customer, channel) given a message in this arbitration
    by_tag = tag_caps(campaigns.values())
    decisions: list[Decision] = []
    for cand in pending:
        campaign = campaigns[cand.campaign]
        zone = contexts[cand.customer_id].zone
        decisions.append(_judge(cand, campaign, zone, consent, caps, by_tag, budgets, now, paused,
                                control_percent, taken, suppressed))
    return decisions


def _judge(cand: Candidate, campaign: Campaign, zone: str, consent: ConsentBook, caps: CapBook,
           by_tag: Mapping[str, list[Cap]], budgets: BudgetBook, now: datetime, paused: Collection[str],
           control_percent: float, taken: set[tuple[str, str]], suppressed: Container[str] = ()) -> Decision:
    def decide(verdict: Verdict, detail: str = "", not_before: datetime | None = None,
               deferred: str | None = None) -> Decision:
        return Decision(cand, verdict, now, not_before, deferred, detail)

    cid, advertising = cand.customer_id, campaign.kind == "advertising"
    if cid in suppressed:  # an erased customer is owed nothing, not even a transactional message
        return decide(Verdict.NO_CONSENT, "customer erased on request: on the suppression list")
    if campaign.name in paused:
        return decide(Verdict.PAUSED, f"campaign {campaign.name!r} is paused")
    if advertising and in_control(cid, control_percent):
        return decide(Verdict.CONTROL, f"customer in the global control group ({control_percent:g}%)")
    if (cid, campaign.channel) in taken:
        return decide(Verdict.OUTRANKED, f"{campaign.channel} already given to a higher-ranked message")
    local = now.astimezone(zone_info(zone))
    # The night alone defers (release handles it); any other consent reason drops the message.
    no_consent = consent.allows(cid, campaign.channel, campaign.kind, local)
    if no_consent is not None and consent.night_deferral(cid, campaign.channel, campaign.kind, local) is None:
        return decide(Verdict.NO_CONSENT, no_consent)
    go_local, deferred = release(campaign, cid, consent, local)
    go = go_local.astimezone(UTC) if deferred else now
    not_before = go if deferred else None
    if go - now > timedelta(hours=campaign.max_delay_hours):
        return decide(Verdict.ABORTED, f"would wait {deferred} until {go_local.isoformat()}, past max_delay_hours "
                      f"{campaign.max_delay_hours:g}", not_before, deferred)
    capped = caps.check(campaign, cid, zone, go, by_tag)
    if capped is not None:
        return decide(Verdict.CAPPED, capped)
    over = budgets.check(campaign)
    if over is not None:
        return decide(Verdict.OVER_BUDGET, over)
    taken.add((cid, campaign.channel))
    caps.add(campaign, cid, zone, go)
    if advertising and held_out(campaign, cid):
        return decide(Verdict.HELD_OUT, f"in the holdout of {campaign.name!r} ({campaign.holdout:g}%): "
                      "would have been sent", not_before, deferred)
    budgets.add(campaign, campaign.face_value)
    detail = f"waits for {deferred} until {go_local.isoformat()}" if deferred else ""
    return decide(Verdict.QUEUED, detail, not_before, deferred)
