"""Uplift of a campaign: treated against held-out conversion, with Newcombe's hybrid score interval.

The difference of two proportions with the interval of Newcombe (1998, method 10): each rate's Wilson score
interval, combined by the square-and-add rule. It keeps its coverage near the nominal level for small groups and
rates near 0 or 1, where the Wald interval does not (the coverage is checked by simulation in the tests). A
result is "not measurable" — no number at all — when a group is empty or smaller than `min_group`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import sqrt

from scipy.stats import norm

from engine.errors import NudgeError

DEFAULT_MIN_GROUP = 10  # fewer customers in a group than this and the interval says nothing worth a number


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion `successes / n`."""
    _check(successes, n, "wilson")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = p + z * z / (2 * n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / scale)  # the bounds are exact at 0 and n
    high = 1.0 if successes == n else min(1.0, (centre + half) / scale)
    return low, high


def newcombe(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    """Newcombe's hybrid score interval for p1 - p2 (x1 of n1 against x2 of n2)."""
    _check(x1, n1, "treated")
    _check(x2, n2, "held out")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, confidence)
    l2, u2 = wilson(x2, n2, confidence)
    d = p1 - p2
    return d - sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


@dataclass(frozen=True)
class Uplift:
    """Treated and held-out conversion, their difference and its interval — or why there is no number."""

    treated: int
    treated_converted: int
    held_out: int
    held_out_converted: int
    confidence: float
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    not_measurable: str | None = None  # the reason, when there is no number

    @property
    def measurable(self) -> bool:
        """Whether there is a difference and an interval."""
        return self.not_measurable is None

    @property
    def contains_zero(self) -> bool | None:
        """Whether the interval holds 0 (an A/A check's expectation); None when not measurable."""
        return None if self.low is None or self.high is None else self.low <= 0 <= self.high


def uplift(treated: int, treated_converted: int, held_out: int, held_out_converted: int,
           confidence: float = 0.95, min_group: int = DEFAULT_MIN_GROUP) -> Uplift:
    """The uplift of treated over held-out conversion, or "not measurable" with the reason."""
    base = Uplift(treated, treated_converted, held_out, held_out_converted, confidence)
    _check(treated_converted, treated, "treated", allow_empty=True)
    _check(held_out_converted, held_out, "held out", allow_empty=True)
    for name, n in (("treated", treated), ("held-out", held_out)):
        if n == 0:
            return replace(base, not_measurable=f"no {name} customers")
        if n < min_group:
            return replace(base, not_measurable=f"{n} {name} customer(s), fewer than {min_group}")
    low, high = newcombe(treated_converted, treated, held_out_converted, held_out, confidence)
    return replace(base, difference=treated_converted / treated - held_out_converted / held_out, low=low, high=high)


def _check(successes: int, n: int, what: str, allow_empty: bool = False) -> None:
    if n < 0 or successes < 0 or successes > n or (n == 0 and not allow_empty):
        raise NudgeError(f"{what}: {successes} converted of {n} is not a proportion")
