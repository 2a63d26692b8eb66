"""Customer segments from LRFMV state features, named from their profile and stable across refits; plus grades.

Features (per customer with a purchase day, at the watermark): length (days first → last purchase),
recency (days since the last purchase), frequency (baskets), monetary (net spend, floored at 0),
volume (item units per purchase day); log1p, then standard-scaled.

Clustering is k-means with k chosen by silhouette over `k_range`, or k-medoids (`method="kmedoids"`),
which is robust to the few very large spenders. scikit-learn has no k-medoids and scikit-learn-extra
is not a dependency (it does not build against current scikit-learn/numpy), so a small alternating
k-medoids (Voronoi iteration, k-means++ seeding) lives here.

Names come from the centroid profile: each segment's centroid z-scores of (recency, frequency,
monetary, tenure) are matched to named prototypes with a Hungarian assignment, so names are unique.
On a refit with `previous=`, the previous k is kept, the clustering starts from the previous
centroids, and new centroids are matched to the previous ones (Hungarian on centroid distances in
the previous model's scaled space): a matched segment keeps its id and name.

Grades (the retailer's quantile score), documented rule: each of R (more recent = higher), F, M,
tenure and, when given, CLV is scored 1..5 by quintile over the buyers; a buyer whose R score is 1
(the fifth silent the longest) is "At risk"; otherwise the mean of the scores (R included) makes
VIP (≥ 4.2), Gold (≥ 3.4), Silver (≥ 2.6) or Bronze.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Self

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from engine.errors import ConfigError, NudgeError
from engine.models.base import Estimator, scores_frame
from engine.models.data import TrainingData, bought_mask
from engine.models.outputs import Output, outputs_of
from engine.state import CustomerState

FEATURES = ("length", "recency", "frequency", "monetary", "volume")
# Prototype centroid z-scores of (recency, frequency, monetary, tenure) for each name. More names
# than the largest k, so the assignment always finds a unique one.
PROTOTYPES: dict[str, tuple[float, float, float, float]] = {
    "loyal": (-0.5, 1.0, 1.0, 0.5),
    "top spenders": (-0.5, 1.5, 2.0, 0.5),
    "regular": (0.0, 0.0, 0.0, 0.0),
    "occasional": (0.0, -1.0, -1.0, 0.0),
    "new": (-0.5, -1.5, -1.5, -2.0),
    "high-value lapsing": (1.0, 0.5, 0.5, 0.0),
    "low-value lapsing": (1.0, -1.0, -1.0, -0.5),
    "lost": (2.5, -1.5, -1.5, -1.0),
    "one-off": (1.5, -2.5, -2.5, -3.0),
}
# Hard rules on top of the nearest prototype: a lapsed name only for a segment silent longer than
# average (recency z > 0), an active one only for a segment more recent than average.
LAPSED = frozenset({"high-value lapsing", "low-value lapsing", "lost", "one-off"})
ACTIVE = frozenset({"loyal", "top spenders"})
_PROFILE = ("recency", "frequency", "monetary", "length")  # the features PROTOTYPES are in, in order
GRADES = ("VIP", "Gold", "Silver", "Bronze", "At risk")
METHODS = ("kmeans", "kmedoids")


def features(states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
    """LRFMV per customer with a purchase day, at `now` (raw, before log and scaling)."""
    rows = {cid: (s.length_days, s.recency_days(now), s.baskets, max(s.spend / 100, 0.0), s.volume or 0.0)
            for cid, s in states.items() if s.days}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(FEATURES), dtype=float)
    frame.index.name = "customer_id"
    return frame.sort_index()


def _log(frame: pd.DataFrame) -> np.ndarray:
    # Volume can be negative when returns outweigh units bought; floor before the log.
    return np.log1p(np.maximum(frame[list(FEATURES)].to_numpy(dtype=float), 0.0))


def _nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


def kmedoids(points: np.ndarray, k: int, random_state: int, init: np.ndarray | None = None,
             max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Alternating k-medoids (Voronoi iteration): returns (medoid rows, labels). Seeds by k-means++ or `init`."""
    rng = np.random.default_rng(random_state)
    n = len(points)
    if init is None:
        chosen = [int(rng.integers(n))]
        nearest = ((points - points[chosen[0]]) ** 2).sum(axis=1)
        for _ in range(1, k):
            chosen.append(int(rng.choice(n, p=nearest / nearest.sum())) if nearest.sum() > 0 else int(rng.integers(n)))
            nearest = np.minimum(nearest, ((points - points[chosen[-1]]) ** 2).sum(axis=1))
        medoids = np.array(chosen)
    else:
        # Start from the points nearest to the given centres (e.g. the previous fit's centroids).
        medoids = np.array([int(((points - c) ** 2).sum(axis=1).argmin()) for c in init])
    labels = _nearest(points, points[medoids])
    for _ in range(max_iter):
        updated = medoids.copy()
        for j in range(k):
            members = np.flatnonzero(labels == j)
            if members.size == 0:
                continue
            inside = np.sqrt(((points[members, None, :] - points[None, members, :]) ** 2).sum(axis=2))
            updated[j] = members[inside.sum(axis=1).argmin()]
        new_labels = _nearest(points, points[updated])
        if np.array_equal(updated, medoids) and np.array_equal(new_labels, labels):
            break
        medoids, labels = updated, new_labels
    return medoids, labels


def name_segments(profile_z: np.ndarray, taken: set[str] | None = None) -> list[str]:
    """Unique names for centroids given their z-scores of (recency, frequency, monetary, tenure)."""
    names = [n for n in PROTOTYPES if n not in (taken or set())]
    if len(names) < len(profile_z):
        raise NudgeError(f"segments: {len(profile_z)} segments to name but only {len(names)} names left")
    protos = np.array([PROTOTYPES[n] for n in names])
    cost = ((profile_z[:, None, :] - protos[None, :, :]) ** 2).sum(axis=2)
    recent = profile_z[:, 0] <= 0
    for j, name in enumerate(names):
        # A large finite cost, not a forbidden one: when the rules cannot all hold, every segment still gets a name.
        if name in LAPSED:
            cost[recent, j] += 1e6
        elif name in ACTIVE:
            cost[~recent, j] += 1e6
    rows, cols = linear_sum_assignment(cost)
    out = [""] * len(profile_z)
    for r, c in zip(rows, cols, strict=True):
        out[r] = names[c]
    return out


def _quintile(values: pd.Series) -> pd.Series:
    # Ranks with ties averaged, then 1..5: equal values share a score.
    return np.ceil(values.rank(pct=True, method="average") * 5).clip(1, 5)


def grades(frame: pd.DataFrame, clv: pd.Series | None = None) -> pd.Series:
    """VIP / Gold / Silver / Bronze / At risk per customer from quintile scores of R, F, M, tenure (and CLV)."""
    scores = pd.DataFrame({
        "R": _quintile(-frame["recency"]),
        "F": _quintile(frame["frequency"]),
        "M": _quintile(frame["monetary"]),
        "T": _quintile(frame["length"]),
    })
    if clv is not None:
        scores["CLV"] = _quintile(clv.reindex(frame.index).fillna(clv.min()))
    mean = scores.mean(axis=1)
    grade = np.select([scores["R"] <= 1, mean >= 4.2, mean >= 3.4, mean >= 2.6],
                      ["At risk", "VIP", "Gold", "Silver"], default="Bronze")
    return pd.Series(grade, index=frame.index, name="grade")


class SegmentModel(Estimator):
    """LRFMV segments (k-means or k-medoids), named from centroid profiles, stable across refits; plus grades."""

    name: ClassVar[str] = "segments"
    outputs: ClassVar[tuple[Output, ...]] = outputs_of("segments")

    def __init__(self, method: str = "kmeans", k: int | None = None, k_range: tuple[int, int] = (2, 8),
                 n_init: int = 10, random_state: int = 0, silhouette_sample: int = 2000) -> None:
        self.method = method
        self.k = k
        self.k_range = k_range
        self.n_init = n_init
        self.random_state = random_state
        self.silhouette_sample = silhouette_sample

    def _check(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"segments: method must be one of {METHODS}, got {self.method!r}")
        low, high = self.k_range
        if not 2 <= low <= high <= len(PROTOTYPES) - 1:
            raise ConfigError(f"segments: k_range must satisfy 2 ≤ low ≤ high ≤ {len(PROTOTYPES) - 1}, "
                              f"got {self.k_range}")
        if self.k is not None and not 2 <= self.k <= len(PROTOTYPES) - 1:
            raise ConfigError(f"segments: k must be in 2..{len(PROTOTYPES) - 1}, got {self.k}")

    def fit(self, data: TrainingData, previous: SegmentModel | None = None, clv: pd.Series | None = None) -> Self:
        """Cluster the buyers' scaled LRFMV; with `previous`, keep its k and match segments to its ones."""
        self._check()
        now = data.watermark
        self.features_ = features(data.states, now)
        if len(self.features_) < 2 * self.k_range[1]:
            raise NudgeError(f"segments: {len(self.features_)} customers with a purchase day; need at least "
                             f"{2 * self.k_range[1]}")
        logged = _log(self.features_)
        self.scaler_ = StandardScaler().fit(logged)
        points = self.scaler_.transform(logged)
        init = None
        if previous is not None:
            # Start from the previous centroids, carried into this fit's scaled space.
            init = self.scaler_.transform(previous.centroids_log_)
            self.silhouettes_: dict[int, float] = {}
            self.k_ = len(init)
            centers, labels = self._cluster(points, self.k_, init)
        else:
            ks = [self.k] if self.k is not None else list(range(self.k_range[0], self.k_range[1] + 1))
            fits = {k: self._cluster(points, k, None) for k in ks}
            self.silhouettes_ = {k: self._silhouette(points, fits[k][1]) for k in ks}
            # Ties go to the smaller k: fewer segments are easier to act on.
            self.k_ = max(ks, key=lambda k: (round(self.silhouettes_[k], 6), -k))
            centers, labels = fits[self.k_]
        self.centroids_log_ = self.scaler_.inverse_transform(centers)
        self._name(centers, previous)
        self.labels_ = pd.Series([self.segment_names_[i] for i in labels], index=self.features_.index, name="segment")
        self.grades_ = grades(self.features_, clv)
        silhouette = self.silhouettes_.get(self.k_) or self._silhouette(points, labels)
        self.metrics_: dict[str, float] = {"k": float(self.k_), "silhouette": silhouette,
                                           "n_customers": float(len(self.features_))}
        for name, size in self.labels_.value_counts().items():
            self.metrics_[f"size_{_key(name)}"] = float(size)
        return self

    def _cluster(self, points: np.ndarray, k: int, init: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        # One thread: OpenMP k-means on a few thousand rows spends its time contending on a shared machine,
        # and a single thread keeps the fit bit-for-bit reproducible.
        with threadpool_limits(1):
            return self._cluster_unlimited(points, k, init)

    def _cluster_unlimited(self, points: np.ndarray, k: int, init: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if self.method == "kmedoids":
            medoids, labels = kmedoids(points, k, self.random_state, init)
            return points[medoids], labels
        if init is not None:
            km = KMeans(n_clusters=k, init=init, n_init=1, random_state=self.random_state).fit(points)
        else:
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state).fit(points)
        return km.cluster_centers_, km.labels_

    def _silhouette(self, points: np.ndarray, labels: np.ndarray) -> float:
        if len(np.unique(labels)) < 2:
            return -1.0
        size = min(self.silhouette_sample, len(points))
        return float(silhouette_score(points, labels, sample_size=size, random_state=self.random_state))

    def _name(self, centers: np.ndarray, previous: SegmentModel | None) -> None:
        # Centroid z-scores over the customers, in the profile features' order.
        z = centers[:, [FEATURES.index(f) for f in _PROFILE]]
        names: list[str | None] = [None] * len(centers)
        ids: list[int | None] = [None] * len(centers)
        if previous is not None:
            old = previous.scaler_.transform(previous.centroids_log_)
            new = previous.scaler_.transform(self.centroids_log_)
            rows, cols = linear_sum_assignment(((new[:, None, :] - old[None, :, :]) ** 2).sum(axis=2))
            for r, c in zip(rows, cols, strict=True):
                names[r], ids[r] = previous.segment_names_[c], previous.segment_ids_[c]
        fresh = [i for i, n in enumerate(names) if n is None]
        if fresh:
            picked = name_segments(z[fresh], taken={n for n in names if n})
            next_id = max([i for i in ids if i is not None], default=-1) + 1
            for i, n in zip(fresh, picked, strict=True):
                names[i], ids[i] = n, next_id
                next_id += 1
        self.segment_names_: list[str] = [str(n) for n in names]
        self.segment_ids_: list[int] = [int(i) for i in ids if i is not None]
        self.profiles_ = pd.DataFrame(z, columns=list(_PROFILE), index=pd.Index(self.segment_names_, name="segment"))

    def predict(self, states: Mapping[str, CustomerState], now: datetime) -> pd.Series:
        """The segment name of each customer with a purchase day, at `now`."""
        frame = features(states, now)
        points = self.scaler_.transform(_log(frame))
        labels = _nearest(points, self.scaler_.transform(self.centroids_log_))
        return pd.Series([self.segment_names_[i] for i in labels], index=frame.index, name="segment")

    def score(self, states: Mapping[str, CustomerState], now: datetime) -> pd.DataFrame:
        """Segment at `now` of each customer with a purchase day; grade as fitted, for those graded at fit."""
        buyers = {cid: s for cid, s in states.items() if s.days}
        segment = self.predict(buyers, now) if buyers else pd.Series(dtype=object)
        graded = self.grades_[self.grades_.index.isin(list(states))]
        return pd.concat([
            scores_frame(pd.DataFrame({"customer_id": segment.index, "segment": segment.to_numpy()}),
                         {"segment": "segment"}, self.outputs),
            scores_frame(pd.DataFrame({"customer_id": graded.index, "grade": graded.to_numpy()}),
                         {"grade": "grade"}, self.outputs)], ignore_index=True)


def _key(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "_")


def evaluate(train: TrainingData, test_lines: pd.DataFrame) -> dict[str, float]:
    """Silhouette, k and per-segment sizes and re-buy shares after the split (the all-buyers share as baseline)."""
    model = SegmentModel().fit(train)
    bought = test_lines.loc[bought_mask(test_lines), "customer_id"].astype(str).unique()
    rebuy = model.labels_.index.isin(bought)
    figures: dict[str, float] = {"segments_k": float(model.k_), "segments_silhouette": model.metrics_["silhouette"],
                                 "segments_rebuy_share_all": float(rebuy.mean()),
                                 "n_segment_customers": float(len(model.labels_))}
    for column, labels in (("segment", model.labels_), ("grade", model.grades_)):
        for name in sorted(labels.unique()):
            mine = (labels == name).to_numpy()
            figures[f"{column}_size_{_key(name)}"] = float(mine.sum())
            figures[f"{column}_rebuy_share_{_key(name)}"] = float(rebuy[mine].mean())
    return figures
