"""Purchase-day histories from the engine's states: one row per purchase day of each key, prefix figures so a
snapshot at any cut is a gather, and the days from a cut to the next purchase (the label)."""

from __future__ import annotations

from array import array
from collections.abc import Mapping

import numpy as np
import pandas as pd

from engine.state import CustomerState

WINDOWS = (7, 14, 28, 56)  # recent-activity counts: purchase days in the last w days before the cut
_SPAN = 1 << 20  # key * _SPAN + day orders rows by key, then day (days are 16-bit)


def day_frame(states: Mapping[str, CustomerState], level: str) -> pd.DataFrame:
    """One row per purchase day of each key (customer, or customer × top category), sorted by key and day.

    `attrs["keys"]` names the keys (customer_id, category); at category level `attrs["customers"]` is the
    customer-level frame and `attrs["owner"]` maps each key to its row in it.
    """
    keys: list[tuple[str, str]] = []
    chunks: list[array] = []
    owner: list[int] = []
    for i, cid in enumerate(sorted(states)):
        state = states[cid]
        if level == "customer":
            keys.append((cid, ""))
            chunks.append(state.days)
        else:
            for top in sorted(state.categories):
                keys.append((cid, top))
                chunks.append(state.categories[top].days)
                owner.append(i)
    frame = _frame_of(chunks)
    frame.attrs["keys"] = pd.DataFrame(keys, columns=["customer_id", "category"])
    if level == "category":
        frame.attrs["customers"] = _frame_of([states[cid].days for cid in sorted(states)])
        frame.attrs["customers"].attrs["keys"] = pd.DataFrame({"customer_id": sorted(states), "category": ""})
        frame.attrs["owner"] = np.asarray(owner, dtype=np.int64)
    return frame


def _frame_of(chunks: list[array]) -> pd.DataFrame:
    lengths = np.fromiter((len(c) for c in chunks), dtype=np.int64, count=len(chunks))
    day = np.concatenate([np.frombuffer(c, dtype=np.uint16) for c in chunks]).astype(np.int64) if chunks else (
        np.empty(0, dtype=np.int64))
    key = np.repeat(np.arange(len(chunks)), lengths)
    gap = np.diff(day, prepend=0).astype(float)
    starts = np.cumsum(lengths) - lengths
    gap[starts[lengths > 0]] = np.nan  # a key's first day has no gap before it
    return pd.DataFrame({"key": key, "day": day, "gap": gap})


class History:
    """Prefix figures of every key's purchase days, so a snapshot at any cut is a gather, not a recount.

    Row i holds what the key's state knew right after its i-th purchase day: counts, gap statistics, the
    exponentially weighted gap and weekday counts.
    """

    def __init__(self, frame: pd.DataFrame, ewm_alpha: float) -> None:
        key = frame["key"].to_numpy()
        day = frame["day"].to_numpy()
        gap = frame["gap"].to_numpy()
        self.n_keys = len(frame.attrs["keys"])
        self.order = key * _SPAN + day
        lengths = np.bincount(key, minlength=self.n_keys)
        self.starts = np.cumsum(lengths) - lengths
        start = self.starts[key]
        pos = np.arange(len(day)) - start  # 0 for a key's first day
        self.day = day
        self.n = pos + 1
        first = day[start]
        g = np.nan_to_num(gap)

        def cum(x: np.ndarray) -> np.ndarray:
            total = np.cumsum(x, axis=0)
            before = np.where((start > 0)[:, None] if x.ndim > 1 else start > 0,
                              total[np.maximum(start - 1, 0)], 0)
            return total - before

        k = pos.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.gap_mean = np.where(k > 0, (day - first) / k, np.nan)
            self.gap_var = np.where(k > 1, (cum(g * g) - (day - first) ** 2 / k) / (k - 1), np.nan)
            self.gap_last = np.where(k > 0, gap, np.nan)
            self.gap_prev = np.where(k > 1, np.roll(gap, 1), np.nan)
            self.gap_3 = np.where(k > 2, np.roll(gap, 2), np.nan)
        self.gap_ewm = _ewm_by_position(g, pos, ewm_alpha)
        self.gap_max = pd.Series(gap).groupby(key).cummax().to_numpy()
        self.first = first
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        self.weekdays = cum(np.eye(7)[weekday])

    def count_before(self, keys: np.ndarray, day: int | np.ndarray) -> np.ndarray:
        """Index of the first row of each key on or after `day`: differences count a key's days in a span."""
        return np.searchsorted(self.order, keys * _SPAN + day, side="left")

    def at(self, cut: int, min_days: int) -> pd.DataFrame:
        """Features of every key with at least `min_days` purchase days before `cut` (index: key)."""
        keys = np.arange(self.n_keys)
        end = self.count_before(keys, cut)
        ok = end - self.starts >= max(min_days, 1)
        keys, end = keys[ok], end[ok]
        i = end - 1  # the key's last day before the cut
        recency = cut - self.day[i]
        n = self.n[i]
        f: dict[str, np.ndarray] = {
            "n": n, "recency": recency, "tenure": cut - self.first[i],
            "gap_mean": self.gap_mean[i], "gap_var": self.gap_var[i], "gap_last": self.gap_last[i],
            "gap_prev": self.gap_prev[i], "gap_3": self.gap_3[i], "gap_ewm": self.gap_ewm[i],
            "gap_max": self.gap_max[i],
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            f["due"] = recency / f["gap_mean"]
            f["due_ewm"] = recency / f["gap_ewm"]
            f["expected"] = f["gap_mean"] - recency
            f["expected_ewm"] = f["gap_ewm"] - recency
            f["over_max"] = recency / f["gap_max"]
            for w in WINDOWS:
                f[f"n{w}"] = end - self.count_before(keys, cut - w)
            # Share of the key's purchase days on each weekday, counted from the cut's own weekday: share_d0 is
            # the cut's weekday, share_d1 the next one, ...
            shares = self.weekdays[i] / n[:, None]
            rotate = ((cut + 3) % 7 + np.arange(7)) % 7
            for d in range(7):
                f[f"share_d{d}"] = shares[:, rotate[d]]
            f["to_mode_day"] = (shares.argmax(axis=1) - (cut + 3) % 7) % 7
            f["mode_share"] = shares.max(axis=1)
            f["cut_weekday"] = np.full(len(keys), (cut + 3) % 7)
            f["last_weekday"] = (self.day[i] + 3) % 7
        return pd.DataFrame(f, index=pd.Index(keys, name="key"))


def _ewm_by_position(gap: np.ndarray, pos: np.ndarray, alpha: float) -> np.ndarray:
    """Exponentially weighted mean of each key's gaps so far (NaN on a key's first day).

    One vector step per position in the keys' sequences (a few hundred at most), all keys at once.
    """
    ewm = np.full(len(gap), np.nan)
    order = np.argsort(pos, kind="stable")
    bounds = np.searchsorted(pos[order], np.arange(1, pos.max() + 2 if len(pos) else 1))
    for p in range(1, len(bounds)):
        rows = order[bounds[p - 1]:bounds[p]]
        ewm[rows] = gap[rows] if p == 1 else alpha * gap[rows] + (1 - alpha) * ewm[rows - 1]
    return ewm


def next_day(frame: pd.DataFrame, cut: int) -> pd.Series:
    """Per key, days from `cut` to the first purchase day on or after it (keys with none are absent)."""
    ahead = frame[frame["day"] >= cut]
    return ahead.groupby("key", sort=True)["day"].min() - cut
