"""The running campaign set: files re-read when their content changes, a bad file rejected while its last good
version keeps running, a kill switch per campaign, and an audit of every change — all kept in the database.

Pause state is read from the database on every ask, so `nudge campaigns pause` in another process takes effect
at the engine's next decision.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Engine, delete, insert, select

from engine.campaigns.files import campaign_files, check_campaign
from engine.campaigns.schema import Campaign
from engine.db import campaign_audit, campaign_pause, campaign_running, upsert
from engine.errors import CampaignError

ACTIONS = ("loaded", "changed", "rejected", "retired", "paused", "resumed")


@dataclass(frozen=True)
class AuditEntry:
    """One change to the running set: what happened to which campaign, when, by whom, at which file hash."""

    id: int
    at: datetime
    campaign: str
    action: str
    by: str
    hash: str | None
    file: str | None
    detail: str


@dataclass
class ReloadResult:
    """What one reload changed; `rejected` maps a campaign (the file's name) to its error lines."""

    loaded: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        """Whether the running set is different after the reload."""
        return bool(self.loaded or self.changed or self.retired)


@dataclass(frozen=True)
class _Running:
    campaign: Campaign
    file: Path
    hash: str


def file_hash(data: bytes) -> str:
    """The content hash a campaign version is known by (sha256, hex)."""
    return hashlib.sha256(data).hexdigest()


class CampaignSet:
    """The campaigns of one folder as the engine runs them."""

    def __init__(self, directory: Path, templates: Path, engine: Engine) -> None:
        self.directory = Path(directory)
        self.templates = Path(templates)
        self.engine = engine
        self.errors: dict[str, str] = {}  # campaign (file name) -> why its file is rejected now
        self._running: dict[str, _Running] = {}
        self._seen: dict[Path, str] = {}  # file -> the hash last read, so an unchanged file is not re-checked
        self._restore()

    @property
    def campaigns(self) -> dict[str, Campaign]:
        """The running set by name."""
        return {name: r.campaign for name, r in self._running.items()}

    def hash_of(self, name: str) -> str | None:
        """The file hash of the running version of `name`."""
        running = self._running.get(name)
        return running.hash if running is not None else None

    def _restore(self) -> None:
        """The last good set this folder ran, from the database (a version the schema no longer takes is left to
        the next reload)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(campaign_running)).all()
        for row in rows:
            path = Path(row.file)
            if path.parent.resolve() != self.directory.resolve():
                continue  # another folder's set
            try:
                campaign = Campaign.model_validate_json(row.campaign)
            except ValidationError:
                continue
            self._running[row.name] = _Running(campaign, path, row.hash)

    def reload(self, now: datetime, by: str = "engine") -> ReloadResult:
        """Re-read the folder's files whose content changed: load, change, reject (keeping the last good version)
        or retire (file gone); every change audited at `now`."""
        result = ReloadResult()
        files = campaign_files(self.directory)
        present = {path.stem for path in files}
        audits: list[dict] = []
        for path in files:
            data = path.read_bytes()
            digest = file_hash(data)
            if self._seen.get(path) == digest:
                continue
            self._seen[path] = digest
            name = path.stem
            try:
                campaign = check_campaign(path, self.templates)
                other = self._running.get(name)
                if other is not None and other.file.resolve() != path.resolve():
                    raise CampaignError(f"{path}:1: name: campaign {name!r} is already defined in {other.file}")
            except CampaignError as exc:
                self.errors[name] = str(exc)
                result.rejected[name] = str(exc)
                audits.append(self._entry(now, name, "rejected", by, digest, path, str(exc)))
                continue
            self.errors.pop(name, None)
            before = self._running.get(name)
            if before is not None and before.hash == digest:
                continue  # back to the version already running (a bad edit undone)
            self._running[name] = _Running(campaign, path, digest)
            action = "loaded" if before is None else "changed"
            (result.loaded if before is None else result.changed).append(name)
            detail = "" if before is None else f"was {before.hash[:12]}"
            audits.append(self._entry(now, name, action, by, digest, path, detail))
        for name in sorted(set(self._running) - present):
            gone = self._running.pop(name)
            result.retired.append(name)
            audits.append(self._entry(now, name, "retired", by, gone.hash, gone.file, "file removed"))
        for name in set(self.errors) - present:
            del self.errors[name]
        for path in set(self._seen) - set(files):
            del self._seen[path]
        self._persist(result, now, audits)
        return result

    def _persist(self, result: ReloadResult, now: datetime, audits: list[dict]) -> None:
        with self.engine.begin() as conn:
            for name in (*result.loaded, *result.changed):
                r = self._running[name]
                conn.execute(upsert(self.engine, campaign_running, "name"), [{
                    "name": name, "file": str(r.file), "hash": r.hash, "campaign": r.campaign.model_dump_json(),
                    "since": now}])
            if result.retired:
                conn.execute(delete(campaign_running).where(campaign_running.c.name.in_(result.retired)))
            if audits:
                conn.execute(insert(campaign_audit), audits)

    @staticmethod
    def _entry(at: datetime, name: str, action: str, by: str, digest: str | None, path: Path | None,
               detail: str = "") -> dict:
        return {"at": at, "campaign": name, "action": action, "by": by, "hash": digest,
                "file": None if path is None else str(path), "detail": detail}

    def _known(self, name: str) -> None:
        """Raise unless `name` is running, rejected, or has a file in the folder (so it can be paused early)."""
        if name in self._running or name in self.errors:
            return
        if any(path.stem == name for path in campaign_files(self.directory)):
            return
        known = sorted(set(self._running) | {p.stem for p in campaign_files(self.directory)})
        raise CampaignError(f"campaign {name!r}: no such campaign in {self.directory} (campaigns: {known})")

    def pause(self, name: str, by: str, reason: str, now: datetime) -> bool:
        """Stop `name` sending from `now` on, queued messages included; False when it was already paused."""
        self._known(name)
        if not reason.strip():
            raise CampaignError(f"campaign {name!r}: pausing needs a reason")
        with self.engine.begin() as conn:
            if conn.execute(select(campaign_pause.c.name).where(campaign_pause.c.name == name)).first():
                return False
            conn.execute(insert(campaign_pause), [{"name": name, "by": by, "reason": reason, "at": now}])
            conn.execute(insert(campaign_audit), [self._entry(now, name, "paused", by, self.hash_of(name),
                                                              self._file_of(name), reason)])
        return True

    def resume(self, name: str, by: str, now: datetime) -> bool:
        """Let `name` send again (what it already sent stays sent); False when it was not paused."""
        self._known(name)
        with self.engine.begin() as conn:
            if not conn.execute(delete(campaign_pause).where(campaign_pause.c.name == name)).rowcount:
                return False
            conn.execute(insert(campaign_audit), [self._entry(now, name, "resumed", by, self.hash_of(name),
                                                              self._file_of(name))])
        return True

    def _file_of(self, name: str) -> Path | None:
        running = self._running.get(name)
        return running.file if running is not None else None

    def is_paused(self, name: str) -> bool:
        """Whether `name` is paused now (read from the database, so another process's pause counts)."""
        with self.engine.connect() as conn:
            return conn.execute(select(campaign_pause.c.name).where(campaign_pause.c.name == name)).first() \
                is not None

    def paused(self) -> frozenset[str]:
        """Every paused campaign (one query: what arbitration takes as `paused`)."""
        with self.engine.connect() as conn:
            return frozenset(conn.execute(select(campaign_pause.c.name)).scalars())

    def audit(self, campaign: str | None = None) -> list[AuditEntry]:
        """The audit trail in the order it was written, of one campaign or all."""
        query = select(campaign_audit).order_by(campaign_audit.c.id)
        if campaign is not None:
            query = query.where(campaign_audit.c.campaign == campaign)
        with self.engine.connect() as conn:
            return [AuditEntry(r.id, r.at, r.campaign, r.action, r.by, r.hash, r.file, r.detail)
                    for r in conn.execute(query)]
