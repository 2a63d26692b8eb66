"""Live-path benchmark on a real local KRaft broker, one run: a benchmark, not a test.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/stream.py [--households N] [--profile]

One broker, one topic of The Complete Journey (profiles, then baskets in event-time order; 4 partitions, keyed
by customer, the wire format of `engine.live.wire`), every figure measured in the same run:

(a) a bare aiokafka consumer that reads the topic and `json.loads` each value;
(b) the same loop calling the core's `Step` (`WireDecoder`, `Ingest`) into in-memory states: the floor for our
    work, with nothing saved;
(c) `nudge worker` as a subprocess on a fresh home and group: start to every offset saved in its checkpoints;
(d) a naive faust agent (a subprocess of this script) that applies each purchase to a faust Table (memory store,
    changelog on) with the worker's 4 MB fetch size: for reference;
then, on a second topic, produce-to-saved latency while a producer sends at half of (c)'s rate, and the time a
worker takes after a SIGKILL mid-stream to save its next event. The broker's CPU seconds are read per phase.

Progress goes to stderr; stdout holds the table and, as its last line, one JSON object of the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import bisect
import contextlib
import functools
import itertools
import json
import pstats
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from engine import logs
from engine.clock import WatermarkClock
from engine.config import Settings
from engine.errors import NudgeError
from engine.live.broker import CACHE, KafkaBroker, fetch_jars
from engine.live.produce import BATCH_BYTES, LINGER_MS, produce
from engine.live.wire import WireDecoder, encode
from engine.pipeline import Ingest, Step
from engine.runtime.stream import source_key
from engine.runtime.worker import BATCH, WITHIN
from engine.sources.completejourney import CompleteJourneySource, load_tables

TARGET_WORKER_VS_FLOOR = 0.5
TARGET_WORKER_BASKETS_PER_S = 10_000
TARGET_P99_MS = 100.0
TARGET_RESTART_S = 10.0

PARTITIONS = 4
FETCH_BYTES = 4 * 1024 * 1024  # the worker's consumer_max_fetch_size, given to every consumer here
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WATCH_EVERY = 0.005  # seconds between two reads of a worker's checkpoint positions (the latency's resolution)

Messages = list[tuple[bytes, bytes]]


def progress(message: str) -> None:
    """Progress on stderr, so stdout stays the table and the JSON line."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used so far (busy time of all cores, /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class Phase:
    """One phase's wall time, the broker's CPU seconds meanwhile and the whole machine's (other work included)."""

    seconds: float = 0.0
    broker_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0  # this process' (the consumers of (a) and (b), the paced producer, the watch)
    machine_cpu_s: float = 0.0


class PhaseMeter:
    """Wall time and CPU seconds (the broker's, this process', the machine's) per named phase."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.phases: dict[str, Phase] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Time the block and the CPU used during it (adding up when a name comes back)."""
        found = self.phases.setdefault(name, Phase())
        cpu, own, machine = cpu_seconds(self.pid), cpu_seconds(os.getpid()), machine_cpu_seconds()
        began = time.perf_counter()
        try:
            yield found
        finally:
            found.seconds += time.perf_counter() - began
            found.broker_cpu_s += cpu_seconds(self.pid) - cpu
            found.bench_cpu_s += cpu_seconds(os.getpid()) - own
            found.machine_cpu_s += machine_cpu_seconds() - machine


# -- (a), (b): consumers in this process ----------------------------------------------------------
OnBatch = Callable[[int, list], None]


async def consume(bootstrap: str, topic: str, on_batch: OnBatch) -> int:
    """Read every partition of `topic` from its start to its end offset now, without a group; messages read."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=FETCH_BYTES,
                                client_id="bench-consume")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        read = 0
        while left:
            for tp, messages in (await consumer.getmany(timeout_ms=1_000)).items():
                on_batch(tp.partition, messages)
                read += len(messages)
                if messages[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return read
    finally:
        await consumer.stop()


def parse_values(_partition: int, messages: list) -> None:
    """(a): what any consumer of this topic does at least, one JSON parse per value."""
    for m in messages:
        json.loads(m.value)


def floor_steps(settings: Settings, topic: str) -> tuple[OnBatch, dict[int, Step]]:
    """(b): the worker's per-message work without saving: a `Step` per partition over in-memory states, profiles
    and a clock that the partitions share, as `StreamIngest` sets them up."""
    decoder, states, profiles, clock = WireDecoder(), {}, {}, WatermarkClock()
    steps = {p: Step(source_key(topic, p), decoder, Ingest(clock, settings.future_tolerance, settings.policy,
                                                           states, profiles))
             for p in range(PARTITIONS)}

    def on_batch(partition: int, messages: list) -> None:
        step = steps[partition]
        for m in messages:
            step(m.value.decode("utf-8"), f"{topic}[{partition}] offset {m.offset}", m.offset)

    return on_batch, steps


def first_messages(source: CompleteJourneySource, count: int) -> Messages:
    """The (key, value) messages of the source's first `count` records, in its order, as `produce` sends them.

    Not read back from the topic: a consumer hands them over a partition at a time, and sending them in that
    order loads one partition after the other.
    """
    decoder = source.decoder
    return [encode(decoder.decode(r.raw, r.where)) for r in itertools.islice(source.records(), count)]


def topic_bytes(broker: KafkaBroker, topic: str) -> int:
    """The bytes of a topic's log segments on the broker's disk."""
    return sum(f.stat().st_size for f in (broker.folder / "data").glob(f"{topic}-*/*.log"))


# -- (c): the worker as a subprocess, watched through its checkpoints ------------------------------
class CheckpointWatch:
    """Reads a worker home's checkpoint positions every `every` seconds in a thread; keeps each partition's
    (time, position) whenever it moved, and the total's."""

    def __init__(self, home: Path, topic: str, every: float = WATCH_EVERY) -> None:
        self.db, self.prefix, self.every = home / "nudge.db", f"kafka:{topic}:", every
        self.times: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        self.positions: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        self.totals: list[tuple[float, int]] = []
        self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint-watch", daemon=True)

    def __enter__(self) -> CheckpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = None
        try:
            while not self._stop.is_set():
                if conn is None and self.db.exists():
                    conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5, check_same_thread=False)
                if conn is not None:
                    self._read(conn)
                self._stop.wait(self.every)
        finally:
            if conn is not None:
                conn.close()

    def _read(self, conn: sqlite3.Connection) -> None:
        try:
            rows = conn.execute("SELECT source, position FROM checkpoint").fetchall()
        except sqlite3.OperationalError:  # the worker has not made its tables yet
            return
        now = time.monotonic()  # after the read: an upper bound on when the positions were saved
        total = 0
        for source, position in rows:
            if not source.startswith(self.prefix):
                continue
            p = int(source[len(self.prefix):])
            total += position
            if not self.positions[p] or self.positions[p][-1] != position:
                self.times[p].append(now)
                self.positions[p].append(position)
        if total != self.total:
            self.total = total
            self.totals.append((now, total))

    def read_total(self) -> int:
        """The saved total now, read on a connection of the caller's (the thread's last read may be older)."""
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT source, position FROM checkpoint").fetchall()
        finally:
            conn.close()
        return sum(position for source, position in rows if source.startswith(self.prefix))

    def reached(self, total: int) -> float | None:
        """When the saved total was first seen at `total` or more."""
        return next((t for t, n in self.totals if n >= total), None)

    def saved_at(self, partition: int, offset: int) -> float | None:
        """When the message at `offset` of `partition` was first seen saved (its partition's position past it)."""
        i = bisect.bisect_right(self.positions[partition], offset)
        return self.times[partition][i] if i < len(self.positions[partition]) else None

    def wait(self, total: int, proc: subprocess.Popen, log: Path, timeout: float) -> float:
        """Block until the saved total reaches `total`; when that was seen. Raises if the worker dies or stalls."""
        deadline = time.monotonic() + timeout
        while self.total < total:
            if proc.poll() is not None:
                raise NudgeError(f"the worker exited (code {proc.returncode}) at {self.total} of {total} saved; "
                                 f"the end of {log}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise NudgeError(f"the worker saved {self.total} of {total} in {timeout:.0f} s; the end of {log}:\n"
                                 f"{tail(log)}")
            time.sleep(0.01)
        return self.reached(total)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else "(no log)"


def start_worker(home: Path, bootstrap: str, topic: str, group: str, log: Path,
                 profile: Path | None = None) -> subprocess.Popen:
    """`nudge worker` as the operator runs it (a named member of `group`), stderr to `log`; under cProfile
    when `profile` names the output file."""
    env = {**os.environ, "NUDGE_HOME": str(home), "NUDGE_KAFKA_BOOTSTRAP": bootstrap, "NUDGE_KAFKA_TOPIC": topic,
           "NUDGE_KAFKA_GROUP": group, "NUDGE_WORKER_NAME": f"{group}-w1", "OPENBLAS_NUM_THREADS": "1"}
    profiler = [] if profile is None else ["-m", "cProfile", "-o", str(profile)]
    with log.open("a") as err:
        return subprocess.Popen([sys.executable, *profiler, "-m", "engine.cli", "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM (faust commits what was acked and exits), SIGKILL if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class WorkerRun:
    """(c): one worker from its start to every offset of the topic saved."""

    seconds: float  # start of the process to all saved
    first_save_s: float  # start of the process to its first checkpoint (imports, group join, first fetch)
    cpu_s: float  # the worker's own CPU seconds until all saved


def worker_pass(work: Path, bootstrap: str, topic: str, events: int, timeout: float,
                profile: Path | None = None) -> WorkerRun:
    """A fresh home and group; start the worker, wait until its checkpoints hold every offset, stop it."""
    group = f"bench-{uuid.uuid4().hex[:8]}"
    home, log = work / group, work / f"{group}.log"
    with CheckpointWatch(home, topic, every=0.02) as watch:
        began = time.monotonic()
        proc = start_worker(home, bootstrap, topic, group, log, profile)
        try:
            done = watch.wait(events, proc, log, timeout)
            cpu = cpu_seconds(proc.pid)
        finally:
            stop(proc)
    first = watch.totals[0][0] if watch.totals else done
    return WorkerRun(done - began, first - began, cpu)


# -- (d): a naive faust agent, a Table write per event ---------------------------------------------
def naive_agent_main(bootstrap: str, topic: str, group: str, datadir: str) -> None:
    """Run the naive agent until SIGTERM (this script re-run with --naive-agent, so it is its own process)."""
    import pickle

    import faust

    from engine.events import Purchase
    from engine.state import apply

    app = faust.App(group, broker=f"kafka://{bootstrap}", store="memory://", web_enabled=False, autodiscover=False,
                    datadir=datadir, consumer_auto_offset_reset="earliest", consumer_max_fetch_size=FETCH_BYTES,
                    topic_partitions=PARTITIONS, broker_commit_interval=1.0)
    source = app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    # A Table serializes a value that is not a faust Record as JSON: the states go in pickled, as bytes.
    table = app.Table("states", key_type=str, value_type=bytes, partitions=PARTITIONS)
    decoder, policy = WireDecoder(), Settings(_env_file=None).policy

    @app.agent(source, name="naive")
    async def naive(stream) -> None:
        async for value in stream:
            event = decoder.decode(value, topic)
            if isinstance(event, Purchase):
                saved = table.get(event.customer_id)
                state = apply(None if saved is None else pickle.loads(saved), event, policy)
                table[event.customer_id] = pickle.dumps(state, protocol=5)

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


@dataclass
class NaiveRun:
    """(d): the naive agent's progress, as committed offsets and as Table writes on the changelog."""

    seconds: float  # start of the process to the last commit seen
    committed: int  # offsets committed by then
    written_s: float  # start of the process to the last changelog growth seen
    written: int  # Table writes on the changelog by then
    complete: bool  # every offset committed within the budget


class GroupProgress:
    """A consumer group's committed offsets on a topic and the end offsets of a table's changelog, polled."""

    def __init__(self, bootstrap: str, group: str, topic: str, changelog: str) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        self.group, self.topic = group, topic
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-progress")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-progress")
        self.changelog = [TopicPartition(changelog, p) for p in range(PARTITIONS)]

    def committed(self) -> int:
        """The sum of the group's committed offsets on the topic (0 before its first commit)."""
        from kafka.errors import KafkaError

        try:
            offsets = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        except KafkaError:  # the group's coordinator may not know it yet
            return 0
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self.topic and meta.offset > 0)

    def written(self) -> int:
        """The sum of the changelog's end offsets (asked only once the agent has committed: it exists by then)."""
        return sum(self.consumer.end_offsets(self.changelog).values())

    def close(self) -> None:
        """Close both clients."""
        self.consumer.close()
        self.admin.close()


def naive_pass(work: Path, bootstrap: str, topic: str, events: int, budget: float) -> NaiveRun:
    """Start the naive agent on a fresh group; poll its progress until all is committed or `budget` s pass."""
    group = f"naive-{uuid.uuid4().hex[:8]}"
    log = work / f"{group}.log"
    watch = GroupProgress(bootstrap, group, topic, f"{group}-states-changelog")  # faust's name for the Table's
    began = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--naive-agent", bootstrap, topic, group,
                                 str(work / group)], stdout=subprocess.DEVNULL, stderr=err,
                                env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    done = written = 0
    done_at = written_at = began
    try:
        while done < events and time.monotonic() - began < budget:
            if proc.poll() is not None:
                raise NudgeError(f"the naive agent exited (code {proc.returncode}); the end of {log}:\n{tail(log)}")
            now_done = watch.committed()
            if now_done != done:
                done, done_at = now_done, time.monotonic()
            if done:
                now_written = watch.written()
                if now_written != written:
                    written, written_at = now_written, time.monotonic()
            time.sleep(0.1)
    finally:
        stop(proc)
        watch.close()
    return NaiveRun(done_at - began, done, written_at - began, written, done >= events)


# -- latency and restart: a timed producer against a watched worker --------------------------------
@dataclass
class Sent:
    """When each message was handed to the producer, and where the broker put it."""

    sent_at: list[float] = field(default_factory=list)
    acked_at: list[float] = field(default_factory=list)
    partition: list[int] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)


async def send_paced(bootstrap: str, topic: str, messages: Messages, rate: float) -> Sent:
    """Send `messages` at `rate` a second with `engine.live.produce`'s producer settings, timing each one."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=LINGER_MS, max_batch_size=BATCH_BYTES, client_id="bench-paced")
    await producer.start()
    n = len(messages)
    sent = Sent([0.0] * n, [0.0] * n, [-1] * n, [-1] * n)

    def acked(i: int, future: asyncio.Future) -> None:
        meta = future.result()
        sent.acked_at[i], sent.partition[i], sent.offset[i] = time.monotonic(), meta.partition, meta.offset

    try:
        began = time.monotonic()
        for i, (key, value) in enumerate(messages):
            sent.sent_at[i] = time.monotonic()
            (await producer.send(topic, value, key)).add_done_callback(functools.partial(acked, i))
            ahead = began + (i + 1) / rate - time.monotonic()
            if ahead > 0.005:  # sleep in slices of a few ms, as `produce` does
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


class Sender(threading.Thread):
    """`send_paced` in a thread, so the main thread can watch, kill and restart the worker meanwhile."""

    def __init__(self, bootstrap: str, topic: str, messages: Messages, rate: float) -> None:
        super().__init__(name="paced-producer", daemon=True)
        self.args = (bootstrap, topic, messages, rate)
        self.sent: Sent | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.sent = asyncio.run(send_paced(*self.args))
        except BaseException as exc:  # handed to the main thread by `result`
            self.error = exc

    def result(self) -> Sent:
        """Wait for the last ack; the timings."""
        self.join()
        if self.error is not None:
            raise NudgeError(f"the paced producer failed: {self.error!r}")
        return self.sent


def quantile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, linear between closest ranks."""
    return float(np.quantile(values, q))


@dataclass
class LiveRun:
    """Latency at a fixed rate, then a SIGKILL mid-stream and the restart."""

    rate: float
    latency_events: int
    latencies_ms: list[float]
    ack_ms: list[float]  # send to broker ack, for comparison
    unseen: int  # messages whose save was never seen (should be 0)
    killed_at: int  # saved total when the worker was killed
    restart_s: float  # start of the new process to its first save past `killed_at`
    kill_to_first_s: float
    catch_up_s: float  # start of the new process to every message of the restart phase saved


def live_pass(work: Path, meter: PhaseMeter, broker: KafkaBroker, source: CompleteJourneySource, rate: float,
              latency_seconds: float, restart_seconds: float, kill_after: float) -> LiveRun:
    """On a new topic: warm a worker up, measure latency at `rate`, then SIGKILL it mid-stream and restart it."""
    topic, group = f"live-{uuid.uuid4().hex[:8]}", f"live-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, PARTITIONS)
    broker.create_topic(f"{topic}.deadletter", 1)
    bootstrap = broker.bootstrap
    home, log = work / group, work / f"{group}.log"
    # The profiles first (they are not purchases), then the latency window, then what the restart phase sends.
    total = len(source)
    warm = min(total // 10, 1_000)
    n_latency = min(int(rate * latency_seconds), (total - warm) * 2 // 3)
    n_restart = min(int(rate * restart_seconds), total - warm - n_latency)
    messages = first_messages(source, warm + n_latency + n_restart)
    warmup, window = messages[:warm], messages[warm:warm + n_latency]
    after = messages[warm + n_latency:warm + n_latency + n_restart]
    with CheckpointWatch(home, topic) as watch:
        proc = start_worker(home, bootstrap, topic, group, log)
        try:
            asyncio.run(send_paced(bootstrap, topic, warmup, rate))
            watch.wait(warm, proc, log, timeout=120)
            progress(f"latency: {n_latency:,} events at {rate:,.0f}/s")
            with meter.phase("latency"):
                sender = Sender(bootstrap, topic, window, rate)
                sender.start()
                sent = sender.result()
                watch.wait(warm + n_latency, proc, log, timeout=120)
            latencies, ack, unseen = [], [], 0
            for i, when in enumerate(sent.sent_at):
                seen = watch.saved_at(sent.partition[i], sent.offset[i])
                if seen is None:
                    unseen += 1
                    continue
                latencies.append((seen - when) * 1e3)
                ack.append((sent.acked_at[i] - when) * 1e3)
            progress(f"restart: SIGKILL {kill_after:.0f} s into {n_restart:,} events at {rate:,.0f}/s")
            with meter.phase("restart"):
                sender = Sender(bootstrap, topic, after, rate)
                sender.start()
                time.sleep(kill_after)
                killed = time.monotonic()
                proc.kill()
                proc.wait()
                killed_at = watch.read_total()
                began = time.monotonic()
                proc = start_worker(home, bootstrap, topic, group, log)
                first = watch.wait(killed_at + 1, proc, log, timeout=120)
                sender.result()
                caught_up = watch.wait(warm + n_latency + n_restart, proc, log, timeout=120)
        finally:
            stop(proc)
    return LiveRun(rate, n_latency, latencies, ack, unseen, killed_at, first - began, first - killed,
                   caught_up - began)


# -- profile ---------------------------------------------------------------------------------------
def profile_worker(work: Path, bootstrap: str, topic: str, events: int, top: int = 25) -> str:
    """The worker under cProfile over the whole topic (its figures are not the benchmark's): top by tottime."""
    out = work / "worker.prof"
    worker_pass(work, bootstrap, topic, events, timeout=600, profile=out)  # SIGTERM: cProfile writes on exit
    stats = pstats.Stats(str(out), stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return str(out)


# -- driver ----------------------------------------------------------------------------------------
def timed(label: str, meter: PhaseMeter, run: Callable[[], int]) -> float:
    """Seconds `run` takes, under the meter's phase `label`."""
    with meter.phase(label):
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
    progress(f"{label}: {seconds:.2f} s")
    return seconds


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; print the table and the JSON line; return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=None, help="the first N households by id (default all)")
    parser.add_argument("--reps", type=int, default=2, help="runs of (a) and (b), alternating; the best counts")
    parser.add_argument("--naive-seconds", type=float, default=90.0, help="most the naive agent (d) may take")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the latency window")
    parser.add_argument("--restart-seconds", type=float, default=10.0, help="length of the restart phase's sending")
    parser.add_argument("--kill-after", type=float, default=2.0, help="seconds into the restart phase of the SIGKILL")
    parser.add_argument("--rate", type=float, default=None, help="the latency phase's rate (default half of (c))")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (the broker's "
                        "data, the workers' homes and logs)")
    parser.add_argument("--profile", action="store_true", help="also run the worker under cProfile (stderr)")
    parser.add_argument("--naive-agent", nargs=4, metavar=("BOOTSTRAP", "TOPIC", "GROUP", "DATADIR"),
                        help=argparse.SUPPRESS)  # how (d) runs its subprocess
    args = parser.parse_args(argv)
    if args.naive_agent:
        naive_agent_main(*args.naive_agent)
        return {}

    logs.configure("WARNING")
    settings = Settings(_env_file=None)
    bench_started = time.perf_counter()
    tables = load_tables()
    ids = None
    if args.households is not None:
        ids = set(sorted(tables["transactions"]["household_id"].unique())[:args.households])
    source = CompleteJourneySource(households=ids, tables=tables)
    tx = tables["transactions"]
    tx = tx if ids is None else tx[tx["household_id"].isin(ids)]
    households, baskets, events = tx["household_id"].nunique(), tx["basket_id"].nunique(), len(source)
    del tables, tx
    progress(f"source: {households:,} households, {events:,} events ({baskets:,} baskets)")

    with contextlib.ExitStack() as cleanup:
        work = args.keep or Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="nudge-stream-bench-")))
        work.mkdir(parents=True, exist_ok=True)
        with KafkaBroker(work / "broker", fetch_jars(CACHE)) as broker:
            meter = PhaseMeter(broker.pid)
            topic = "purchases"
            broker.create_topic(topic, PARTITIONS)
            broker.create_topic(f"{topic}.deadletter", 1)
            bootstrap = broker.bootstrap
            with meter.phase("produce"):
                stats = produce(source, bootstrap, topic)
            if stats.events != events:
                raise NudgeError(f"produced {stats.events} of {events} events ({stats.rejected} rejected)")
            progress(f"produce: {stats.events:,} events in {stats.seconds:.1f} s ({stats.rate:,.0f}/s)")
            stored = topic_bytes(broker, topic)

            floors: list[dict[int, Step]] = []

            def run_floor() -> int:
                on_batch, steps = floor_steps(settings, topic)
                floors.append(steps)
                return asyncio.run(consume(bootstrap, topic, on_batch))

            bare_s, floor_s = [], []
            for _ in range(args.reps):  # alternating, so drift on a shared machine hits both
                bare_s.append(timed("bare", meter, lambda: asyncio.run(consume(bootstrap, topic, parse_values))))
                floor_s.append(timed("floor", meter, run_floor))
            counters = [s.counters for s in floors[-1].values()]
            if sum(c.purchases for c in counters) != baskets or sum(c.dead_letters for c in counters):
                raise NudgeError(f"the floor applied {sum(c.purchases for c in counters)} of {baskets} baskets, "
                                 f"{sum(c.dead_letters for c in counters)} dead letters")

            progress("worker (c)")
            with meter.phase("worker"):
                worker = worker_pass(work, bootstrap, topic, events, timeout=300)
            progress(f"worker: {worker.seconds:.1f} s, first save at {worker.first_save_s:.1f} s")

            progress("naive faust agent (d)")
            with meter.phase("naive"):
                naive = naive_pass(work, bootstrap, topic, events, args.naive_seconds)
            progress(f"naive: {naive.committed:,} committed in {naive.seconds:.1f} s, {naive.written:,} Table writes")

            worker_rate = events / worker.seconds
            rate = args.rate or worker_rate / 2
            live = live_pass(work, meter, broker, source, rate, args.latency_seconds, args.restart_seconds,
                             args.kill_after)
            if args.profile:
                progress("cProfile of a worker over the whole topic (stderr)")
                profile_worker(work, bootstrap, topic, events)

    bare_rate, floor_rate = events / min(bare_s), events / min(floor_s)
    steady_s = worker.seconds - worker.first_save_s
    naive_rate = naive.committed / naive.seconds if naive.seconds > 0 else 0.0
    naive_written_rate = naive.written / naive.written_s if naive.written_s > 0 else 0.0
    lat = live.latencies_ms
    figures: dict = {
        "households": households,
        "events": events,
        "baskets": baskets,
        "partitions": PARTITIONS,
        "topic_mb": round(stored / 1e6, 1),
        "produce_events_per_s": round(stats.rate, 1),
        "bare_events_per_s": round(bare_rate, 1),
        "floor_events_per_s": round(floor_rate, 1),
        "floor_vs_bare": round(floor_rate / bare_rate, 4),
        "worker_s": round(worker.seconds, 3),
        "worker_events_per_s": round(worker_rate, 1),
        "worker_baskets_per_s": round(baskets / worker.seconds, 1),
        "worker_vs_floor": round(worker_rate / floor_rate, 4),
        "worker_first_save_s": round(worker.first_save_s, 3),
        "worker_steady_events_per_s": round(events / steady_s, 1) if steady_s > 0 else None,
        "worker_cpu_s": round(worker.cpu_s, 2),
        "naive_events_per_s": round(naive_rate, 1),
        "naive_committed": naive.committed,
        "naive_complete": naive.complete,
        "naive_s": round(naive.seconds, 3),
        "naive_changelog_writes": naive.written,
        "naive_changelog_writes_per_s": round(naive_written_rate, 1),
        "worker_vs_naive": round(worker_rate / naive_rate, 2) if naive_rate else None,
        "latency_rate_events_per_s": round(live.rate, 1),
        "latency_events": live.latency_events,
        "latency_p50_ms": round(quantile(lat, 0.5), 1),
        "latency_p90_ms": round(quantile(lat, 0.9), 1),
        "latency_p99_ms": round(quantile(lat, 0.99), 1),
        "latency_max_ms": round(max(lat), 1),
        "latency_unseen": live.unseen,
        "ack_p50_ms": round(quantile(live.ack_ms, 0.5), 1),
        "ack_p99_ms": round(quantile(live.ack_ms, 0.99), 1),
        "restart_s": round(live.restart_s, 3),
        "restart_kill_to_first_s": round(live.kill_to_first_s, 3),
        "restart_catch_up_s": round(live.catch_up_s, 3),
        "restart_killed_at": live.killed_at,
        **{f"broker_cpu_s_{name}": round(p.broker_cpu_s, 2) for name, p in meter.phases.items()},
        **{f"phase_s_{name}": round(p.seconds, 2) for name, p in meter.phases.items()},
        **{f"bench_cpu_s_{name}": round(p.bench_cpu_s, 2) for name, p in meter.phases.items()},
        **{f"machine_cpu_s_{name}": round(p.machine_cpu_s, 2) for name, p in meter.phases.items()},
        "cores": os.cpu_count(),
        "worker_batch": BATCH,
        "worker_within_s": WITHIN,
        "watch_every_s": WATCH_EVERY,
        "reps": args.reps,
        "bench_s": round(time.perf_counter() - bench_started, 1),
    }
    figures["targets_met"] = {
        "worker_vs_floor": figures["worker_vs_floor"] >= TARGET_WORKER_VS_FLOOR,
        "worker_baskets_per_s": figures["worker_baskets_per_s"] >= TARGET_WORKER_BASKETS_PER_S,
        "latency_p99_ms": figures["latency_p99_ms"] < TARGET_P99_MS,
        "restart_s": figures["restart_s"] < TARGET_RESTART_S,
    }
    progress(f"total bench time {figures['bench_s']:.0f} s")
    print_table(figures)
    print(json.dumps(figures))
    return figures


def _verdict(ok: bool) -> str:
    return "[bold green]PASS[/]" if ok else "[bold red]FAIL[/]"


def print_table(f: dict) -> None:
    """The human table, on stdout."""
    console = Console(width=140, force_terminal=False, highlight=False)
    table = Table(title=f"nudge stream bench: The Complete Journey, {f['households']:,} households, "
                  f"{f['events']:,} events ({f['baskets']:,} baskets), {f['partitions']} partitions, one KRaft broker")
    for name, justify in (("measure", "left"), ("figure", "right"), ("broker CPU s", "right"),
                          (f"machine CPU s / wall s ({f['cores']} cores)", "right"), ("target", "right"),
                          ("", "center")):
        table.add_column(name, justify=justify)
    met = f["targets_met"]

    def cpu(phase: str) -> tuple[str, str]:
        """The broker's CPU seconds in a phase, and the machine's against the phase's wall time (all of a phase's
        runs together)."""
        return (f"{f[f'broker_cpu_s_{phase}']:.1f}", f"{f[f'machine_cpu_s_{phase}']:.1f} / {f[f'phase_s_{phase}']:.1f}")

    def row(measure: str, figure: str, phase: str | None = None, target: str = "", ok: bool | None = None) -> None:
        table.add_row(measure, figure, *(cpu(phase) if phase else ("", "")), target,
                      "" if ok is None else _verdict(ok))

    reps, steady, naive_rate = f["reps"], f["worker_steady_events_per_s"], f["worker_vs_naive"]
    row("produce (engine.live.produce), events/s", f"{f['produce_events_per_s']:,.0f}", "produce", "info")
    row(f"(a) bare aiokafka consumer + json.loads, events/s (best of {reps})", f"{f['bare_events_per_s']:,.0f}",
        "bare")
    row(f"(b) + WireDecoder + Step/Ingest in memory (the floor), events/s (best of {reps})",
        f"{f['floor_events_per_s']:,.0f}", "floor")
    row("(c) nudge worker, process start to all offsets saved, events/s", f"{f['worker_events_per_s']:,.0f}",
        "worker")
    row("    baskets/s", f"{f['worker_baskets_per_s']:,.0f}", None, f">= {TARGET_WORKER_BASKETS_PER_S:,}",
        met["worker_baskets_per_s"])
    row("    c / b", f"{f['worker_vs_floor']:.3f}", None, f">= {TARGET_WORKER_VS_FLOOR}", met["worker_vs_floor"])
    row("    first save after s; events/s from then", f"{f['worker_first_save_s']:.2f}; "
        f"{'-' if steady is None else f'{steady:,.0f}'}", None, "info")
    row("    the worker's CPU s / wall s", f"{f['worker_cpu_s']:.1f} / {f['worker_s']:.1f}", None, "info")
    stopped = "" if f["naive_complete"] else f" (stopped at {f['naive_committed']:,} committed)"
    row(f"(d) naive faust agent, a Table write per event, events/s{stopped}", f"{f['naive_events_per_s']:,.0f}",
        "naive", "info")
    row("    Table writes on its changelog per s", f"{f['naive_changelog_writes_per_s']:,.0f}", None, "info")
    row("    c / d", "-" if naive_rate is None else f"{naive_rate:.2f}", None, "info")
    table.add_section()
    row(f"produce -> saved latency at {f['latency_rate_events_per_s']:,.0f}/s, p50 / p90 ms",
        f"{f['latency_p50_ms']:.1f} / {f['latency_p90_ms']:.1f}", "latency")
    row("    p99 ms", f"{f['latency_p99_ms']:.1f}", None, f"< {TARGET_P99_MS:g}", met["latency_p99_ms"])
    row("    max ms; producer ack p50 / p99 ms",
        f"{f['latency_max_ms']:.1f}; {f['ack_p50_ms']:.1f} / {f['ack_p99_ms']:.1f}", None, "info")
    row("restart after SIGKILL: new process to its first save, s", f"{f['restart_s']:.2f}", "restart",
        f"< {TARGET_RESTART_S:g}", met["restart_s"])
    row("    kill to first save; new process to caught up, s",
        f"{f['restart_kill_to_first_s']:.2f}; {f['restart_catch_up_s']:.2f}", None, "info")
    console.print(table)
    notes = [
        f"One run, one broker, {f['cores']} cores shared with other work: the machine's CPU seconds per phase say "
        "how busy it was (at most wall x cores).",
        "(a), (b): an aiokafka consumer in this process' event loop, no group, the worker's 4 MB per-partition "
        "fetch; (c) counts the subprocess' start (imports, group join) in its time.",
        f"Latency: each message's send call to the first read of the worker's checkpoint position past its offset "
        f"(read every {f['watch_every_s'] * 1e3:.0f} ms); the worker batches {f['worker_batch']:,} messages or "
        f"{f['worker_within_s'] * 1e3:.0f} ms.",
        "Restart: SIGKILL while a producer keeps sending; the same named worker started again; its first "
        "checkpoint past the killed one's.",
    ]
    for note in notes:
        console.print(f"- {note}", soft_wrap=True)


if __name__ == "__main__":
    main()
