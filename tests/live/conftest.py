"""A real single-node KRaft broker for the live-path tests: Apache Kafka's own jars (fetched once by Maven into
`.cache/kafka/jars`), started on free loopback ports in the session's temporary folder, stopped after."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JARS = ROOT / ".cache" / "kafka" / "jars"
LOG4J = """log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch_jars() -> Path:
    """The broker's jars, resolved by Maven from tools/kafka/pom.xml the first time."""
    if not (JARS.is_dir() and any(JARS.glob("kafka_2.13-*.jar"))):
        subprocess.run(["mvn", "-q", "-f", str(ROOT / "tools" / "kafka" / "pom.xml"),
                        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={JARS}"],
                       check=True)
    return JARS


class Broker:
    """One broker+controller process on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port, controller = _free_port(), _free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        (folder / "log4j.properties").write_text(LOG4J)
        (folder / "server.properties").write_text("\n".join([
            "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://{self.bootstrap}", "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT", f"log.dirs={folder / 'data'}",
            "offsets.topic.replication.factor=1", "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1", "group.initial.rebalance.delay.ms=0", "num.partitions=4",
            "auto.create.topics.enable=false", ""]))
        self.proc: subprocess.Popen | None = None

    def start(self, jars: Path) -> None:
        java = ["java", "-Xmx512m", f"-Dlog4j.configuration=file:{self.folder / 'log4j.properties'}",
                "-cp", f"{jars}/*"]
        subprocess.run([*java, "kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22].ljust(22, "A"),
                        "-c", str(self.folder / "server.properties")], check=True, capture_output=True)
        log = (self.folder / "broker.log").open("w")
        self.proc = subprocess.Popen([*java, "kafka.Kafka", str(self.folder / "server.properties")], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a TCP connect first: an admin client on a closed port blocks
            if self.proc.poll() is not None:
                raise RuntimeError(f"the broker exited: {(self.folder / 'broker.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.2)
        self.topics()  # then one metadata call

    def topics(self) -> set[str]:
        from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=30_000)
        try:
            return set(admin.list_topics())
        finally:
            admin.close()

    def create_topic(self, name: str, partitions: int) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[Broker]:
    broker = Broker(tmp_path_factory.mktemp("kafka"))
    broker.start(fetch_jars())
    try:
        yield broker
    finally:
        broker.stop()
