"""`nudge worker`: the faust-streaming app around `StreamIngest`.

faust runs the consumer group (partition assignment, rebalances, offset commits); the agent hands each batch to
`StreamIngest.handle`, which saves it before the batch is acked, and sends the batch's dead letters to
`<topic>.deadletter`. No business logic lives here: see `engine.runtime.stream`.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import faust
import structlog

from engine.config import Settings
from engine.db import connect
from engine.runtime.stream import Message, StreamIngest, dead_letter_message

log = structlog.get_logger("nudge.worker")

BATCH = 2_000  # messages per batch: a save per partition per batch
WITHIN = 0.25  # seconds a partial batch waits for more


@dataclass(frozen=True)
class WorkerOptions:
    """Where the worker reads from and who it is in the group."""

    bootstrap: str
    topic: str = "purchases"
    group: str = "nudge"
    name: str | None = None  # static membership: a restarted worker of the same name gets its partitions back
    batch: int = BATCH
    within: float = WITHIN


def _decoder():
    from engine.live.wire import WireDecoder

    return WireDecoder()


def make_app(settings: Settings, options: WorkerOptions) -> tuple[faust.App, StreamIngest]:
    """The faust app with its agent over `options.topic`, and the ingest it feeds."""
    name = options.name or f"{socket.gethostname()}-worker"
    datadir = Path(settings.home) / "faust" / name
    datadir.parent.mkdir(parents=True, exist_ok=True)  # faust makes only the last folder
    app = faust.App(
        options.group,
        broker=f"kafka://{options.bootstrap}",
        store="memory://",  # no Tables: the states are the engine database's (see engine.runtime.stream)
        web_enabled=False,
        autodiscover=False,
        datadir=str(datadir),
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=4 * 1024 * 1024,  # the default leaves the worker waiting on fetches
        consumer_group_instance_id=name,
        broker_commit_every=options.batch,
        broker_commit_interval=1.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        stream_buffer_maxsize=4 * options.batch,
        topic_allow_declare=False,
        topic_disable_leader=True,
    )
    engine = connect(settings.database_url)
    ingest = StreamIngest(settings, engine, options.topic, _decoder())
    source = app.topic(options.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    letters = app.topic(f"{options.topic}.deadletter", key_type=bytes, value_type=bytes, key_serializer="raw",
                        value_serializer="raw")

    @app.agent(source, name="purchases")
    async def purchases(stream) -> None:
        async for events in stream.take_events(options.batch, within=options.within):
            batch = [Message(e.message.partition, e.message.offset, e.message.value) for e in events]
            for letter in ingest.handle(batch):  # saved: now the topic's copy (a resend carries the same key)
                key, value = dead_letter_message(letter)
                await letters.send(key=key, value=value)

    @app.on_partitions_assigned.connect
    async def assigned(sender, assigned, **kwargs) -> None:
        ingest.assign({tp.partition for tp in assigned if tp.topic == options.topic})

    @app.on_partitions_revoked.connect
    async def revoked(sender, revoked, **kwargs) -> None:
        ingest.revoke({tp.partition for tp in revoked if tp.topic == options.topic})

    return app, ingest


def run_worker(settings: Settings, options: WorkerOptions, loglevel: str = "WARNING") -> None:
    """Run the worker until SIGTERM or SIGINT (faust's worker handles both and commits what was acked)."""
    app, _ = make_app(settings, options)
    logging.getLogger("faust").setLevel(loglevel)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    log.info("worker.start", bootstrap=options.bootstrap, topic=options.topic, group=options.group)
    worker.execute_from_commandline()
