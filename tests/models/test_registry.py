"""The registry keeps fitted versions on disk; the manifest names the one serving, and switching is atomic."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import ConfigError, NudgeError
from engine.models.data import TrainingData, collect
from engine.models.registry import META_SCHEMA, Registry
from engine.sources.completejourney import CompleteJourneySource

SPLIT = datetime(2017, 10, 1, tzinfo=UTC)


class TopProducts:
    """The `n` products with the most lines: a small real model, fitted on Complete Journey lines."""

    name: ClassVar[str] = "top_products"

    def __init__(self, n: int = 10) -> None:
        self.n = n

    def fit(self, data: TrainingData) -> Self:
        """Count lines per product; keep the `n` most bought."""
        counts = Counter(data.lines["product_id"].astype(str))
        self.top_ = [pid for pid, _ in counts.most_common(self.n)]
        covered = sum(counts[pid] for pid in self.top_)
        self.metrics_ = {"share_top": covered / max(1, sum(counts.values())), "n_products": float(len(counts))}
        return self

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {"n": self.n}



@pytest.fixture(scope="module")
def train(cj_tables: dict, cj_households: set[int]) -> TrainingData:
    """A dozen real households, fitted before the evaluation split."""
    return collect(CompleteJourneySource(households=cj_households, tables=cj_tables), until=SPLIT)[0]


def manifest(root: Path, name: str = "top_products") -> dict:
    return json.loads((root / name / "manifest.json").read_text())


def test_publish_stores_artifact_params_watermark_hash_metrics(tmp_path: Path, train: TrainingData) -> None:
    registry = Registry(tmp_path)
    model = TopProducts(n=5).fit(train)
    version = registry.publish(model, train, fit_seconds=0.25)
    assert version.version == "v0001" and version.active and version.rejected is None
    meta = json.loads((tmp_path / "top_products" / "v0001" / "meta.json").read_text())
    assert meta["params"] == {"n": 5}
    assert datetime.fromisoformat(meta["watermark"]) == SPLIT
    assert meta["data_hash"] == train.data_hash
    assert meta["metrics"] == pytest.approx(model.metrics_)
    assert datetime.fromisoformat(meta["created"]).tzinfo is not None and meta["fit_seconds"] == 0.25
    assert manifest(tmp_path)["active"] == "v0001"
    # A fresh registry (another process) loads the same fitted object from disk.
    served = Registry(tmp_path).active("top_products")
    assert served.top_ == model.top_ and len(served.top_) == 5
    assert served.top_[0] == train.lines["product_id"].astype(str).value_counts().index[0]


def test_activate_and_rollback(tmp_path: Path, train: TrainingData) -> None:
    registry = Registry(tmp_path)
    for n in (3, 5, 7):
        registry.publish(TopProducts(n).fit(train), train)
    assert [v.version for v in registry.list("top_products")] == ["v0001", "v0002", "v0003"]
    assert len(registry.active("top_products").top_) == 7

    assert registry.rollback("top_products").version == "v0002"
    assert len(registry.active("top_products").top_) == 5
    assert registry.rollback("top_products").version == "v0001"
    with pytest.raises(NudgeError, match="no earlier version"):
        registry.rollback("top_products")
    assert manifest(tmp_path)["active"] == "v0001"  # a refused rollback changes nothing

    registry.activate("top_products", "v0003")
    assert [v.version for v in registry.list("top_products") if v.active] == ["v0003"]
    assert registry.rollback("top_products").version == "v0001"  # back to what served before the activate
    with pytest.raises(NudgeError, match=r"no version 'v0009'.*v0001"):
        registry.activate("top_products", "v0009")
    with pytest.raises(NudgeError, match="no model 'nope'"):
        registry.activate("nope", "v0001")
    events = [h["event"] for h in registry.history("top_products")]
    assert events == ["published"] * 3 + ["rollback", "rollback", "activated", "rollback"]


def test_keeps_the_last_n_versions(tmp_path: Path, train: TrainingData) -> None:
    registry = Registry(tmp_path, keep=3)
    for n in range(1, 6):
        registry.publish(TopProducts(n).fit(train), train)
    assert [v.version for v in registry.list("top_products")] == ["v0003", "v0004", "v0005"]
    assert sorted(p.name for p in (tmp_path / "top_products").iterdir() if p.name.startswith("v")) == [
        "v0003", "v0004", "v0005"]
    assert registry.rollback("top_products").version == "v0004"
    assert registry.rollback("top_products").version == "v0003"
    with pytest.raises(NudgeError, match="no earlier version"):  # v0001/v0002 were pruned, not silently served
        registry.rollback("top_products")
    # Numbers are never reused after pruning, so a version label always means one fit.
    assert registry.publish(TopProducts(9).fit(train), train).version == "v0006"
    pruned = [h["removed"] for h in registry.history("top_products") if h["event"] == "pruned"]
    assert [label for batch in pruned for label in batch] == ["v0001", "v0002", "v0003"]
    with pytest.raises(ConfigError, match="keep"):
        Registry(tmp_path, keep=0)


def test_manifest_switch_is_atomic_for_a_concurrent_reader(tmp_path: Path, train: TrainingData) -> None:
    registry = Registry(tmp_path, keep=4)
    registry.publish(TopProducts(2).fit(train), train)
    fitted = [TopProducts(n).fit(train) for n in range(3, 9)]
    seen: list[str] = []
    problems: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                active = manifest(tmp_path)["active"]
            except (json.JSONDecodeError, FileNotFoundError) as exc:
                problems.append(repr(exc))
                continue
            folder = tmp_path / "top_products" / active
            # The active version may be pruned only after the manifest moved on; check what it names now.
            if not (folder / "meta.json").is_file() and manifest(tmp_path)["active"] == active:
                problems.append(f"manifest names {active} but it is not on disk")
            seen.append(active)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for model in fitted:
            registry.publish(model, train)
            registry.rollback("top_products")
            registry.activate("top_products", registry.list("top_products")[-1].version)
    finally:
        done.set()
        reader.join()
    assert problems == [] and len(seen) > 10
    assert manifest(tmp_path)["active"] == "v0007"
    leftovers = [p.name for p in (tmp_path / "top_products").iterdir() if p.name.startswith(".") and p.name != ".lock"]
    assert leftovers == []


class Unpicklable(TopProducts):
    """Holds a lock after fitting (as a model holding a connection would), so its artifact cannot be written."""

    def fit(self, data: TrainingData) -> Self:
        """Fit, then keep something pickle refuses."""
        super().fit(data)
        self.guard_ = threading.Lock()
        return self


class Scored(TopProducts):
    """Keeps a lambda, as lifetimes' fitters do: the artifact must still round-trip."""

    def fit(self, data: TrainingData) -> Self:
        """Fit, then keep a scoring closure."""
        super().fit(data)
        top = set(self.top_)
        self.score_ = lambda pid: float(pid in top)
        return self


def test_a_failed_write_leaves_the_active_version_serving(tmp_path: Path, train: TrainingData) -> None:
    registry = Registry(tmp_path)
    registry.publish(TopProducts(4).fit(train), train)
    with pytest.raises(TypeError, match=r"cannot pickle '_thread.lock'"):
        registry.publish(Unpicklable(6).fit(train), train)
    assert manifest(tmp_path)["active"] == "v0001"
    assert sorted(p.name for p in (tmp_path / "top_products").iterdir()) == [
        ".lock", "history.jsonl", "manifest.json", "v0001"]  # no half-written version folder
    assert len(registry.active("top_products").top_) == 4
    scored = registry.publish(Scored(4).fit(train), train)
    loaded = Registry(tmp_path).load("top_products", scored.version)
    assert loaded.score_(loaded.top_[0]) == 1.0 and loaded.score_("no such product") == 0.0


def test_guard_rejects_poor_metrics_and_records_why(tmp_path: Path, train: TrainingData) -> None:
    registry = Registry(tmp_path)
    good = TopProducts(10).fit(train)
    assert registry.publish(good, train, guard={"share_top": 0.01}).version == "v0001"
    poor = TopProducts(1).fit(train)
    assert poor.metrics_["share_top"] < good.metrics_["share_top"]
    rejected = registry.publish(poor, train, guard={"share_top": good.metrics_["share_top"]})
    assert rejected.rejected is not None and "share_top=" in rejected.rejected and rejected.version == ""
    missing = registry.publish(poor, train, guard={"recall10_product": 0.4})
    assert missing.rejected == "recall10_product missing (guard >= 0.4)"
    by_callable = registry.publish(poor, train, guard=lambda m: None if m["n_products"] > 1e6 else "too few products")
    assert by_callable.rejected == "too few products"
    assert registry.publish(good, train, guard=lambda m: True).version == "v0002"  # a passing callable

    assert [v.version for v in registry.list("top_products")] == ["v0001", "v0002"]
    rejections = [h for h in registry.history("top_products") if h["event"] == "rejected"]
    assert [r["reason"] for r in rejections][1:] == ["recall10_product missing (guard >= 0.4)", "too few products"]
    assert all(r["active"] == "v0001" and r["metrics"]["share_top"] == pytest.approx(poor.metrics_["share_top"])
               and r["data_hash"] == train.data_hash for r in rejections)


def test_names_must_be_folder_names(tmp_path: Path, train: TrainingData) -> None:
    class Escaping(TopProducts):
        name: ClassVar[str] = "../outside"

    with pytest.raises(ConfigError, match=r"model name '\.\./outside'"):
        Registry(tmp_path / "models").publish(Escaping(2).fit(train), train)
    assert not (tmp_path / "outside").exists()


def test_cli_models_list_activate_rollback(tmp_path: Path, train: TrainingData) -> None:
    root = tmp_path / "models"
    registry = Registry(root)
    for n in (3, 6):
        registry.publish(TopProducts(n).fit(train), train)
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--models-dir", str(root), "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["version"], r["active"], r["params"]["n"]) for r in rows] == [("v0001", False, 3), ("v0002", True, 6)]
    assert rows[0]["watermark"] == SPLIT.isoformat() and rows[0]["data_hash"] == train.data_hash

    table = runner.invoke(app, ["models", "list", "top_products", "--models-dir", str(root)])
    assert table.exit_code == 0 and "v0002" in table.stdout and "share_top=" in table.stdout

    rolled = runner.invoke(app, ["models", "rollback", "top_products", "--models-dir", str(root)])
    assert rolled.exit_code == 0 and "rolled back to v0001" in rolled.stdout
    assert Registry(root).active_version("top_products").version == "v0001"
    activated = runner.invoke(app, ["models", "activate", "top_products", "v0002", "--models-dir", str(root)])
    assert activated.exit_code == 0 and "v0002 is active" in activated.stdout
    assert len(Registry(root).active("top_products").top_) == 6

    wrong = runner.invoke(app, ["models", "activate", "top_products", "v0042", "--models-dir", str(root)])
    assert wrong.exit_code == 2 and "no version 'v0042'" in wrong.output
    unknown = runner.invoke(app, ["models", "list", "nope", "--models-dir", str(root)])
    assert unknown.exit_code == 2 and "no model 'nope'" in unknown.output
    history = runner.invoke(app, ["models", "history", "top_products", "--models-dir", str(root)])
    assert history.exit_code == 0 and "rollback" in history.stdout and "activated" in history.stdout


def test_meta_records_its_schema_and_libraries_reads_an_older_one_and_refuses_a_newer(
        tmp_path: Path, train: TrainingData) -> None:
    Registry(tmp_path).publish(TopProducts(n=5).fit(train), train)
    path = tmp_path / "top_products" / "v0001" / "meta.json"
    meta = json.loads(path.read_text())
    assert meta["schema"] == META_SCHEMA
    assert meta["libraries"]["pandas"] == pd.__version__
    assert {"python", "numpy", "scikit-learn"} <= set(meta["libraries"])
    assert Registry(tmp_path).active_version("top_products").libraries == meta["libraries"]

    path.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("schema", "libraries")}))  # before schemas
    older = Registry(tmp_path)
    assert older.active_version("top_products").libraries == {} and len(older.active("top_products").top_) == 5

    path.write_text(json.dumps({**meta, "schema": META_SCHEMA + 1}))
    with pytest.raises(NudgeError, match=rf"version v0001 .*schema version {META_SCHEMA + 1} \(written with python "
                                         rf".*\); this nudge reads schema {META_SCHEMA}"):
        Registry(tmp_path).active("top_products")
