"""Whether a customer is in a campaign's audience, and if not, the first condition that fails.

Runs for every candidate, so it reads the context directly and formats a reason only on failure.
"""

from __future__ import annotations

from datetime import datetime

from engine.campaigns.candidates import CustomerContext
from engine.campaigns.schema import Audience, Range

PREFERENCE = "category.preference"


def _bounds(r: Range) -> str:
    low = "-inf" if r.min is None else f"{r.min:g}"
    high = "inf" if r.max is None else f"{r.max:g}"
    return f"[{low}, {high}]"


def _outside(name: str, value: float | None, r: Range) -> str | None:
    if r.holds(value):
        return None
    if value is None:
        return f"{name} unknown, needs {_bounds(r)}"
    return f"{name} {value:g} not in {_bounds(r)}"


def _one_of(name: str, value: object, allowed: list[str]) -> str | None:
    if value in allowed:
        return None
    if value is None:
        return f"{name} unknown, needs one of {allowed}"
    return f"{name} {value!r} not in {allowed}"


def _profile_value(ctx: CustomerContext, field: str) -> str | None:
    profile = ctx.profile
    if profile is None:
        return None
    if field in ("sex", "age_band", "region", "time_zone"):
        return getattr(profile, field)
    return profile.attributes.get(field)


def matches(audience: Audience, ctx: CustomerContext, now: datetime) -> str | None:
    """None when the customer meets every condition of `audience` at `now`, else a short reason."""
    scores = ctx.scores
    if audience.segments and (why := _one_of("segment", scores.get("segment"), audience.segments)):
        return why
    if audience.grades and (why := _one_of("grade", scores.get("grade"), audience.grades)):
        return why
    for name in ("clv_12m", "p_alive", "expected_purchases"):
        r = getattr(audience, name)
        if r is not None and (why := _outside(name, scores.get(name), r)):
            return why
    state = ctx.state
    if audience.recency_days is not None:
        recency = state.recency_days(now) if state is not None else None
        if why := _outside("recency_days", recency, audience.recency_days):
            return why if recency is not None else "recency_days unknown: no purchase yet"
    if audience.frequency is not None and (
            why := _outside("frequency", state.baskets if state is not None else 0, audience.frequency)):
        return why
    if audience.monetary is not None and (
            why := _outside("monetary", state.monetary if state is not None else 0.0, audience.monetary)):
        return why
    if audience.affinity is not None and (why := _affinity(audience, ctx)):
        return why
    for field, allowed in audience.profile.items():
        if why := _one_of(field, _profile_value(ctx, field), allowed):
            return why
    return None


def _affinity(audience: Audience, ctx: CustomerContext) -> str | None:
    affinity = audience.affinity
    need = affinity.min_preference  # type: ignore[union-attr]
    category = affinity.category  # type: ignore[union-attr]
    if category is not None:
        score = ctx.categories.get(category, {}).get(PREFERENCE)
        if score is not None and score >= need:
            return None
        shown = "unknown" if score is None else str(score)
        return f"preference for {category!r} {shown}, needs >= {need}"
    best = max((score for c in ctx.categories.values() if (score := c.get(PREFERENCE)) is not None), default=-1)
    if best >= need:
        return None
    return f"no category with preference >= {need}" + (f" (best {best})" if best >= 0 else "")
