"""CustomerState and apply: definitions on hand-made baskets, and invariants as property tests."""

from __future__ import annotations

import copy
import itertools
import json
import os
import pickle
import random
import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.clock import zone_name
from engine.errors import ConflictingDuplicate, NudgeError, OutOfRange
from engine.events import DIGEST, Line, Purchase, content_key, is_bought_line, line_key
from engine.state import EPOCH, STATE_SCHEMA, CategoryStats, CustomerState, StatePolicy, apply

T0 = datetime(2021, 3, 1, 9, 30, tzinfo=UTC)


def basket(event_id: str, day: int, lines: list[Line], customer: str = "c1", lpay: bool = False,
           hour: int = 10) -> Purchase:
    return Purchase(event_id=event_id, customer_id=customer, event_time=T0 + timedelta(days=day, hours=hour - 9),
                    lines=tuple(lines), lpay=lpay)


def fold(events: list[Purchase], policy: StatePolicy | None = None) -> CustomerState:
    state = None
    for event in events:
        state = apply(state, event, policy) if policy else apply(state, event)
    assert state is not None
    return state


def test_lrfmv_and_intervals_on_known_baskets() -> None:
    events = [
        basket("r1", 0, [Line("milk", ("DAIRY", "MILK"), 2, 3.0), Line("gas", ("FUEL",), 40, 60.0)], lpay=True),
        basket("r2", 3, [Line("milk", ("DAIRY", "MILK"), 1, 1.5)]),
        basket("r3", 10, [Line("bread", ("BAKERY",), 1, 2.25), Line("milk", ("DAIRY",), 1, 1.5)]),
        basket("r4", 10, [Line("cake", ("BAKERY",), 1, 5.0)], hour=18),  # second basket, same day
    ]
    s = fold(events)
    assert s.baskets == 4 and s.purchase_days == 3
    assert s.monetary == pytest.approx(73.25) and s.spend == 7325
    assert s.lpay_spend == 6300 and s.lrfmv(T0)["monetary_other"] == pytest.approx(10.25)
    assert s.units == 6  # the 40 litres of FUEL are not item units
    assert s.volume == pytest.approx(2.0)
    assert s.length_days == 10
    assert s.recency_days(T0 + timedelta(days=15)) == 5
    assert s.gap_mean == pytest.approx(5.0)  # gaps 3, 7
    assert s.gap_var == pytest.approx(statistics.variance([3, 7]))  # ddof=1
    dairy = s.categories["DAIRY"]
    assert (dairy.baskets, dairy.purchase_days, dairy.spend) == (3, 3, 600)
    assert s.categories["BAKERY"].baskets == 2 and s.categories["BAKERY"].purchase_days == 1
    assert s.products == {"milk": 3, "gas": 1, "bread": 1, "cake": 1}
    assert s.first_purchase == events[0].event_time and s.last_purchase == events[3].event_time


def test_returns_lower_spend_but_are_not_purchases() -> None:
    s = fold([
        basket("r1", 0, [Line("tv", ("ELEC",), 1, 500.0), Line("cable", ("ELEC",), 2, 20.0)]),
        basket("ret1", 5, [Line("tv", ("ELEC",), -1, -500.0)]),  # a return receipt
        basket("r2", 7, [Line("cable", ("ELEC",), 1, 10.0), Line("cable", ("ELEC",), -1, -10.0)]),
    ])
    assert s.monetary == pytest.approx(20.0)
    assert s.baskets == 2 and s.purchase_days == 2  # the return receipt is no purchase day
    assert s.last_purchase == T0 + timedelta(days=7, hours=1)
    assert s.products["tv"] == 0  # bought once, returned once: never a recommendation
    assert s.units == 2
    assert s.categories["ELEC"].baskets == 2


def test_a_zero_line_buys_nothing_and_a_basket_of_only_those_is_no_purchase_day() -> None:
    s = fold([
        basket("r1", 0, [Line("milk", ("DAIRY",), 1, 1.5), Line("void", ("DAIRY",), 0, 0.0)]),
        basket("z1", 4, [Line("coupon", ("MISC",), 0, 0.0), Line("void", ("DAIRY",), 0, 0.0)]),  # nothing bought
        basket("r2", 9, [Line("milk", ("DAIRY",), 1, 1.5), Line("free", ("DAIRY",), 1, 0.0)]),  # free, but bought
    ])
    assert s.baskets == 2 and list(s.days) == [d - EPOCH for d in (T0.date().toordinal(),
                                                                   (T0 + timedelta(days=9)).date().toordinal())]
    assert s.products == {"milk": 2, "free": 1}
    assert s.categories["DAIRY"].purchase_days == 2 and "MISC" not in s.categories  # no empty category either
    assert s.events == 3  # still applied: a replay of z1 is a no-op, a conflicting z1 is refused
    before = copy.deepcopy(s)
    apply(s, basket("z1", 4, [Line("coupon", ("MISC",), 0, 0.0), Line("void", ("DAIRY",), 0, 0.0)]))
    assert s == before and s.events == 3
    with pytest.raises(ConflictingDuplicate):
        apply(s, basket("z1", 4, [Line("coupon", ("MISC",), 1, 0.5)]))


def test_service_use_without_lines_counts_by_affiliate() -> None:
    stay = Purchase(event_id="svc:1", customer_id="c1", event_time=T0, affiliate="B01", amount=120000.0)
    s = apply(None, stay)
    assert s.baskets == 1 and s.monetary == 120000.0
    assert s.categories["service:B01"].spend == 12_000_000


def test_duplicate_is_a_no_op_and_conflict_raises_without_change() -> None:
    first = basket("r1", 0, [Line("milk", ("DAIRY",), 1, 1.5)])
    s = apply(None, first)
    before = repr(s), s.spend, list(s.event_words)
    again = basket("r1", 0, [Line("milk", ("DAIRY",), 1, 1.5)])
    assert apply(s, again) == apply(None, first)
    other = basket("r1", 0, [Line("milk", ("DAIRY",), 2, 3.0)])
    with pytest.raises(ConflictingDuplicate, match="r1"):
        apply(s, other)
    assert (repr(s), s.spend, list(s.event_words)) == before


def test_dates_the_state_cannot_hold_are_refused_untouched() -> None:
    s = apply(None, basket("r1", 0, [Line("milk", ("DAIRY",), 1, 1.5)]))
    old = Purchase(event_id="r0", customer_id="c1", event_time=datetime(1969, 12, 31, tzinfo=UTC),
                   lines=(Line("milk", ("DAIRY",), 1, 1.5),))
    with pytest.raises(OutOfRange, match="r0"):
        apply(s, old)
    assert s.events == 1 and s.spend == 150


def test_line_order_is_not_content() -> None:
    a = basket("r1", 0, [Line("a", ("X",), 1, 1.0), Line("b", ("Y",), 2, 4.0)])
    b = basket("r1", 0, [Line("b", ("Y",), 2, 4.0), Line("a", ("X",), 1, 1.0)])
    assert apply(apply(None, a), b).events == 1  # a replay, not a conflict


def test_lines_that_swap_their_quantities_are_other_content() -> None:
    a = basket("r1", 0, [Line("a", ("X",), 1, 2.0), Line("b", ("X",), 2, 2.0)])
    b = basket("r1", 0, [Line("a", ("X",), 2, 2.0), Line("b", ("X",), 1, 2.0)])
    with pytest.raises(ConflictingDuplicate):
        apply(apply(None, a), b)


def test_policy_decides_what_is_merchandise() -> None:
    e = [basket("r1", 0, [Line("gas", ("FUEL",), 40, 60.0), Line("milk", ("DAIRY",), 1, 1.0)])]
    assert fold(e).units == 1
    assert fold(e, StatePolicy(non_merchandise=frozenset())).units == 41


# -- invariants ----------------------------------------------------------------------------------

products = st.sampled_from(["p1", "p2", "p3", "p4", "p5"])
tops = st.sampled_from([("A", "a1"), ("A", "a2"), ("B",), ("FUEL",), ("C", "c1", "x")])
lines = st.builds(
    lambda p, c, q, cents: Line(p, c, q, (abs(cents) if q > 0 else -abs(cents) if q < 0 else cents) / 100),
    products, tops, st.integers(-3, 6), st.integers(-5000, 20000),
)


ZONES = st.sampled_from([UTC, ZoneInfo("Asia/Seoul"), ZoneInfo("America/New_York")])


@st.composite
def histories(draw: st.DrawFn) -> list[Purchase]:
    """Purchases of one customer with distinct ids: baskets, returns, and service uses."""
    n = draw(st.integers(1, 25))
    out = []
    for i in range(n):
        when = (T0 + timedelta(days=draw(st.integers(0, 60)), minutes=draw(st.integers(0, 1440)))).astimezone(
            draw(ZONES))
        if draw(st.integers(0, 9)) == 0:
            out.append(Purchase(event_id=f"s{i}", customer_id="c1", event_time=when, affiliate="B02",
                                amount=draw(st.integers(-3000, 9000)) / 100))
        else:
            out.append(Purchase(event_id=f"e{i}", customer_id="c1", event_time=when, lpay=draw(st.booleans()),
                                lines=tuple(draw(st.lists(lines, min_size=1, max_size=6)))))
    return out


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_any_order_gives_the_same_state(events: list[Purchase], rnd: random.Random) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert fold(events) == fold(shuffled)


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_applying_again_changes_nothing(events: list[Purchase], rnd: random.Random) -> None:
    once = fold(events)
    replayed = events + rnd.sample(events, k=len(events))  # every event a second time, in another order
    assert fold(replayed) == once


@settings(max_examples=200, deadline=None)
@given(histories())
def test_state_matches_a_recount_of_its_events(events: list[Purchase]) -> None:
    s = fold(events)
    bought = [e for e in events if any(is_bought_line(ln) for ln in e.lines) or (not e.lines and e.amount >= 0)]
    days = sorted({e.event_time.date().toordinal() - EPOCH for e in bought})
    assert s.spend == sum(round(ln[3] * 100) for e in events for ln in e.lines) + sum(
        round(e.amount * 100) for e in events if not e.lines)
    assert s.baskets == len(bought) and list(s.days) == days
    gaps = [b - a for a, b in itertools.pairwise(days)]
    assert s.gap_mean == (pytest.approx(statistics.mean(gaps)) if gaps else None)
    assert s.gap_var == (pytest.approx(statistics.variance(gaps)) if len(gaps) >= 2 else None)
    if bought:
        assert s.first_ts == min(int(e.event_time.timestamp()) for e in bought)
        assert s.zone == min(zone_name(e.event_time) for e in bought if int(e.event_time.timestamp()) == s.first_ts)
        assert s.last_ts == max(int(e.event_time.timestamp()) for e in bought)
    for top, stats in s.categories.items():
        cat_days = sorted({e.event_time.date().toordinal() - EPOCH for e in events
                           if any(ln[1][0] == top and is_bought_line(ln) for ln in e.lines)
                           or (not e.lines and top == f"service:{e.affiliate}" and e.amount >= 0)})
        assert list(stats.days) == cat_days
        cat_gaps = [b - a for a, b in itertools.pairwise(cat_days)]
        assert stats.gap_var == (pytest.approx(statistics.variance(cat_gaps)) if len(cat_gaps) >= 2 else None)


# -- the pickled state: versioned, and digests stable across processes ---------------------------


@settings(max_examples=100, deadline=None)
@given(histories(), histories())
def test_pickling_round_trips_and_the_copy_keeps_folding_alike(events: list[Purchase], more: list[Purchase]) -> None:
    s = fold(events)
    back = pickle.loads(pickle.dumps(s, protocol=5))
    assert back == s and copy.deepcopy(s) == s and back.digest == DIGEST
    assert all(type(c) is CategoryStats for c in back.categories.values())
    for e in (e.model_copy(update={"event_id": f"m{e.event_id}"}) for e in more):  # ids new to `events`
        apply(s, e)
        apply(back, e)
    assert back == s


def newer_pickle(obj: object, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The bytes a future nudge would write for `obj`: its payload under a schema this one does not know."""
    payload = {**obj.__getstate__(), "schema": STATE_SCHEMA + 1}
    with monkeypatch.context() as patch:
        patch.setattr(type(obj), "__getstate__", lambda self: payload)
        return pickle.dumps(obj)


def test_a_state_from_a_newer_schema_is_refused_naming_both_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    s = fold([basket("r1", 0, [Line("milk", ("DAIRY",), 1, 1.5)])])
    with pytest.raises(NudgeError, match=f"customer state has schema version {STATE_SCHEMA + 1}; "
                                         f"this nudge reads schema {STATE_SCHEMA} and older"):
        pickle.loads(newer_pickle(s, monkeypatch))
    with pytest.raises(NudgeError, match=f"category stats has schema version {STATE_SCHEMA + 1}"):
        pickle.loads(newer_pickle(s.categories["DAIRY"], monkeypatch))


LINE_KEY_MILK = 3615276220
CONTENT_KEY_PROBE = 1794714102
DIGEST_PROBE = """
import json
from datetime import datetime, timezone
from engine.events import Purchase, content_key, line_key
from engine.state import apply
p = Purchase(event_id="r1", customer_id="c1", event_time=datetime(2021, 3, 1, 9, 30, tzinfo=timezone.utc),
             store_id="s9", lines=(("milk", ("DAIRY",), 2, 3.0), ("gas", ("FUEL",), 40, 60.0)))
print(json.dumps([content_key(p), line_key("milk", 2, 300), list(apply(None, p).event_words)]))
"""


def test_digests_are_the_same_in_every_process_whatever_the_hash_seed() -> None:
    seen = set()
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        out = subprocess.run([sys.executable, "-c", DIGEST_PROBE], env=env, capture_output=True, text=True, check=True)
        seen.add(out.stdout.strip())
    here = Purchase(event_id="r1", customer_id="c1", event_time=datetime(2021, 3, 1, 9, 30, tzinfo=UTC),
                    store_id="s9", lines=(("milk", ("DAIRY",), 2, 3.0), ("gas", ("FUEL",), 40, 60.0)))
    assert seen == {json.dumps([content_key(here), line_key("milk", 2, 300), list(apply(None, here).event_words)])}
    # Pinned: CRC-32 is defined by its standard (and zlib), not by the interpreter.
    assert line_key("milk", 2, 300) == LINE_KEY_MILK and content_key(here) == CONTENT_KEY_PROBE
