"""Crash test: a `nudge replay` killed with SIGKILL after some checkpoints resumes from its last
checkpoint and ends in exactly the state, and the stored lines, of an uninterrupted replay."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.db import connect
from engine.models.data import from_stores
from engine.store.checkpoints import CheckpointStore
from engine.store.lines import LineStore

pytestmark = pytest.mark.slow

CJ_RECORDS = 156_649  # 801 household profiles + 155,848 baskets
CJ_PURCHASES = 155_848
CJ_PROFILES = 801
EVERY = 20_000  # ~7 checkpoints over the replay
POLL_SECONDS = 0.05
START_TIMEOUT = 120.0  # loading parquet, then two checkpoints; generous for a loaded machine
RUN_TIMEOUT = 300.0


def _nudge() -> list[str]:
    """The `nudge` console script of this interpreter's environment (`python -m engine.cli` runs nothing)."""
    script = Path(sys.executable).parent / "nudge"
    if script.exists():
        return [str(script)]
    found = shutil.which("nudge")
    if found is None:
        pytest.fail("the `nudge` console script is not installed next to the interpreter nor on PATH")
    return [found]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUDGE_")}
    env["NUDGE_HOME"] = str(home)
    return env


def _command(*extra: str) -> list[str]:
    return [*_nudge(), "replay", "--source", "cj", "--checkpoint-every", str(EVERY), *extra]


def _checkpoint(db: Path) -> tuple[int, bool] | None:
    """(position, complete) of the cj checkpoint, or None while there is none (or the DB is busy)."""
    if not db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
        try:
            row = conn.execute("SELECT position, complete FROM checkpoint WHERE source = 'cj'").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return None
    return None if row is None else (int(row[0]), bool(row[1]))


def _run_json(home: Path, cwd: Path) -> dict:
    done = subprocess.run(_command("--json"), env=_env(home), cwd=cwd, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, f"nudge replay failed ({done.returncode}):\n{done.stderr}"
    return json.loads(done.stdout)


def _kill_after_two_checkpoints(home: Path, cwd: Path) -> list[int]:
    """Start a replay, SIGKILL it once two checkpoints are written; the positions seen, in order."""
    db = home / "nudge.db"
    proc = subprocess.Popen(_command(), env=_env(home), cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    seen: list[int] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            cp = _checkpoint(db)
            if cp is not None:
                position, complete = cp
                if complete:
                    pytest.fail(f"the replay completed before it could be killed (checkpoints seen: {seen}); "
                                "lower --checkpoint-every or poll faster")
                if not seen or position != seen[-1]:
                    seen.append(position)
                if len(seen) >= 2 and position >= 2 * EVERY:
                    break
            if proc.poll() is not None:
                pytest.fail(f"the replay exited ({proc.returncode}) before two checkpoints were seen "
                            f"(checkpoints seen: {seen}):\n{proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"no two checkpoints within {START_TIMEOUT:.0f} s (checkpoints seen: {seen})")
            time.sleep(POLL_SECONDS)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, (
        f"the replay was not killed by SIGKILL: it exited with {proc.returncode} (it probably finished first)")
    return seen


def test_killed_replay_resumes_to_the_same_state_and_lines(tmp_path):
    crashed, clean = tmp_path / "a", tmp_path / "b"
    crashed.mkdir()
    clean.mkdir()

    seen = _kill_after_two_checkpoints(crashed, tmp_path)
    after_kill = _checkpoint(crashed / "nudge.db")
    assert after_kill is not None
    killed_at, complete = after_kill
    assert not complete, "the replay completed before it was killed: the crash test proved nothing"
    assert 2 * EVERY <= killed_at < CJ_RECORDS, f"killed at position {killed_at} (checkpoints seen: {seen})"

    # Run again from the crashed home, and in parallel an uninterrupted replay into a fresh home.
    reference = subprocess.Popen(_command("--json"), env=_env(clean), cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        resumed = _run_json(crashed, tmp_path)
        out, errors = reference.communicate(timeout=RUN_TIMEOUT)
    finally:
        if reference.poll() is None:
            reference.kill()
            reference.communicate()
    assert reference.returncode == 0, f"the uninterrupted replay failed ({reference.returncode}):\n{errors}"
    full = json.loads(out)

    assert full["resumed_from"] == 0
    assert full["records"] == CJ_RECORDS
    assert resumed["resumed_from"] == killed_at > 0
    assert resumed["records"] == CJ_RECORDS - killed_at < CJ_RECORDS
    assert resumed["position"] == full["position"] == CJ_RECORDS
    assert resumed["dead_letters"] == full["dead_letters"] == 0
    assert resumed["customers"] == full["customers"]
    # The cumulative counters of the two paths agree: nothing counted twice, nothing lost.
    assert resumed["total"] == full["total"]
    assert full["total"]["purchases"] == CJ_PURCHASES
    assert full["total"]["profiles"] == CJ_PROFILES
    assert resumed["watermark"] == full["watermark"]

    store_a = CheckpointStore(connect(f"sqlite:///{crashed / 'nudge.db'}"))
    store_b = CheckpointStore(connect(f"sqlite:///{clean / 'nudge.db'}"))
    states_a, states_b = store_a.load_states(), store_b.load_states()
    assert len(states_a) == len(states_b) == 2_469
    assert states_a.keys() == states_b.keys()
    differing = sorted(cid for cid in states_a if states_a[cid] != states_b[cid])
    assert not differing, f"{len(differing)} customer state(s) differ, e.g. {differing[:5]}"
    assert states_a == states_b

    profiles_a, profiles_b = store_a.load_profiles(), store_b.load_profiles()
    assert len(profiles_a) == CJ_PROFILES
    assert profiles_a == profiles_b

    cp_a, cp_b = store_a.load("cj"), store_b.load("cj")
    assert cp_a == cp_b
    assert cp_a.complete

    # The line store holds each accepted purchase once, in the order accepted: the parts written after the
    # last checkpoint before the kill were discarded and written again.
    lines_a = LineStore(crashed / "lines", store_a.engine)
    lines_b = LineStore(clean / "lines", store_b.engine)
    table_a, table_b = lines_a.read(), lines_b.read()
    assert table_a.num_rows == table_b.num_rows == CJ_PURCHASES
    assert table_a.equals(table_b)
    assert sorted(p.name for p in (crashed / "lines").iterdir()) == [lines_a.path(s).name for s in lines_a.committed()]
    data_a, data_b = from_stores(store_a, lines_a)[0], from_stores(store_b, lines_b)[0]
    assert data_a.data_hash == data_b.data_hash
    assert len(data_a.lines) == 1_469_307
