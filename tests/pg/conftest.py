"""The engine's tables in a fresh PostgreSQL database per test (the server: `postgres` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from engine.db import connect


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """The engine's tables in the test's own database."""
    engine = connect(pg_url)
    yield engine
    engine.dispose()
