"""The running set on a real SQLite file: reload by content, last good version kept, retire, pause, audit."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from engine.campaigns.running import CampaignSet
from engine.db import connect
from engine.errors import CampaignError
from tests.campaigns.conftest import CAMPAIGNS

T0 = datetime(2017, 3, 1, 6, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "campaigns"
    path.mkdir()
    for name in ("cj_repurchase_coupon.yaml", "cj_winback.yaml"):
        shutil.copy(CAMPAIGNS / name, path / name)
    return path


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return connect(f"sqlite:///{tmp_path / 'nudge.db'}")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_load_then_unchanged_files_are_not_reread(folder: Path, templates: Path, engine: Engine) -> None:
    cs = CampaignSet(folder, templates, engine)
    result = cs.reload(T0)
    assert sorted(result.loaded) == ["cj_repurchase_coupon", "cj_winback"] and result.changes
    assert sorted(cs.campaigns) == ["cj_repurchase_coupon", "cj_winback"] and cs.errors == {}
    assert [(e.campaign, e.action, e.hash, e.at) for e in cs.audit()] == [
        ("cj_repurchase_coupon", "loaded", sha(folder / "cj_repurchase_coupon.yaml"), T0),
        ("cj_winback", "loaded", sha(folder / "cj_winback.yaml"), T0)]
    again = cs.reload(T0 + timedelta(minutes=1))
    assert not again.changes and not again.rejected and len(cs.audit()) == 2


def test_a_bad_file_is_rejected_and_its_last_good_version_keeps_running(folder: Path, templates: Path,
                                                                        engine: Engine) -> None:
    cs = CampaignSet(folder, templates, engine)
    cs.reload(T0)
    path = folder / "cj_winback.yaml"
    edit(path, "priority: 5 ", "priority: urgent ")
    result = cs.reload(T0 + timedelta(hours=1), by="watcher")
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith("priority:"))
    expected = (f"{path}:{line}: priority: input should be a valid integer, unable to parse string as an integer "
                f"(got 'urgent')")
    assert result.rejected == {"cj_winback": expected} and cs.errors == {"cj_winback": expected}
    assert cs.campaigns["cj_winback"].priority == 5  # the last good version runs on
    rejected = cs.audit("cj_winback")[-1]
    assert (rejected.action, rejected.by, rejected.hash, rejected.detail) == ("rejected", "watcher", sha(path),
                                                                             expected)
    assert not cs.reload(T0 + timedelta(hours=2)).rejected  # the same bad content is reported once

    # A restart while the file is still bad: the last good version comes back from the database.
    restarted = CampaignSet(folder, templates, engine)
    assert restarted.campaigns["cj_winback"].priority == 5
    assert restarted.reload(T0 + timedelta(hours=3)).rejected == {"cj_winback": expected}
    assert restarted.campaigns["cj_winback"].priority == 5

    edit(path, "priority: urgent ", "priority: 6 ")
    fixed = restarted.reload(T0 + timedelta(hours=4))
    assert fixed.changed == ["cj_winback"] and restarted.errors == {}
    assert restarted.campaigns["cj_winback"].priority == 6
    changed = restarted.audit("cj_winback")[-1]
    assert changed.action == "changed" and changed.hash == sha(path) and changed.at == T0 + timedelta(hours=4)
    assert CampaignSet(folder, templates, engine).campaigns["cj_winback"].priority == 6


def test_a_missing_template_rejects_the_change(folder: Path, templates: Path, engine: Engine) -> None:
    cs = CampaignSet(folder, templates, engine)
    cs.reload(T0)
    edit(folder / "cj_winback.yaml", "template: cj_winback", "template: cj_winback_v2")
    result = cs.reload(T0 + timedelta(hours=1))
    assert "template: " in result.rejected["cj_winback"] and "cj_winback_v2.en.j2 does not exist" in \
        result.rejected["cj_winback"]
    assert cs.campaigns["cj_winback"].template == "cj_winback"


def test_a_deleted_file_retires_its_campaign_and_a_new_one_loads(folder: Path, templates: Path,
                                                                  engine: Engine) -> None:
    cs = CampaignSet(folder, templates, engine)
    cs.reload(T0)
    gone = sha(folder / "cj_winback.yaml")
    (folder / "cj_winback.yaml").unlink()
    shutil.copy(CAMPAIGNS / "cj_stamp_mission.yaml", folder / "cj_stamp_mission.yaml")
    result = cs.reload(T0 + timedelta(days=1))
    assert result.retired == ["cj_winback"] and result.loaded == ["cj_stamp_mission"]
    assert sorted(cs.campaigns) == ["cj_repurchase_coupon", "cj_stamp_mission"]
    retired = [e for e in cs.audit() if e.action == "retired"]
    assert [(e.campaign, e.hash) for e in retired] == [("cj_winback", gone)]
    assert sorted(CampaignSet(folder, templates, engine).campaigns) == ["cj_repurchase_coupon", "cj_stamp_mission"]


def test_another_folders_set_is_its_own(folder: Path, templates: Path, engine: Engine, tmp_path: Path) -> None:
    CampaignSet(folder, templates, engine).reload(T0)
    other = tmp_path / "lpoint"
    other.mkdir()
    shutil.copy(CAMPAIGNS / "lpoint" / "lpoint_stamp_mission.yaml", other / "lpoint_stamp_mission.yaml")
    lp = CampaignSet(other, templates, engine)
    assert lp.campaigns == {}
    assert lp.reload(T0).loaded == ["lpoint_stamp_mission"] and lp.reload(T0).retired == []
    assert sorted(CampaignSet(folder, templates, engine).campaigns) == ["cj_repurchase_coupon", "cj_winback"]


def test_pause_and_resume_are_kept_in_the_database_and_audited(folder: Path, templates: Path,
                                                              engine: Engine) -> None:
    engine_side = CampaignSet(folder, templates, engine)
    engine_side.reload(T0)
    operator = CampaignSet(folder, templates, engine)  # as `nudge campaigns pause` would, beside the engine
    assert engine_side.paused() == frozenset() and not engine_side.is_paused("cj_winback")
    assert operator.pause("cj_winback", "ops:kim", "wrong discount in the text", T0 + timedelta(hours=1))
    assert engine_side.is_paused("cj_winback") and engine_side.paused() == {"cj_winback"}
    assert not operator.pause("cj_winback", "ops:kim", "again", T0 + timedelta(hours=2))  # already paused
    assert operator.resume("cj_winback", "ops:lee", T0 + timedelta(hours=3))
    assert not engine_side.is_paused("cj_winback") and not operator.resume("cj_winback", "ops:lee", T0)
    trail = [(e.action, e.by, e.detail, e.at) for e in engine_side.audit("cj_winback")]
    assert trail == [("loaded", "engine", "", T0),
                     ("paused", "ops:kim", "wrong discount in the text", T0 + timedelta(hours=1)),
                     ("resumed", "ops:lee", "", T0 + timedelta(hours=3))]
    assert engine_side.audit("cj_winback")[1].hash == sha(folder / "cj_winback.yaml")


def test_pausing_needs_a_known_campaign_and_a_reason(folder: Path, templates: Path, engine: Engine) -> None:
    cs = CampaignSet(folder, templates, engine)  # never reloaded: a file in the folder is enough to pause it
    assert cs.pause("cj_winback", "ops", "before launch", T0)
    with pytest.raises(CampaignError, match=r"campaign 'cj_winbak': no such campaign in .*cj_winback"):
        cs.pause("cj_winbak", "ops", "typo", T0)
    with pytest.raises(CampaignError, match="needs a reason"):
        cs.pause("cj_repurchase_coupon", "ops", "  ", T0)
    assert cs.paused() == {"cj_winback"}
