"""What the browser tests share: the served app, the engine home under it, the read token, and where screenshots go
(test-artifacts/browser/, kept after the run and ignored by git)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from engine.config import Settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
READ_TOKEN = "browser-test-read-token"


@dataclass(frozen=True)
class Home:
    """An engine home and the ids of the customers replayed into it, in id order."""

    settings: Settings
    customers: list[str]


@dataclass(frozen=True)
class Served:
    """The app at `url` over `home`, and a client that reads its API with the read token."""

    url: str
    home: Home
    api: httpx.Client


def screenshot(page, name: str) -> Path:
    """Keep a full-page screenshot as test-artifacts/browser/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
