"""A real single-node Kafka broker (KRaft, broker and controller in one JVM) for tests and local demos.

The jars come from Maven Central once, at set-up (`fetch_jars`, `make kafka-jars`); nothing downloads when a
broker starts. `python -m engine.live.broker fetch|start|stop --dir DIR` is the Makefile's entry.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import structlog

from engine import logs
from engine.errors import NudgeError

log = structlog.get_logger("nudge.live.broker")

ROOT = Path(__file__).resolve().parents[2]
POM = ROOT / "tools" / "kafka" / "pom.xml"
CACHE = ROOT / ".cache" / "kafka"
HEAP = "512m"
STATE_FILE = "broker.json"  # what `start --dir` leaves for `stop --dir`

LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
"""

SERVER = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
"""


def fetch_jars(cache: Path = CACHE, pom: Path = POM) -> Path:
    """The folder of the broker's jars under `cache`, running Maven only when they are missing or stale."""
    jars = cache / "jars"
    stamp = hashlib.sha256(pom.read_bytes()).hexdigest()  # a changed pom (a new version) fetches again
    mark = jars / ".fetched"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "fetch.lock", "w") as lock:  # a test run and `make kafka-jars` may fetch at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mark.is_file() and mark.read_text() == stamp:
            return jars
        partial = cache / "jars.partial"  # never a mix of two versions' jars in `jars`
        shutil.rmtree(partial, ignore_errors=True)
        command = ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies",
                   "-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError:
            raise NudgeError("mvn is not installed: the Kafka broker's jars are fetched with Maven "
                             f"({' '.join(command)})") from None
        if done.returncode != 0:
            raise NudgeError(f"fetching the Kafka broker's jars failed (exit {done.returncode}): {' '.join(command)}\n"
                             + _tail(done.stdout + done.stderr))
        (partial / ".fetched").write_text(stamp)
        shutil.rmtree(jars, ignore_errors=True)
        partial.rename(jars)
    return jars


class KafkaBroker:
    """One broker+controller JVM on 127.0.0.1, its configs, logs and data in `folder`; a context manager.

    `port` None picks a free one. A folder whose storage is already formatted keeps its topics across restarts.
    `detach` starts the JVM in its own session, so it outlives this process (the CLI's `start`).
    """

    def __init__(self, folder: Path, jars: Path, port: int | None = None, heap: str = HEAP,
                 timeout: float = 60.0, detach: bool = False) -> None:
        self.folder, self.jars, self.port, self.heap = Path(folder), Path(jars), port, heap
        self.timeout, self.detach = timeout, detach
        self.controller_port: int | None = None
        self._process: subprocess.Popen | None = None
        self._admin = None

    @property
    def bootstrap(self) -> str:
        """The address clients connect to, "127.0.0.1:PORT"."""
        if self.port is None:
            raise NudgeError("the Kafka broker has not been started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        """The broker's stdout and stderr."""
        return self.folder / "broker.log"

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Write the configs, format the storage if new, start the JVM and wait until it answers metadata."""
        java = shutil.which("java")
        if java is None:
            raise NudgeError("java is not on PATH: the Kafka broker needs Java 17 or later")
        if not any(self.jars.glob("kafka_*.jar")):
            raise NudgeError(f"{self.jars}: no Kafka jars; fetch them first (python -m engine.live.broker fetch)")
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.port is None:
            self.port, self.controller_port = free_ports(2)
        else:
            _check_free(self.port)
            (self.controller_port,) = free_ports(1)
        data = self.folder / "data"
        server = self.folder / "server.properties"
        server.write_text(SERVER.format(port=self.port, controller=self.controller_port, data=data))
        log4j = self.folder / "log4j.properties"
        log4j.write_text(LOG4J)
        classpath = ["-cp", f"{self.jars}/*"]
        jvm = [java, f"-Xmx{self.heap}", "-Djava.awt.headless=true", f"-Dlog4j.configuration=file:{log4j}"]
        with open(self.log_path, "ab") as out:  # the JVM holds its own copy of the descriptor
            if not (data / "meta.properties").is_file():
                formatted = subprocess.run([*jvm, *classpath, "kafka.tools.StorageTool", "format", "-t",
                                            _cluster_id(), "-c", str(server)], stdout=out, stderr=subprocess.STDOUT)
                if formatted.returncode != 0:
                    raise NudgeError(f"formatting the Kafka storage in {data} failed (exit {formatted.returncode}); "
                                     f"the end of {self.log_path}:\n{self._log_tail()}")
            began = time.monotonic()
            self._process = subprocess.Popen([*jvm, *classpath, "kafka.Kafka", str(server)], stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=self.detach)
        try:
            self._wait_ready(began + self.timeout)
        except BaseException:
            self.stop()
            raise
        log.info("broker.started", bootstrap=self.bootstrap, pid=self.pid, seconds=round(time.monotonic() - began, 2))

    def _wait_ready(self, deadline: float) -> None:
        # A TCP connect first: an admin client polling a closed port blocks for seconds on each try.
        from kafka.admin import KafkaAdminClient

        while True:
            self._check_running()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                self._check_time(deadline, "accept connections")
                time.sleep(0.1)
        last = "no answer"
        while True:
            self._check_running()
            try:
                if self._admin is None:
                    self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="nudge-broker",
                                                   request_timeout_ms=5_000)
                if self._admin.describe_cluster()["brokers"]:  # empty while the broker is still fenced
                    return
                last = "no unfenced broker in the cluster yet"
            except Exception as exc:  # any client error here means "not yet"; the deadline bounds the wait
                last = f"{type(exc).__name__}: {exc}"
            self._check_time(deadline, f"answer a metadata request ({last})")
            time.sleep(0.2)

    def _check_running(self) -> None:
        code = self._process.poll() if self._process is not None else None
        if code is not None:
            raise NudgeError(f"the Kafka broker exited (code {code}) before it was ready; the end of "
                             f"{self.log_path}:\n{self._log_tail()}")

    def _check_time(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise NudgeError(f"the Kafka broker did not {what} within {self.timeout:.0f} s; the end of "
                             f"{self.log_path}:\n{self._log_tail()}")

    def create_topic(self, name: str, partitions: int = 4) -> None:
        """Create the topic (replication 1) and wait until every partition has a leader; an existing topic of
        that many partitions is left as it is."""
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        if self._admin is None:
            raise NudgeError("the Kafka broker has not been started")
        try:
            self._admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            (found,) = self._admin.describe_topics([name])
            if len(found["partitions"]) != partitions:
                raise NudgeError(f"topic {name} exists with {len(found['partitions'])} partitions, "
                                 f"not {partitions}") from None
        self._admin.wait_for_topics([name], timeout_ms=30_000)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the process is always reaped."""
        admin, self._admin = self._admin, None
        try:
            if admin is not None:
                admin.close()
        finally:
            self._reap(timeout)

    def _reap(self, timeout: float) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("broker.killed", pid=self._process.pid, after_seconds=timeout)
                    self._process.kill()
                    self._process.wait()
            self._process = None

    def _log_tail(self) -> str:
        return _tail(self.log_path.read_text(errors="replace")) if self.log_path.is_file() else "(no log)"


def free_ports(count: int) -> list[int]:
    """Loopback ports free now (held open together, so they are distinct)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def _check_free(port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise NudgeError(f"127.0.0.1:{port} is in use ({exc.strerror}): stop what listens there or pick "
                             "another port") from None


def _cluster_id() -> str:
    # Kafka's Uuid text: 16 random bytes, URL-safe base64 without padding; one starting "-" reads as an option.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for a parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def stop_pid(pid: int, server: Path, timeout: float = 10.0) -> bool:
    """Stop a detached broker by pid: SIGTERM, then SIGKILL; False when it was not running. The command line must
    name `server`, so a reused pid is never signalled."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return False
    if str(server).encode() not in command or not alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        log.warning("broker.killed", pid=pid, after_seconds=timeout)
        os.kill(pid, signal.SIGKILL)
        while alive(pid):
            time.sleep(0.05)
    return True


def _start(folder: Path, cache: Path, port: int, topics: list[str], partitions: int) -> str:
    state = folder / STATE_FILE
    if state.is_file():
        known = json.loads(state.read_text())
        if alive(known["pid"]):
            return f"already running: {known['bootstrap']} (pid {known['pid']})"
    broker = KafkaBroker(folder, fetch_jars(cache), port=port, detach=True)
    broker.start()
    try:
        for topic in topics:
            broker.create_topic(topic, partitions)
    except BaseException:
        broker.stop()
        raise
    state.write_text(json.dumps({"bootstrap": broker.bootstrap, "pid": broker.pid,
                                 "server": str(folder / "server.properties"), "log": str(broker.log_path)}))
    return f"running: {broker.bootstrap} (pid {broker.pid}), log {broker.log_path}"


def _stop(folder: Path) -> str:
    state = folder / STATE_FILE
    if not state.is_file():
        return f"not running: no {state}"
    known = json.loads(state.read_text())
    stopped = stop_pid(known["pid"], Path(known["server"]))
    state.unlink()
    return f"stopped pid {known['pid']}" if stopped else f"not running (pid {known['pid']} was gone)"


def main(argv: list[str] | None = None) -> int:
    """`fetch`, `start` or `stop`; prints one line, exits 2 with the reason on an error."""
    parser = argparse.ArgumentParser(prog="python -m engine.live.broker", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("fetch", "start", "stop"))
    parser.add_argument("--dir", type=Path, default=CACHE / "broker", help="the broker's configs, log and data")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the jars are kept")
    parser.add_argument("--port", type=int, default=9092, help="the broker's port (start)")
    parser.add_argument("--topic", action="append", help="a topic to create (start; default: purchases and "
                        "purchases.deadletter)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each topic created")
    args = parser.parse_args(argv)
    logs.configure("WARNING")  # the one line printed says what happened
    try:
        if args.action == "fetch":
            print(f"jars: {fetch_jars(args.cache)}")
        elif args.action == "start":
            topics = args.topic or ["purchases", "purchases.deadletter"]
            print(_start(args.dir.resolve(), args.cache, args.port, topics, args.partitions))
        else:
            print(_stop(args.dir.resolve()))
    except NudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
