"""Holdout and control buckets: stable across processes, the declared share, independent of each other."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.campaigns.holdout import bucket, held_out, in_control
from engine.campaigns.schema import Campaign

IDS = [str(i) for i in range(1, 20_001)]


def _campaign(name: str, holdout: float) -> Campaign:
    return Campaign.model_validate({"name": name, "trigger": {"type": "lapse", "p_alive_below": 0.3},
                                    "channel": "push", "template": name, "sender": "Shop", "holdout": holdout})


def test_bucket_is_the_same_in_another_process() -> None:
    here = [bucket("cj_winback", cid) for cid in IDS[:50]]
    code = ("from engine.campaigns.holdout import bucket\n"
            "print([bucket('cj_winback', str(i)) for i in range(1, 51)])")
    # A fresh interpreter has another hash() seed: the buckets must not depend on it.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=os.environ | {"PYTHONHASHSEED": "12345"}).stdout
    assert out.strip() == str(here)
    assert all(0 <= b < 10_000 for b in here)


def test_holdout_takes_its_share_and_zero_takes_nobody() -> None:
    share = sum(held_out(_campaign("cj_repurchase_coupon", 10), cid) for cid in IDS) / len(IDS)
    assert 0.09 < share < 0.11
    assert not any(held_out(_campaign("cj_repurchase_coupon", 0), cid) for cid in IDS)
    assert 0.04 < sum(in_control(cid) for cid in IDS) / len(IDS) < 0.06
    assert not any(in_control(cid, 0) for cid in IDS)


def test_holdouts_of_two_campaigns_and_the_control_are_independent() -> None:
    a, b = _campaign("cj_winback", 20), _campaign("cj_stamp_mission", 20)
    in_a = {cid for cid in IDS if held_out(a, cid)}
    in_b = {cid for cid in IDS if held_out(b, cid)}
    control = {cid for cid in IDS if in_control(cid, 20)}
    # Independent 20 % draws overlap on about 4 % of everyone; the same draw would overlap on 20 %.
    assert 0.03 < len(in_a & in_b) / len(IDS) < 0.05
    assert 0.03 < len(in_a & control) / len(IDS) < 0.05


def test_a_larger_holdout_contains_the_smaller_one() -> None:
    # Raising a holdout only adds customers: nobody held out before gets messaged because of the change.
    small = {cid for cid in IDS[:2000] if held_out(_campaign("x", 5), cid)}
    large = {cid for cid in IDS[:2000] if held_out(_campaign("x", 15), cid)}
    assert small and small < large
