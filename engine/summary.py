"""Population figures over customer states: what `nudge summary` and `make demo` print."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np

from engine.state import CustomerState

LRFMV = ("length", "recency", "frequency", "purchase_days", "monetary", "monetary_mean", "volume")
QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)


def population_summary(states: Mapping[str, CustomerState], now: datetime | None) -> dict:
    """Customers, baskets, revenue, and the distribution (quantiles, mean) of each LRFMV figure at `now`."""
    # In customer order, so the floating-point means do not depend on the order a store returned the states in.
    buyers = [states[c] for c in sorted(states) if states[c].baskets]
    summary: dict = {
        "customers": len(states),
        "buyers": len(buyers),
        "baskets": sum(s.baskets for s in states.values()),
        "events": sum(s.events for s in states.values()),
        "lines": sum(sum(s.products.values()) for s in states.values()),  # bought lines net of returned ones
        "revenue": sum(s.spend for s in states.values()) / 100,
        "units": sum(s.units for s in states.values()),
        "watermark": now.isoformat() if now else None,
        "lrfmv": {},
    }
    if not buyers or now is None:
        return summary
    rows = [s.lrfmv(now) for s in buyers]
    for name in LRFMV:
        values = np.array([r[name] for r in rows if r[name] is not None], dtype=float)
        if values.size:
            qs = np.quantile(values, QUANTILES)
            summary["lrfmv"][name] = {"mean": float(values.mean()),
                                      **{f"p{int(q * 100)}": float(v) for q, v in zip(QUANTILES, qs, strict=True)}}
    return summary
