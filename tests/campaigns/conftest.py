"""Campaign test fixtures: the example campaigns and a templates folder they check against."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.campaigns.files import campaign_files, load_campaign, template_path

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = ROOT / "campaigns"
EXAMPLE_DIRS = (CAMPAIGNS, CAMPAIGNS / "lpoint")
TEMPLATES = ROOT / "templates"


def example_files() -> list[Path]:
    """Every example campaign file."""
    return [path for folder in EXAMPLE_DIRS for path in campaign_files(folder)]


def real_templates_present() -> bool:
    """Whether templates/ holds every example's template (delivery's files, there once merged)."""
    return all(template_path(TEMPLATES, load_campaign(p)).is_file() for p in example_files())


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """The real templates/ when delivery's templates are there; before the merge, empty stand-ins with the
    examples' names (template content is delivery's check, skipped until then)."""
    if real_templates_present():
        return TEMPLATES
    folder = tmp_path / "templates"
    folder.mkdir()
    for path in example_files():
        template_path(folder, load_campaign(path)).write_text("stand-in\n", encoding="utf-8")
    return folder
