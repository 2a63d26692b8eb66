"""Offers issued to customers: coupons with unique codes, stamp missions, subscription tiers."""

from engine.offers.issue import IssuedCoupon, IssuedOffer, issue_offer, money, offer_code

__all__ = ["IssuedCoupon", "IssuedOffer", "issue_offer", "money", "offer_code"]
