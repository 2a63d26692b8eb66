"""Audience conditions on real customer states: who matches, and the reason given for who does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaigns.audience import matches
from engine.campaigns.candidates import CustomerContext
from engine.campaigns.schema import Affinity, Audience, Range
from engine.events import CustomerProfile, Line, Purchase
from engine.state import CustomerState, apply

SEOUL = "Asia/Seoul"


def state_of(customer: str, times: list[datetime], amount: float = 10.0) -> CustomerState:
    """A state built by applying one basket of `amount` per time."""
    state = None
    for i, when in enumerate(times):
        state = apply(state, Purchase(event_id=f"{customer}-{i}", customer_id=customer, event_time=when,
                                      lines=(Line("p1", ("과자", "사탕/캔디"), 1, amount),)))
    assert state is not None
    return state


def context(state: CustomerState | None = None, **scores) -> CustomerContext:
    categories = scores.pop("categories", {})
    profile = scores.pop("profile", None)
    return CustomerContext(customer_id="M000000001", state=state, profile=profile, scores=scores,
                           categories=categories)


NOW = datetime(2021, 3, 1, 12, tzinfo=UTC)


def test_every_condition_and_its_reason() -> None:
    state = state_of("M000000001", [NOW - timedelta(days=40), NOW - timedelta(days=10)], amount=25_000)
    ctx = context(state, segment="loyal", grade="Gold", p_alive=0.8, clv_12m=120_000.0,
                  categories={"과자": {"category.preference": 4}, "음료": {"category.preference": 1}},
                  profile=CustomerProfile(customer_id="M000000001", time_zone=SEOUL, sex="여성", age_band="30대"))
    assert matches(Audience(), ctx, NOW) is None
    assert matches(Audience(segments=["loyal"], grades=["Gold", "VIP"], p_alive=Range(min=0.5),
                            recency_days=Range(max=14), frequency=Range(min=2), monetary=Range(min=50_000),
                            affinity=Affinity(category="과자", min_preference=4),
                            profile={"sex": ["여성"], "age_band": ["30대", "40대"]}), ctx, NOW) is None
    cases = {
        "segment 'loyal' not in ['lost']": Audience(segments=["lost"]),
        "grade 'Gold' not in ['VIP']": Audience(grades=["VIP"]),
        "p_alive 0.8 not in [-inf, 0.5]": Audience(p_alive=Range(max=0.5)),
        "clv_12m 120000 not in [200000, inf]": Audience(clv_12m=Range(min=200_000)),
        "expected_purchases unknown, needs [1, inf]": Audience(expected_purchases=Range(min=1)),
        "recency_days 10 not in [-inf, 7]": Audience(recency_days=Range(max=7)),
        "frequency 2 not in [3, inf]": Audience(frequency=Range(min=3)),
        "monetary 50000 not in [-inf, 10000]": Audience(monetary=Range(max=10_000)),
        "preference for '음료' 1, needs >= 3": Audience(affinity=Affinity(category="음료")),
        "preference for '생수' unknown, needs >= 3": Audience(affinity=Affinity(category="생수")),
        "no category with preference >= 5 (best 4)": Audience(affinity=Affinity(min_preference=5)),
        "sex '여성' not in ['남성']": Audience(profile={"sex": ["남성"]}),
        "region unknown, needs one of ['Z10']": Audience(profile={"region": ["Z10"]}),
    }
    for reason, audience in cases.items():
        assert matches(audience, ctx, NOW) == reason


def test_a_customer_without_purchases_or_scores() -> None:
    ctx = context()
    assert matches(Audience(), ctx, NOW) is None
    assert matches(Audience(frequency=Range(max=0)), ctx, NOW) is None  # no state: no baskets yet
    assert matches(Audience(recency_days=Range(max=30)), ctx, NOW) == "recency_days unknown: no purchase yet"
    assert matches(Audience(segments=["new"]), ctx, NOW) == "segment unknown, needs one of ['new']"
    assert matches(Audience(profile={"sex": ["여성"]}), ctx, NOW) == "sex unknown, needs one of ['여성']"


def test_recency_counts_days_in_the_customers_zone() -> None:
    # Bought 23:30 in Seoul on 1 March (14:30 UTC): the purchase day is 1 March in the customer's zone.
    state = state_of("M000000001", [datetime(2021, 3, 1, 23, 30, tzinfo=ZoneInfo(SEOUL))])
    ctx = context(state)
    # 2 March 00:30 Seoul (15:30 UTC on 1 March): one day since, though both are 1 March in UTC.
    now = datetime(2021, 3, 1, 15, 30, tzinfo=UTC)
    assert matches(Audience(recency_days=Range(min=1, max=1)), ctx, now) is None
    assert matches(Audience(recency_days=Range(max=0)), ctx, now) == "recency_days 1 not in [-inf, 0]"


SEGMENTS = ["loyal", "lost", "new"]
ranges = st.builds(Range, min=st.none() | st.floats(0, 1), max=st.none()).filter(lambda r: r.min is not None) | \
    st.builds(Range, min=st.none(), max=st.floats(0, 1))
audiences = st.builds(
    Audience,
    segments=st.lists(st.sampled_from(SEGMENTS), unique=True, max_size=2),
    p_alive=st.none() | ranges,
    recency_days=st.none() | st.builds(Range, min=st.none() | st.integers(0, 20), max=st.none()),
    frequency=st.none() | st.builds(Range, min=st.integers(0, 4), max=st.none() | st.integers(4, 6)),
    affinity=st.none() | st.builds(Affinity, category=st.none() | st.just("과자"), min_preference=st.integers(0, 5)),
    profile=st.just({}) | st.just({"sex": ["여성"]}),
)
contexts = st.builds(
    lambda days, segment, p_alive, preference, sex: context(
        state_of("M000000001", [NOW - timedelta(days=d) for d in days]) if days else None,
        **({"segment": segment} if segment else {}), **({"p_alive": p_alive} if p_alive is not None else {}),
        categories={"과자": {"category.preference": preference}} if preference is not None else {},
        profile=CustomerProfile(customer_id="M000000001", sex=sex) if sex else None),
    st.lists(st.integers(0, 30), max_size=4, unique=True), st.none() | st.sampled_from(SEGMENTS),
    st.none() | st.floats(0, 1), st.none() | st.integers(0, 5), st.none() | st.sampled_from(["여성", "남성"]))

FIELDS = ("segments", "p_alive", "recency_days", "frequency", "affinity", "profile")


@settings(max_examples=300, deadline=None)
@given(audience=audiences, ctx=contexts)
def test_an_audience_is_the_conjunction_of_its_conditions(audience: Audience, ctx: CustomerContext) -> None:
    given_fields = [f for f in FIELDS if getattr(audience, f) not in (None, [], {})]
    singles = [matches(Audience(**{f: getattr(audience, f)}), ctx, NOW) for f in given_fields]
    reason = matches(audience, ctx, NOW)
    if all(s is None for s in singles):
        assert reason is None
    else:
        assert reason == next(s for s in singles if s is not None)  # the first failing condition, in order


def test_the_property_sees_both_outcomes() -> None:
    # The conjunction property is only worth something if generated cases both match and fail.
    seen: set[bool] = set()

    @settings(max_examples=200, deadline=None)
    @given(audience=audiences, ctx=contexts)
    def collect(audience: Audience, ctx: CustomerContext) -> None:
        if any(getattr(audience, f) not in (None, [], {}) for f in FIELDS):
            seen.add(matches(audience, ctx, NOW) is None)

    collect()
    assert seen == {True, False}
