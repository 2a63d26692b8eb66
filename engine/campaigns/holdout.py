"""Who is kept aside: a campaign's holdout and the global control group, by a stable hash of the customer.

blake2b (not `hash()`, which is salted per process) so every process and every replay puts a customer in the
same bucket; the campaign's name salts its holdout, so holdouts of different campaigns are independent.
"""

from __future__ import annotations

from hashlib import blake2b

from engine.campaigns.schema import Campaign

BUCKETS = 10_000
# Not a valid campaign name (":" is outside the name pattern), so no campaign's holdout can equal the control.
CONTROL_SALT = "nudge:control"


def bucket(salt: str, customer_id: str) -> int:
    """The customer's bucket 0..9999 under `salt`, the same in every process."""
    digest = blake2b(customer_id.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def _below(salt: str, customer_id: str, percent: float) -> bool:
    return bucket(salt, customer_id) < round(percent * BUCKETS / 100)


def held_out(campaign: Campaign, customer_id: str) -> bool:
    """Whether the customer is in the campaign's holdout (`campaign.holdout` percent of buckets)."""
    return _below(campaign.name, customer_id, campaign.holdout)


def in_control(customer_id: str, percent: float = 5.0) -> bool:
    """Whether the customer is in the global control group, which gets no advertising from any campaign."""
    return _below(CONTROL_SALT, customer_id, percent)
