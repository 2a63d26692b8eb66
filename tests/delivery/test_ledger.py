"""The ledger: one row per idempotency key whatever is recorded again, queued rows due by not_before."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.campaigns.candidates import Candidate, Decision, Verdict
from engine.db import connect
from engine.delivery.ledger import Ledger
from engine.errors import NudgeError

T0 = datetime(2017, 6, 1, 12, tzinfo=UTC)
CHANNELS = {"a": "push", "b": "email", "c": "file"}


def decision(campaign: str, customer: str, occurrence: str, verdict: Verdict = Verdict.QUEUED,
             hours: int = 0, wait: int | None = None) -> Decision:
    """A decision made `hours` after T0, waiting `wait` hours more when given."""
    at = T0 + timedelta(hours=hours)
    return Decision(Candidate(campaign, customer, occurrence, at, "due", "MEAT"), verdict, at,
                    at + timedelta(hours=wait) if wait is not None else None, "night" if wait else None)


decisions = st.lists(st.builds(decision, st.sampled_from("abc"), st.sampled_from(["1", "2", "3"]),
                               st.sampled_from(["MEAT@2017-05-01", "MEAT@2017-05-20", "x"]),
                               st.sampled_from(list(Verdict)), st.integers(0, 48)), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=decisions, again=decisions)
def test_recording_any_sequence_twice_stores_each_key_once(tmp_path: Path, first: list[Decision],
                                                           again: list[Decision]) -> None:
    ledger = Ledger(connect(f"sqlite:///{tempfile.mkdtemp(dir=tmp_path)}/nudge.db"))  # a fresh file per example
    inserted = ledger.record(first, CHANNELS)
    keys = {d.candidate.key for d in first}
    assert inserted == len(keys)
    assert ledger.record(first, CHANNELS) == 0
    assert ledger.record([*again, *first], CHANNELS) == len({d.candidate.key for d in again} - keys)
    rows = ledger.entries()
    assert len(rows) == len({r.key for r in rows}) == len(keys | {d.candidate.key for d in again})
    firsts: dict[str, Verdict] = {}
    for d in [*first, *again]:
        firsts.setdefault(d.candidate.key, d.verdict)
    assert {r.key: r.verdict for r in rows} == firsts  # the first verdict on a key stands


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(connect(f"sqlite:///{tmp_path}/nudge.db"))


def test_queued_rows_are_due_at_not_before_oldest_first(ledger: Ledger) -> None:
    ledger.record([decision("a", "1", "o1", hours=2), decision("a", "2", "o1", hours=0, wait=10),
                   decision("b", "3", "o1", hours=1), decision("c", "1", "o1", Verdict.CAPPED)], CHANNELS)
    assert [e.customer_id for e in ledger.queued(T0 + timedelta(hours=3))] == ["3", "1"]
    due = ledger.queued(T0 + timedelta(hours=10))
    assert [e.customer_id for e in due] == ["3", "1", "2"]
    assert due[2].deferred == "night" and due[2].channel == "push"
    assert due[0].channel == "email" and due[0].candidate == decision("b", "3", "o1", hours=1).candidate


def test_a_row_decided_after_the_clock_waits_for_it(ledger: Ledger) -> None:
    # A backtest resumed from its checkpoint runs behind what the killed run recorded: those rows wait.
    ledger.record([decision("a", "1", "o1", hours=3), decision("b", "2", "o1", hours=1)], CHANNELS)
    assert [e.customer_id for e in ledger.queued(T0 + timedelta(hours=2))] == ["2"]
    with ledger.claim(T0 + timedelta(hours=2), 10) as claim:
        assert [e.customer_id for e in claim.entries] == ["2"]
        claim.commit([])
    assert [e.customer_id for e in ledger.queued(T0 + timedelta(hours=3))] == ["2", "1"]


def test_mark_moves_only_queued_rows(ledger: Ledger) -> None:
    d = decision("a", "1", "o")
    ledger.record([d], CHANNELS)
    at = T0 + timedelta(hours=1)
    assert ledger.mark(d.candidate.key, Verdict.SENT, at, offer_code="CJ-X", face_value=5.0, attempts=2)
    assert not ledger.mark(d.candidate.key, Verdict.FAILED, at, "late")  # a sent row stays sent
    entry = ledger.entry(d.candidate.key)
    assert entry is not None and entry.verdict is Verdict.SENT and entry.sent_at == at
    assert (entry.offer_code, entry.face_value, entry.attempts) == ("CJ-X", 5.0, 2)
    assert ledger.queued(at) == []
    with pytest.raises(NudgeError, match="no entry with key 'nope'"):
        ledger.mark("nope", Verdict.SENT, at)


def test_counts_deferrals_keys_and_known(ledger: Ledger) -> None:
    ledger.record([decision("a", "1", "o"), decision("a", "2", "o", Verdict.HELD_OUT),
                   decision("b", "1", "o", wait=3), decision("b", "2", "o", Verdict.NO_CONSENT)], CHANNELS)
    assert ledger.counts() == {"a": {"queued": 1, "held_out": 1}, "b": {"queued": 1, "no_consent": 1}}
    assert ledger.deferrals() == {"b": {"night": 1}}
    assert ledger.keys(Verdict.HELD_OUT) == {"a|2|o"}
    assert ledger.known(["a|1|o", "z|1|o", "b|2|o"] * 300) == {"a|1|o", "b|2|o"}
    assert [e.key for e in ledger.entries(customer_id="1")] == ["a|1|o", "b|1|o"]


def test_a_campaign_without_a_channel_is_refused(ledger: Ledger) -> None:
    with pytest.raises(NudgeError, match="no channel for campaign 'zz'"):
        ledger.record([decision("zz", "1", "o")], CHANNELS)
    assert ledger.entries() == []
