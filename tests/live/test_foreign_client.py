"""A producer that is not ours feeds `nudge worker`: Apache Kafka's own console producer, writing JSON typed from
docs/wire-format.md alone (never `encode`), gives the embedded replay's states and lines; its malformed line is a
dead letter with the reason."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from datetime import UTC
from pathlib import Path

import pytest

from engine.db import connect
from engine.deadletters import list_dead_letters
from engine.runtime.embedded import EmbeddedRuntime
from engine.runtime.stream import source_key
from engine.sources.completejourney import CompleteJourneySource
from tests.live.workers import assert_like_embedded, replayed, sqlite_url, start_worker, stop, wait_saved

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

HOUSEHOLDS = 5
CONSOLE_PRODUCER = "kafka.tools.ConsoleProducer"  # Kafka 3.9's, in kafka_2.13 (org.apache.kafka.tools from 4.0)
MALFORMED = '{"schema": 1, "type": "purchase", "event_id": "cut-off", "lines": [["823721", ["GROCERY"'


@pytest.fixture(scope="module")
def source(cj_tables, cj_households) -> CompleteJourneySource:
    """A handful of real households, their demographics included."""
    return CompleteJourneySource(households=set(sorted(cj_households)[:HOUSEHOLDS]), tables=cj_tables)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, source) -> EmbeddedRuntime:
    return replayed(tmp_path_factory.mktemp("embedded"), source)


def documented_value(raw: dict, n: int) -> str:
    """The n-th record as a message value, spelled per docs/wire-format.md; every other purchase takes the other
    documented spelling (no "type", lines as objects, defaults written out), so both are proven."""
    if "event_id" not in raw:
        return json.dumps({"schema": 1, "type": "profile", "customer_id": raw["customer_id"],
                           "time_zone": raw["time_zone"], "age_band": raw["age_band"],
                           "attributes": raw["attributes"]})
    when = raw["event_time"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    value = {"schema": 1, "type": "purchase", "event_id": raw["event_id"], "customer_id": raw["customer_id"],
             "event_time": when, "store_id": raw["store_id"],
             "lines": [[pid, list(path), qty, amount] for pid, path, qty, amount in raw["lines"]]}
    if n % 2:
        del value["type"]
        value["lines"] = [{"product_id": pid, "category": path, "quantity": qty, "amount": amount}
                          for pid, path, qty, amount in value["lines"]]
        value |= {"channel": "offline", "lpay": False, "affiliate": None}
    return json.dumps(value)


def console_produce(jars: Path, bootstrap: str, topic: str, lines: list[str]) -> None:
    """Feed `key<TAB>value` lines to Kafka's console producer; it sends them all and flushes before it exits."""
    command = [shutil.which("java") or "java", "-Xmx128m", "-cp", f"{jars}/*", CONSOLE_PRODUCER,
               "--bootstrap-server", bootstrap, "--topic", topic,
               "--property", "parse.key=true", "--property", "key.separator=\t"]
    done = subprocess.run(command, input="".join(f"{line}\n" for line in lines), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"{CONSOLE_PRODUCER} exited {done.returncode}:\n{done.stderr[-3000:]}"


# With 4 partitions one of them holds household 16 alone, whose 84-day pause (2017-06-05 to 08-28) is more than the
# 30-day future tolerance past that partition's own watermark: every later event of the partition is dead-lettered
# "future-dated", though the embedded replay, on the watermark of all five households, accepts them.

@pytest.mark.parametrize("partitions", [1, 4])  # on 4, a household alone on its partition pauses 84 days
def test_the_documented_format_typed_by_another_client_is_all_a_worker_needs(kafka_broker, kafka_jars, tmp_path,
                                                                               source, embedded, partitions) -> None:
    lines = [f"{r.raw['customer_id']}\t{documented_value(r.raw, n)}" for n, r in enumerate(source.records())]
    bad_key = lines[len(lines) // 2].split("\t")[0]
    lines.insert(len(lines) // 2, f"{bad_key}\t{MALFORMED}")
    topic, group = f"f-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions)
    kafka_broker.create_topic(f"{topic}.deadletter", 1)
    console_produce(kafka_jars, kafka_broker.bootstrap, topic, lines)
    home = tmp_path / "home"
    proc = start_worker(home, kafka_broker.bootstrap, topic, group)
    try:
        wait_saved(home, len(lines))
    finally:
        stop(proc)
    letters = list_dead_letters(connect(sqlite_url(home)))
    assert [d.raw for d in letters] == [MALFORMED], "\n".join(d.reason for d in letters)
    (letter,) = letters
    assert letter.source in {source_key(topic, p) for p in range(partitions)}
    assert letter.reason.startswith(f"{letter.where}: ") and "not JSON" in letter.reason
    assert_like_embedded(home, embedded)
