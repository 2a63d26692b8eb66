"""Make the SYNTHETIC consent files: neither data set records consent, so the demo needs some.

    python campaigns/consent/make.py            # writes cj_consent.csv and lpoint_consent.csv beside this file

Deterministic: every choice is a stable hash bucket of the customer id (engine.campaigns.holdout.bucket), so
the files are the same on every run. Every customer answers push and email advertising at sign-up in 2015-2016
(most grant), fewer grant night push, some withdraw in 2017 and some who declined grant in 2017. Grants from
2015 fall due for the two-yearly reconfirmation during The Complete Journey's year (2017).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from engine.campaigns.consent import CSV_FIELDS, ConsentChange
from engine.campaigns.holdout import BUCKETS, bucket
from engine.clock import zone_info

HERE = Path(__file__).resolve().parent
LPOINT_SAMPLE = Path("/work/shared/data/sample_products.csv")


def _share(salt: str, customer_id: str, percent: float) -> bool:
    return bucket(f"consent:{salt}", customer_id) < percent * BUCKETS / 100


def _moment(salt: str, customer_id: str, start: datetime, end: datetime) -> datetime:
    # A time between start and end, to the second, from two independent buckets (day, then second of day).
    days = (end - start).days
    day = bucket(f"consent:{salt}:day", customer_id) * days // BUCKETS
    second = bucket(f"consent:{salt}:second", customer_id) * 86_400 // BUCKETS
    return start + timedelta(days=day, seconds=second)


def synthetic_changes(customer_ids: Iterable[str], zone: str, source: str) -> list[ConsentChange]:
    """The synthetic consent history of `customer_ids`, local times in `zone`, in time order."""
    tz = zone_info(zone)
    early, late = datetime(2015, 1, 1, tzinfo=tz), datetime(2017, 1, 1, tzinfo=tz)
    year_2017 = datetime(2018, 1, 1, tzinfo=tz)
    changes: list[ConsentChange] = []
    for cid in customer_ids:
        for channel, grant_pct, withdraw_pct in (("push", 85, 8), ("email", 80, 5)):
            if _share(f"{channel}:ad", cid, grant_pct):
                given = _moment(f"{channel}:ad", cid, early, late)
                changes.append(ConsentChange(cid, channel, "advertising", True, given, source))
                if _share(f"{channel}:withdraw", cid, withdraw_pct):
                    gone = _moment(f"{channel}:withdraw", cid, late, year_2017)
                    changes.append(ConsentChange(cid, channel, "advertising", False, gone, source))
                if channel == "push" and _share("push:night", cid, 40):
                    night = given + timedelta(days=bucket("consent:push:night:lag", cid) * 200 // BUCKETS)
                    changes.append(ConsentChange(cid, channel, "night", True, night, source))
                continue
            # Declined at sign-up (recorded, so every customer is in the file); a fifth grant during 2017.
            changes.append(ConsentChange(cid, channel, "advertising", False,
                                         _moment(f"{channel}:ad", cid, early, late), source))
            if _share(f"{channel}:late", cid, 20):
                changes.append(ConsentChange(cid, channel, "advertising", True,
                                             _moment(f"{channel}:late", cid, late, year_2017), source))
    changes.sort(key=lambda c: (c.at, c.customer_id, c.channel, c.purpose))
    return changes


def write_csv(changes: Iterable[ConsentChange], path: Path, note: str) -> int:
    """Write changes to a consent CSV (what `nudge consent import` reads), a '#' note on top; returns rows."""
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        f.write(f"# SYNTHETIC consent records, not real customers' choices: {note}\n")
        f.write("# made by campaigns/consent/make.py (deterministic); import with `nudge consent import FILE`\n")
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_FIELDS)
        for c in changes:
            writer.writerow([c.customer_id, c.channel, c.purpose, int(c.granted), c.at.isoformat(), c.source])
            rows += 1
    return rows


def cj_households() -> list[str]:
    """Every Complete Journey household id with a purchase, as the engine spells customer ids."""
    from engine.sources.completejourney import load_tables

    ids = load_tables()["transactions"]["household_id"].unique()
    return [str(int(h)) for h in sorted(ids)]


def lpoint_customers(sample: Path = LPOINT_SAMPLE) -> list[str]:
    """The customer ids (고객번호) of the L.POINT sample rows."""
    with sample.open(newline="", encoding="utf-8") as f:
        return sorted({row["고객번호"] for row in csv.DictReader(f)})


def main() -> None:
    """Write both synthetic consent files."""
    cj = write_csv(synthetic_changes(cj_households(), "UTC", "synthetic:cj"), HERE / "cj_consent.csv",
                   "every Complete Journey household")
    lp = write_csv(synthetic_changes(lpoint_customers(), "Asia/Seoul", "synthetic:lpoint"),
                   HERE / "lpoint_consent.csv", "the L.POINT sample customers")
    print(f"cj_consent.csv {cj} rows, lpoint_consent.csv {lp} rows", file=sys.stderr)


if __name__ == "__main__":
    main()
