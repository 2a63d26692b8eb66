"""A real PostgreSQL server for the shared-store tests: started once per session in a folder of its own (installed
with apt-get first when its binaries are missing and we are root), a fresh database per test, stopped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from engine.db import connect
from engine.live.postgres import PostgresServer, install_if_missing


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


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """The engine's tables in the test's own database."""
    engine = connect(pg_url)
    yield engine
    engine.dispose()
