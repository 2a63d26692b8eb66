"""`nudge produce`: a source's events onto the purchases topic, in the source's order, keyed by customer.

Each record goes through its source's decoder first, so only valid events are sent (docs/wire-format.md); a
record the decoder refuses is logged with its reason and counted, never sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import structlog
import typer

from engine.config import Settings
from engine.errors import ConfigError, DecodeError, NudgeError
from engine.live.wire import encode
from engine.sources import Source

log = structlog.get_logger("nudge.live.produce")

LINGER_MS = 5  # a batch waits this long for more messages
BATCH_BYTES = 256 * 1024
PROGRESS_EVERY = 1_000  # records between progress calls


@dataclass(frozen=True)
class ProduceStats:
    """What one `produce` sent."""

    events: int  # acknowledged by the broker
    rejected: int  # records the source's decoder refused (logged, not sent)
    seconds: float

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


def produce(source: Source, bootstrap: str, topic: str, rate: float | None = None, *,
            progress: Callable[[int], None] | None = None, idempotent: bool = True) -> ProduceStats:
    """Send every event of `source` to `topic`, at most `rate` events a second when given; waits for all acks.

    `progress` is called with the number of records read so far.
    """
    return asyncio.run(produce_async(source, bootstrap, topic, rate, progress=progress, idempotent=idempotent))


async def produce_async(source: Source, bootstrap: str, topic: str, rate: float | None = None, *,
                        progress: Callable[[int], None] | None = None, idempotent: bool = True) -> ProduceStats:
    """`produce` inside a running event loop."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    if rate is not None and rate <= 0:
        raise ConfigError(f"--rate {rate}: expected a positive number of events per second")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=idempotent,
                                linger_ms=LINGER_MS, max_batch_size=BATCH_BYTES, client_id="nudge-produce")
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise NudgeError(f"cannot reach the Kafka broker at {bootstrap}: {exc}") from None
    acked, failures = 0, []

    def delivered(future: asyncio.Future) -> None:
        nonlocal acked
        if future.cancelled() or future.exception() is not None:
            failures.append(future.exception() if not future.cancelled() else "cancelled")
        else:
            acked += 1

    sent = rejected = 0
    began = time.monotonic()
    try:
        if topic not in (await producer.client.fetch_all_metadata()).topics():
            raise NudgeError(f"topic {topic} does not exist on {bootstrap} (topics are not created on first use: "
                             "create it, e.g. python -m engine.live.broker start creates purchases)")
        decoder = source.decoder
        for done, record in enumerate(source.records(), 1):
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done)
            try:
                event = decoder.decode(record.raw, record.where)
            except DecodeError as exc:
                rejected += 1
                log.warning("produce.rejected", reason=str(exc))
                continue
            key, value = encode(event)
            (await producer.send(topic, value, key)).add_done_callback(delivered)
            sent += 1
            if failures:
                break
            if rate is not None:
                ahead = began + sent / rate - time.monotonic()
                if ahead > 0.005:  # sleep in slices of a few ms: at high rates, not once per event
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    if failures:
        raise NudgeError(f"the broker at {bootstrap} did not take a message for {topic}: {failures[0]}")
    seconds = time.monotonic() - began
    if progress is not None:
        progress(sent + rejected)
    log.info("produce.done", topic=topic, events=acked, rejected=rejected, seconds=round(seconds, 3))
    return ProduceStats(acked, rejected, seconds)


def produce_command(
    source: Annotated[str, typer.Option("--source", "-s", help="cj, lpoint or jsonl.")] = "cj",
    path: Annotated[Path | None, typer.Argument(help="File or folder for lpoint and jsonl.")] = None,
    rate: Annotated[float | None, typer.Option(help="Events per second (default: as fast as the broker takes "
                                               "them).")] = None,
    bootstrap: Annotated[str | None, typer.Option(help="Kafka bootstrap servers (default: NUDGE_KAFKA_BOOTSTRAP).")]
    = None,
    topic: Annotated[str | None, typer.Option(help="The purchases topic (default: NUDGE_KAFKA_TOPIC).")] = None,
    households: Annotated[int | None, typer.Option(help="cj only: the first N households by id (a quick run).")]
    = None,
    tz: Annotated[str | None, typer.Option(help="Zone of naive timestamps (default: the source's).")] = None,
    encoding: Annotated[str, typer.Option(help="CSV encoding for lpoint: auto, utf-8 or cp949.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Send a source's events to the purchases topic, keyed by customer id, in the source's replay order."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from engine.cli import SourceKind, _fail, console, err, open_source  # here: engine.cli imports this module

    try:
        kind = SourceKind(source)
    except ValueError:
        raise typer.BadParameter(f"{source!r} is not one of {', '.join(SourceKind)}", param_hint="--source") from None
    settings = Settings()
    bootstrap = bootstrap or settings.kafka_bootstrap
    topic = topic or settings.kafka_topic
    try:
        src = open_source(kind, path, settings, tz, encoding, households)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=as_json) as shown:
            task = shown.add_task(f"produce {src.key} -> {topic}", total=len(src))
            stats = produce(src, bootstrap, topic, rate, progress=lambda n: shown.update(task, completed=n))
    except NudgeError as exc:
        _fail(exc)
    figures = {"topic": topic, "bootstrap": bootstrap, "events": stats.events, "rejected": stats.rejected,
               "seconds": round(stats.seconds, 3), "events_per_s": round(stats.rate, 1)}
    if as_json:
        console.print_json(json.dumps(figures))
        return
    console.print(f"{stats.events:,} events to {topic} at {bootstrap} in {stats.seconds:.1f} s "
                  f"({stats.rate:,.0f}/s)", highlight=False)
    if stats.rejected:
        console.print(f"{stats.rejected:,} record(s) refused by the source's decoder, not sent (logged with the "
                      "reason)", highlight=False)
