"""Properties of whole runs (hypothesis): any purchase history, any consent, two purchase-triggered campaigns
competing for one channel, through the real runtime, ledger and file outbox. Whatever the history: each key is
delivered once; no held-out, control or unconsented customer is messaged; no advertising goes out at night
without night consent; no cap is exceeded; replaying the same history again, or in two parts (stopped and
resumed), delivers exactly the same keys. Every example counted has at least one message sent."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from engine.campaigns.candidates import Verdict
from engine.campaigns.consent import ConsentChange, ConsentStore, is_night
from engine.campaigns.holdout import held_out, in_control
from engine.config import Settings
from engine.delivery.ledger import Ledger
from engine.runtime.campaigns import open_campaigns
from engine.runtime.embedded import EmbeddedRuntime
from engine.sources.jsonl import JsonLinesSource

T0 = datetime(2017, 3, 1, tzinfo=UTC)
CUSTOMERS = [f"c{i}" for i in range(6)]
BIG = """\
name: big_basket
kind: advertising
trigger: {type: event, min_basket: 20}
channel: push
template: note
sender: Test Shop
priority: 10
holdout: 20
caps: [{sends: 1, days: 2}]
quiet_hours: {push: {start: "22:00", end: "07:00"}}
"""
ANY = """\
name: any_purchase
kind: advertising
trigger: {type: event}
channel: push
template: note
sender: Test Shop
holdout: 10
caps: [{sends: 2, days: 7}]
"""
TEMPLATE = ("{% block title %}A note{% endblock %}\n"
            "{% block body %}Hello from {{ sender }}.\nTo stop these, unsubscribe at {{ unsubscribe_url }}"
            "{% endblock %}\n")

purchases = st.lists(st.tuples(st.sampled_from(CUSTOMERS), st.integers(0, 20 * 24 - 1),
                               st.integers(1, 6000)), min_size=3, max_size=25)
consents = st.dictionaries(st.sampled_from(CUSTOMERS), st.tuples(st.booleans(), st.booleans()))


def _write(folder: Path, events: list[tuple[str, int, int]]) -> Path:
    rows = []
    for i, (cid, hour, cents) in enumerate(events):
        when = T0 + timedelta(hours=hour, minutes=i % 60)
        rows.append((when, json.dumps({"event_id": f"e{i}", "customer_id": cid, "event_time": when.isoformat(),
                                       "lines": [["p1", ["DAIRY"], 1, cents / 100]]})))
    path = folder / "feed.jsonl"
    path.write_text("".join(line + "\n" for _, line in sorted(rows)))
    return path


def _home(root: Path, name: str, campaigns: Path, templates: Path, consent: dict) -> Settings:
    settings = Settings(home=root / name, campaigns_dir=campaigns, templates_dir=templates, checkpoint_every=4)
    runtime = EmbeddedRuntime(settings)
    changes = []
    for cid, (advertising, night) in consent.items():
        changes.append(ConsentChange(cid, "push", "advertising", advertising, T0 - timedelta(days=30), "test"))
        changes.append(ConsentChange(cid, "push", "night", night, T0 - timedelta(days=30), "test"))
    ConsentStore(runtime.engine).record(changes)
    return settings


def _run(settings: Settings, source, fresh: bool = False) -> EmbeddedRuntime:
    runtime = EmbeddedRuntime(settings)
    runtime.replay(source, fresh=fresh, observer=open_campaigns(settings, runtime.engine, start=None, models=()))
    return runtime


def _outbox(settings: Settings) -> Counter:
    path = settings.home / "outbox" / "push.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["key"] for line in lines if line.strip())


class _Cut:
    """The first `n` records of a source, under its key: a run stopped there, resumed later on the whole."""

    def __init__(self, source: JsonLinesSource, n: int) -> None:
        self.source, self.n, self.key, self.decoder = source, n, source.key, source.decoder

    def __len__(self) -> int:
        return self.n

    def records(self, start: int = 0):
        return (r for r in self.source.records(start) if r.position < self.n)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # a run takes a second: shrinking would take minutes
@given(events=purchases, consent=consents, cut=st.floats(0.1, 0.9))
# Found by this property: a run stopped after its first purchase lost the candidate it had not judged yet, and
# the jobs' cursors, so the resumed run judged two purchases at one moment and outranked one.
@example(events=[("c0", 263, 1), ("c1", 37, 1), ("c0", 125, 1), ("c0", 186, 1), ("c0", 292, 1), ("c0", 142, 1),
                 ("c1", 0, 1)], consent={"c2": (False, False), "c1": (True, False)}, cut=0.1)
@example(events=[("c0", 0, 2336), ("c0", 0, 1), ("c0", 8, 1)], consent={"c0": (True, False)}, cut=0.5)
def test_any_history_delivers_each_key_once_within_the_rules_and_the_same_keys_however_replayed(
        events: list, consent: dict, cut: float) -> None:
    with tempfile.TemporaryDirectory(prefix="nudge-prop-") as tmp:
        root = Path(tmp)
        campaigns, templates = root / "campaigns", root / "templates"
        campaigns.mkdir()
        templates.mkdir()
        (campaigns / "big_basket.yaml").write_text(BIG)
        (campaigns / "any_purchase.yaml").write_text(ANY)
        (templates / "note.en.j2").write_text(TEMPLATE)
        feed = JsonLinesSource(_write(root, events))

        clean = _home(root, "clean", campaigns, templates, consent)
        runtime = _run(clean, feed)
        ledger = Ledger(runtime.engine)
        sent = [e for e in ledger.entries() if e.verdict is Verdict.SENT]
        assume(sent)
        outbox = _outbox(clean)
        assert max(outbox.values()) == 1 and set(outbox) == {e.key for e in sent}
        running = open_campaigns(clean, runtime.engine, start=None, models=()).campaign_set
        running.reload(T0)
        by_name = running.campaigns
        for e in sent:
            campaign = by_name[e.campaign]
            advertising, night = consent.get(e.customer_id, (False, False))
            assert advertising, e.key
            assert not held_out(campaign, e.customer_id) and not in_control(e.customer_id, clean.control_percent)
            assert night or not is_night(e.sent_at), (e.key, e.sent_at)  # customers without a profile: UTC
            quiet = campaign.quiet_hours.get("push")
            assert quiet is None or not quiet.covers(e.sent_at.time()), (e.key, e.sent_at)
        for name, campaign in by_name.items():
            cap = campaign.caps[0]
            days: dict[str, list] = {}
            for e in ledger.entries(campaign=name):
                if e.verdict in (Verdict.SENT, Verdict.HELD_OUT):  # a held-out message uses its slot too
                    days.setdefault(e.customer_id, []).append((e.not_before or e.decided_at).date())
            for dates in days.values():
                for first in dates:
                    assert sum(0 <= (d - first).days < cap.days for d in dates) <= cap.sends, (name, dates)

        _run(clean, feed, fresh=True)  # the same history again over the same ledger
        assert _outbox(clean) == outbox

        halves = _home(root, "halves", campaigns, templates, consent)
        _run(halves, _Cut(feed, max(1, int(len(feed) * cut))))
        resumed = _run(halves, feed)
        assert Ledger(resumed.engine).keys(Verdict.SENT) == {e.key for e in sent}
        assert _outbox(halves) == outbox
