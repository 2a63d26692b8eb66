"""Consent: the store on a real SQLite file, Article 50's rules, reconfirmation, and the synthetic files."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.campaigns.consent import ConsentBook, ConsentChange, ConsentStore, read_csv
from engine.db import connect
from engine.errors import ConsentError

ROOT = Path(__file__).resolve().parents[2]
SEOUL = ZoneInfo("Asia/Seoul")
SAMPLE = Path("/work/shared/data/sample_products.csv")


def _grant(cid: str, channel: str, purpose: str, at: datetime, granted: bool = True) -> ConsentChange:
    return ConsentChange(cid, channel, purpose, granted, at, "test")  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> ConsentStore:
    return ConsentStore(connect(f"sqlite:///{tmp_path / 'nudge.db'}"))


def test_the_store_keeps_each_change_once_and_answers_as_of_a_time(store: ConsentStore) -> None:
    changes = [_grant("M1", "push", "advertising", datetime(2016, 1, 1, 9, tzinfo=SEOUL)),
               _grant("M1", "push", "advertising", datetime(2017, 3, 1, 9, tzinfo=SEOUL), granted=False)]
    assert store.record(changes) == 2
    assert store.record(changes) == 0  # re-importing a file adds nothing
    noon = datetime(2017, 2, 1, 12, tzinfo=SEOUL)
    assert store.book(noon).allows("M1", "push", "advertising", noon) is None
    later = datetime(2017, 3, 1, 9, tzinfo=SEOUL)
    reason = store.book(later).allows("M1", "push", "advertising", later)
    assert reason is not None and "withdrawn at 2017-03-01T00:00:00+00:00" in reason
    assert [c.granted for c in store.changes("M1")] == [True, False]
    assert store.changes("M1")[0].at == datetime(2016, 1, 1, tzinfo=UTC)  # read back UTC-aware


def test_a_withdrawal_at_the_same_instant_as_a_grant_wins(store: ConsentStore) -> None:
    at = datetime(2016, 5, 5, tzinfo=UTC)
    store.record([_grant("7", "email", "advertising", at), _grant("7", "email", "advertising", at, False)])
    assert store.book(at).allows("7", "email", "advertising", at) is not None


def test_advertising_needs_consent_per_channel_and_transactional_does_not() -> None:
    at = datetime(2017, 6, 1, 12, tzinfo=SEOUL)
    book = ConsentBook.of([_grant("M1", "email", "advertising", datetime(2016, 1, 1, tzinfo=UTC))], at)
    assert book.allows("M1", "email", "advertising", at) is None
    assert book.allows("M1", "push", "advertising", at) == "no advertising consent on push"
    assert book.allows("M1", "push", "transactional", at) is None
    assert book.allows("M2", "email", "advertising", at) == "no advertising consent on email"


def test_the_night_needs_night_consent_except_by_email_and_defers_to_eight() -> None:
    given = datetime(2016, 1, 1, tzinfo=UTC)
    changes = [_grant("M1", ch, "advertising", given) for ch in ("push", "email")]
    late = datetime(2017, 6, 1, 22, 30, tzinfo=SEOUL)
    book = ConsentBook.of(changes, late)
    assert "night (21:00-08:00 local, 22:30)" in (book.allows("M1", "push", "advertising", late) or "")
    assert book.night_deferral("M1", "push", "advertising", late) == datetime(2017, 6, 2, 8, tzinfo=SEOUL)
    early = datetime(2017, 6, 2, 3, 0, tzinfo=SEOUL)
    assert book.night_deferral("M1", "push", "advertising", early) == datetime(2017, 6, 2, 8, tzinfo=SEOUL)
    assert book.allows("M1", "email", "advertising", late) is None  # email is exempt from the night rule
    assert book.night_deferral("M1", "email", "advertising", late) is None
    assert book.allows("M1", "push", "advertising", datetime(2017, 6, 2, 8, tzinfo=SEOUL)) is None
    assert book.allows("M1", "push", "advertising", datetime(2017, 6, 2, 21, tzinfo=SEOUL)) is not None
    assert book.allows("M1", "push", "transactional", late) is None
    with_night = ConsentBook.of([*changes, _grant("M1", "push", "night", given)], late)
    assert with_night.allows("M1", "push", "advertising", late) is None
    # Without advertising consent the night is not the reason, so nothing is deferred: it is dropped.
    assert ConsentBook.of([], late).night_deferral("M1", "push", "advertising", late) is None


def test_reconfirmation_falls_due_two_years_after_the_oldest_grant_and_a_notice_renews_it() -> None:
    changes = [_grant("M1", "push", "advertising", datetime(2015, 3, 1, 10, tzinfo=UTC)),
               _grant("M1", "email", "advertising", datetime(2016, 7, 1, tzinfo=UTC)),
               _grant("M2", "push", "advertising", datetime(2015, 1, 1, tzinfo=UTC), granted=False)]
    assert ConsentBook.of(changes, datetime(2017, 3, 1, 9, tzinfo=UTC)).reconfirmations_due() == []
    now = datetime(2017, 3, 1, 10, tzinfo=UTC)
    [due] = ConsentBook.of(changes, now).reconfirmations_due()  # M2 only declined: nothing to re-confirm
    assert (due.customer_id, due.due_at, due.occurrence) == ("M1", now, "reconfirm@2017-03-01")
    assert {(c.channel, c.granted) for c in due.consents} == {("push", True), ("email", True)}
    notice = due.confirmed(datetime(2017, 3, 2, tzinfo=UTC))
    renewed = ConsentBook.of([*changes, *notice], datetime(2019, 3, 1, tzinfo=UTC))
    assert renewed.reconfirmations_due() == []  # no answer keeps the consent, counted from the notice
    assert renewed.allows("M1", "push", "advertising", datetime(2019, 3, 1, 12, tzinfo=UTC)) is None
    leap = [_grant("M3", "push", "advertising", datetime(2016, 2, 29, tzinfo=UTC))]
    assert ConsentBook.of(leap, datetime(2018, 2, 28, tzinfo=UTC)).reconfirmations_due()[0].due_at == \
        datetime(2018, 2, 28, tzinfo=UTC)


def test_a_bad_consent_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "consent.csv"
    path.write_text("# a comment\ncustomer_id,channel,purpose,granted,at,source\n"
                    "1,push,advertising,1,2016-01-01T00:00:00+00:00,x\n"
                    "2,push,advertising,yes,2016-01-01T00:00:00+00:00,x\n", encoding="utf-8")
    with pytest.raises(ConsentError, match=r"consent.csv:4: granted: not 1/0 or true/false \(got 'yes'\)"):
        read_csv(path)
    path.write_text("customer_id,channel,purpose,granted,at,source\n1,sms,advertising,1,2016-01-01T00:00Z,x\n",
                    encoding="utf-8")
    with pytest.raises(ConsentError, match=r"consent.csv:2: .*channel 'sms' is not one of"):
        read_csv(path)
    path.write_text("customer_id,channel,purpose,granted,at,source\n1,push,night,1,2016-01-01 00:00,x\n",
                    encoding="utf-8")
    with pytest.raises(ConsentError, match=r"consent.csv:2: at: no zone offset"):
        read_csv(path)
    path.write_text("customer_id,channel,granted\n", encoding="utf-8")
    with pytest.raises(ConsentError, match=r"header: missing column\(s\) \['purpose', 'at', 'source'\]"):
        read_csv(path)


def test_the_synthetic_complete_journey_file_covers_every_household_and_loads(store: ConsentStore) -> None:
    changes = read_csv(ROOT / "campaigns/consent/cj_consent.csv")
    assert len({c.customer_id for c in changes}) == 2469
    assert all(c.source.startswith("synthetic:") for c in changes)
    assert store.record(changes) == len(changes)
    book = store.book(datetime(2017, 7, 1, tzinfo=UTC))
    push = sum(book.granted(str(h), "push", "advertising") for h in range(1, 2501))
    night = sum(book.granted(str(h), "push", "night") for h in range(1, 2501))
    assert 0 < night < push < 2469  # most consent to push ads, fewer to night push, not everyone
    assert book.reconfirmations_due()  # grants from 2015 fall due within the data's year
    assert all(c.at.year in (2015, 2016, 2017) for c in changes)


def _make_module():
    spec = importlib.util.spec_from_file_location("consent_make", ROOT / "campaigns/consent/make.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_the_synthetic_files_are_what_the_script_makes(tmp_path: Path) -> None:
    make = _make_module()
    ids = sorted({c.customer_id for c in read_csv(ROOT / "campaigns/consent/cj_consent.csv")}, key=int)
    assert make.synthetic_changes(ids, "UTC", "synthetic:cj") == read_csv(ROOT / "campaigns/consent/cj_consent.csv")
    if SAMPLE.exists():
        out = tmp_path / "lpoint.csv"
        make.write_csv(make.synthetic_changes(make.lpoint_customers(SAMPLE), "Asia/Seoul", "synthetic:lpoint"), out,
                       "the L.POINT sample customers")
        assert out.read_text(encoding="utf-8") == (ROOT / "campaigns/consent/lpoint_consent.csv").read_text("utf-8")
