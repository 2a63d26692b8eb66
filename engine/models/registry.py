"""Fitted model versions on disk: `<root>/<name>/<version>/`, a manifest naming the active one, a history.

Layout, per model name::

    <root>/<name>/manifest.json      {"active": "v0003", "previous": ["v0001", "v0002"], "next": 4, ...}
    <root>/<name>/v0003/artifact.pkl the fitted model object (written by cloudpickle, read by pickle)
    <root>/<name>/v0003/meta.json    params, training watermark, data hash, metrics, creation time, fit seconds,
                                     its schema and the library versions the artifact was pickled with
    <root>/<name>/history.jsonl      one line per publish, rejection, failure, activation, rollback, prune

Every change a reader could observe is atomic: a version folder is written under a temporary name and
renamed into place, and the manifest is replaced (temp file in the same folder, fsync, `os.replace`), so
the manifest always parses and always names a complete version. A refit that raises, or whose metrics
fall below a guard, never touches the manifest: the last good version keeps serving and the history
says why.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import structlog

from engine.durable import atomic_write, fsync_dir
from engine.errors import ConfigError, NudgeError
from engine.models.base import Model
from engine.models.data import TrainingData
from engine.versions import check_schema, library_versions

log = structlog.get_logger(__name__)

ARTIFACT = "artifact.pkl"
META = "meta.json"
MANIFEST = "manifest.json"
HISTORY = "history.jsonl"
DEFAULT_KEEP = 5
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION = re.compile(r"^v(\d{4,})$")
# meta.json's layout: 1 had no "schema" key (nor "libraries"); 2 records both.
META_SCHEMA = 2

# A guard is either minimum values per metric, or a callable given the metrics that returns None (or True)
# to accept, and a reason (or False) to refuse.
Guard = Mapping[str, float] | Callable[[dict[str, float]], str | None]


@dataclass(frozen=True)
class Version:
    """One fitted version of a model, as its meta.json records it."""

    name: str
    version: str
    created: datetime
    watermark: datetime | None
    data_hash: str
    metrics: dict[str, float | None]
    params: dict[str, Any]
    fit_seconds: float | None = None
    path: Path | None = None
    active: bool = False
    rejected: str | None = None  # why a guard refused it (then nothing was stored and `version` is "")
    libraries: dict[str, str] = field(default_factory=dict)  # what the artifact was pickled with (empty: unknown)

    @property
    def number(self) -> int:
        """The version's sequence number (v0007 -> 7)."""
        return _number(self.version)


@dataclass
class Registry:
    """Model versions under `root`; publish, load the active one, list, activate, roll back."""

    root: Path
    keep: int = DEFAULT_KEEP
    _cache: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.keep < 1:
            raise ConfigError(f"registry keep={self.keep}: keep at least the active version (keep >= 1)")

    # -- writing ---------------------------------------------------------------------------------------
    def publish(self, model: Model, data: TrainingData, guard: Guard | None = None,
                fit_seconds: float | None = None, data_hash: str | None = None) -> Version:
        """Store a fitted model as the next version and make it active, unless `guard` refuses its metrics.

        A refused model is not stored: the returned Version has `rejected` set, the active version is
        unchanged, and the history records the reason with the metrics. `data_hash` saves recomputing
        `data.data_hash` when several models are published from the same data.
        """
        name = _checked_name(getattr(model, "name", None), model)
        if not isinstance(model, Model):
            raise NudgeError(f"{type(model).__name__} is not a fitted model: it needs name, fit, get_params and "
                             "metrics_ (is it fitted?)")
        metrics = _clean_metrics(model.metrics_)
        params = _jsonable(model.get_params())
        watermark = _watermark(data)
        data_hash = data_hash or data.data_hash
        reason = _guard_reason(guard, metrics) if guard is not None else None
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with self._locked(name):
            manifest = self._manifest(name)
            number = int(manifest.get("next", 1))
            version = Version(name=name, version="" if reason else _label(number), created=datetime.now(UTC),
                              watermark=watermark, data_hash=data_hash, metrics=metrics, params=params,
                              fit_seconds=fit_seconds, rejected=reason)
            if reason is not None:
                self._record(name, "rejected", version=None, reason=reason, metrics=metrics,
                             watermark=_iso(watermark), data_hash=data_hash, active=manifest.get("active"))
                log.warning("model_rejected", model=name, reason=reason, serving=manifest.get("active"))
                return version
            path = self._write_version(folder, version, model)
            previous = [*manifest.get("previous", []), manifest["active"]] if manifest.get("active") else []
            self._write_manifest(name, {**manifest, "active": version.version, "previous": previous,
                                        "next": number + 1})
            self._record(name, "published", version=version.version, metrics=metrics,
                         watermark=_iso(watermark), data_hash=data_hash, fit_seconds=fit_seconds)
            self._prune(name)
        log.info("model_published", model=name, version=version.version)
        return replace(version, path=path, active=True)

    def record_failure(self, name: str, reason: str, data: TrainingData | None = None) -> None:
        """Record that a refit of `name` failed before it could be published; the active version keeps serving."""
        _checked_name(name, name)
        (self.root / name).mkdir(parents=True, exist_ok=True)
        with self._locked(name):
            extra: dict[str, Any] = {}
            if data is not None:
                extra["watermark"] = _iso(_watermark(data))
            self._record(name, "failed", version=None, reason=reason,
                         active=self._manifest(name).get("active"), **extra)
        log.warning("model_refit_failed", model=name, reason=reason)

    def activate(self, name: str, version: str) -> Version:
        """Make `version` the one that serves `name`."""
        with self._locked(name):
            manifest = self._existing_manifest(name)
            self._version_meta(name, version)  # refuses a version that is not on disk
            current = manifest.get("active")
            if current != version:
                previous = [v for v in manifest.get("previous", []) if v != version]
                if current:
                    previous.append(current)
                self._write_manifest(name, {**manifest, "active": version, "previous": previous})
                self._record(name, "activated", version=version, replaced=current)
        return self._version_meta(name, version, active=True)

    def rollback(self, name: str) -> Version:
        """Serve the version that was active before the current one again."""
        with self._locked(name):
            manifest = self._existing_manifest(name)
            current = manifest.get("active")
            previous = [v for v in manifest.get("previous", []) if (self.root / name / v / META).exists()]
            if not previous:
                raise NudgeError(f"model {name!r}: no earlier version to roll back to "
                                 f"(active {current}, versions {[v.version for v in self.list(name)]})")
            target = previous.pop()
            self._write_manifest(name, {**manifest, "active": target, "previous": previous})
            self._record(name, "rollback", version=target, replaced=current)
        log.info("model_rolled_back", model=name, version=target, replaced=current)
        return self._version_meta(name, target, active=True)

    # -- reading ---------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Model names the registry knows (a version, or at least a recorded refit), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / MANIFEST).is_file() or (p / HISTORY).is_file())

    def list(self, name: str) -> list[Version]:
        """The versions of `name` on disk, oldest first, with `active` set on the serving one."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        active = self._manifest(name).get("active")
        labels = sorted((p.name for p in folder.iterdir() if _VERSION.match(p.name) and (p / META).is_file()),
                        key=_number)
        return [self._version_meta(name, v, active=v == active) for v in labels]

    def active_version(self, name: str) -> Version:
        """The meta of the version serving `name`."""
        manifest = self._manifest(name) if (self.root / name / HISTORY).is_file() else self._existing_manifest(name)
        if not manifest.get("active"):
            raise NudgeError(f"model {name!r} has no active version in {self.root / name} "
                             f"(every refit so far failed or was rejected: see {HISTORY})")
        return self._version_meta(name, manifest["active"], active=True)

    def active(self, name: str) -> Any:
        """The fitted model object serving `name` (loaded once per version and cached)."""
        version = self.active_version(name).version
        # Only the serving version stays in memory: artifacts run to tens of MB (ALS factors).
        for key in [k for k in self._cache if k[0] == name and k[1] != version]:
            del self._cache[key]
        return self.load(name, version)

    def load(self, name: str, version: str) -> Any:
        """The fitted model object of one version."""
        key = (name, version)
        if key not in self._cache:
            self._version_meta(name, version)
            with (self.root / name / version / ARTIFACT).open("rb") as fh:
                self._cache[key] = pickle.load(fh)
        return self._cache[key]

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every recorded event for `name` (publish, rejection, failure, activation, rollback, prune), oldest first."""
        path = self.root / name / HISTORY
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- internals -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        # One writer per model at a time: a nightly refit and an operator's `activate` must not interleave.
        folder = self.root / _checked_name(name, name)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _manifest(self, name: str) -> dict[str, Any]:
        path = self.root / name / MANIFEST
        if not path.is_file():
            return {"name": name, "active": None, "previous": [], "next": 1}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise NudgeError(f"{path}: manifest is not valid JSON ({exc})") from None

    def _existing_manifest(self, name: str) -> dict[str, Any]:
        if not (self.root / name / MANIFEST).is_file():
            known = ", ".join(self.names()) or "none"
            raise NudgeError(f"no model {name!r} in {self.root} (models: {known})")
        return self._manifest(name)

    def _write_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        manifest = {**manifest, "name": name, "updated": datetime.now(UTC).isoformat()}
        atomic_write(self.root / name / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    def _write_version(self, folder: Path, version: Version, model: Model) -> Path:
        # Built under a temporary name and renamed: a version folder either is complete or does not exist.
        tmp = Path(tempfile.mkdtemp(prefix=f".{version.version}-", dir=folder))
        try:
            with (tmp / ARTIFACT).open("wb") as fh:
                # cloudpickle: fitted third-party objects keep lambdas (lifetimes' fitters do); plain pickle loads it.
                cloudpickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
            meta = {"schema": META_SCHEMA, "libraries": library_versions(),
                    "name": version.name, "version": version.version, "created": version.created.isoformat(),
                    "watermark": _iso(version.watermark), "data_hash": version.data_hash,
                    "metrics": version.metrics, "params": version.params, "fit_seconds": version.fit_seconds,
                    "model_class": f"{type(model).__module__}.{type(model).__qualname__}"}
            atomic_write(tmp / META, json.dumps(meta, indent=2) + "\n")
            final = folder / version.version
            os.rename(tmp, final)
            fsync_dir(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _version_meta(self, name: str, version: str, active: bool = False) -> Version:
        path = self.root / name / version
        if not _VERSION.match(version) or not (path / META).is_file():
            have = [p.name for p in sorted((self.root / name).glob("v*")) if (p / META).is_file()]
            raise NudgeError(f"model {name!r} has no version {version!r} in {self.root / name} (versions: {have})")
        meta = json.loads((path / META).read_text())
        check_schema(f"model {name!r} version {version} ({path / META})", int(meta.get("schema", 1)), META_SCHEMA,
                     meta.get("libraries"))
        return Version(name=name, version=version, created=datetime.fromisoformat(meta["created"]),
                       watermark=datetime.fromisoformat(meta["watermark"]) if meta.get("watermark") else None,
                       data_hash=meta["data_hash"], metrics=meta.get("metrics", {}), params=meta.get("params", {}),
                       fit_seconds=meta.get("fit_seconds"), path=path, active=active,
                       libraries=meta.get("libraries", {}))

    def _prune(self, name: str) -> None:
        # Keep the newest `keep` versions, and the active one wherever it is; the manifest was already
        # written, so a crash mid-prune only leaves an extra old folder behind.
        manifest = self._manifest(name)
        versions = self.list(name)
        keep = {v.version for v in versions[-self.keep:]} | {manifest.get("active")}
        doomed = [v.version for v in versions if v.version not in keep]
        if not doomed:
            return
        previous = [v for v in manifest.get("previous", []) if v not in doomed]
        self._write_manifest(name, {**manifest, "previous": previous})
        for label in doomed:
            shutil.rmtree(self.root / name / label)
            self._cache.pop((name, label), None)
        self._record(name, "pruned", version=None, removed=doomed)

    def _record(self, name: str, event: str, **fields: Any) -> None:
        line = json.dumps({"time": datetime.now(UTC).isoformat(), "event": event, "model": name, **fields},
                          default=str)
        with (self.root / name / HISTORY).open("a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _guard_reason(guard: Guard, metrics: dict[str, float | None]) -> str | None:
    """Why `metrics` fail `guard`, or None when they pass."""
    if callable(guard):
        reason = guard(dict(metrics))
        return None if reason in (None, True) else str(reason or "refused by guard")
    short = []
    for key, floor in guard.items():
        value = metrics.get(key)
        if value is None:
            short.append(f"{key} missing (guard >= {floor})")
        elif value < floor:
            short.append(f"{key}={value:.4g} < {floor}")
    return "; ".join(short) or None


def _checked_name(name: object, model: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{type(model).__name__}: model name {name!r} must be letters, digits, '_', '-' or '.' "
                          "(it becomes a folder name)")
    return name


def _clean_metrics(metrics: object) -> dict[str, float | None]:
    # JSON has no NaN: a metric that could not be computed is stored as null, and a guard then refuses it.
    if not isinstance(metrics, Mapping):
        raise NudgeError(f"metrics_ must be a dict of name -> number, got {type(metrics).__name__}")
    clean: dict[str, float | None] = {}
    for key, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NudgeError(f"metric {key!r} is not a number: {value!r}") from None
        clean[str(key)] = number if math.isfinite(number) else None
    return clean


def _jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(params), default=repr))


def _watermark(data: TrainingData) -> datetime | None:
    # The engine's one rule (`TrainingData.watermark`); lines that lack event times (a corrupted frame) give none.
    lines = data.lines
    if data.until is None and not (isinstance(lines, pd.DataFrame) and "event_time" in lines.columns and len(lines)):
        return None
    return data.watermark


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _label(number: int) -> str:
    return f"v{number:04d}"


def _number(label: str) -> int:
    match = _VERSION.match(label)
    if match is None:
        raise NudgeError(f"{label!r} is not a version label like v0001")
    return int(match.group(1))
