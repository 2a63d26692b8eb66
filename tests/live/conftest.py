"""A real Kafka broker for the session: the jars are fetched into the repo's .cache/kafka once, at set-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.live.broker import CACHE, KafkaBroker, fetch_jars


@pytest.fixture(scope="session")
def kafka_jars() -> Path:
    """The broker's jars (Maven runs only the first time)."""
    return fetch_jars(CACHE)


@pytest.fixture(scope="session")
def kafka_broker(kafka_jars: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One single-node broker on free loopback ports, stopped at the end of the session."""
    with KafkaBroker(tmp_path_factory.mktemp("kafka"), kafka_jars) as broker:
        yield broker
