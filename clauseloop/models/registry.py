"""The model registry: every student version the loop made, its lineage and metrics, and which one is promoted.

``registry.json`` (in ``$CLAUSELOOP_REGISTRY``, default ``runs/registry``) lists versions in the order they were
made; each has an id (``v1``, ``v2`` …), a status (candidate, promoted, superseded by a later promotion, refused,
rolled back), its base model and
adapter, its parent version, the data fingerprints and stages that produced it, and its metrics. Adapters are copied
under ``versions/ID/adapter`` so the registry stands alone: the loop's working directories can be deleted.

``clauseloop-student`` resolves to the promoted version when there is one (so the CLI and the server answer with
it), and to the adapter shipped in the package otherwise. Every write goes through a temporary file and keeps the
previous file as ``registry.json.bak``; a file that does not parse is refused with the way to fix it, never
silently replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clauseloop.data.atomic import write_json_atomic

REGISTRY_ENV = "CLAUSELOOP_REGISTRY"
DEFAULT_REGISTRY = "runs/registry"
STATUSES = ("candidate", "promoted", "superseded", "refused", "rolled back")
FORMAT = 1


class RegistryError(RuntimeError):
    """The registry file is unreadable or an operation on it makes no sense; the message says how to fix it."""


def registry_dir() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


@dataclass
class ModelVersion:
    """One student version. ``adapter``: a directory inside the registry (or None for the untrained base)."""

    id: str
    base_model: str
    adapter: str | None
    status: str = "candidate"
    parent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)  # fingerprints of what trained it
    stages: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)  # the promotion gate's verdict and evidence
    created: float = field(default_factory=time.time)

    @property
    def model(self) -> str:
        """The model string that runs this version (``BASE+ADAPTER``)."""
        return f"{self.base_model}+{self.adapter}" if self.adapter else self.base_model


class Registry:
    """``Registry(path)`` reads ``path/registry.json`` (an empty registry when absent)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else registry_dir()
        self.file = self.path / "registry.json"
        self.versions: list[ModelVersion] = self._read()

    def _read(self) -> list[ModelVersion]:
        if not self.file.exists():
            return []
        try:
            payload = json.loads(self.file.read_text(encoding="utf-8"))
            if payload.get("format") != FORMAT:
                raise ValueError(f"format {payload.get('format')!r}, expected {FORMAT}")
            versions = [ModelVersion(**entry) for entry in payload["versions"]]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            backup = self.file.with_name("registry.json.bak")
            fix = f"restore the previous state with `cp {backup} {self.file}`" if backup.exists() else (
                f"move {self.file} away to start an empty registry")
            raise RegistryError(f"{self.file} is corrupted ({error}); {fix}") from error
        for version in versions:
            if version.status not in STATUSES:
                raise RegistryError(f"{self.file}: version {version.id} has unknown status {version.status!r}; "
                                    f"edit it to one of {', '.join(STATUSES)}")
        return versions

    def save(self) -> None:
        if self.file.exists():
            shutil.copy2(self.file, self.file.with_name("registry.json.bak"))
        write_json_atomic(self.file, {"format": FORMAT, "versions": [asdict(v) for v in self.versions]})

    def get(self, version_id: str) -> ModelVersion:
        for version in self.versions:
            if version.id == version_id:
                return version
        known = ", ".join(v.id for v in self.versions) or "none yet"
        raise RegistryError(f"no version {version_id!r} in {self.file}; versions: {known}")

    def promoted(self) -> ModelVersion | None:
        return next((v for v in reversed(self.versions) if v.status == "promoted"), None)

    def add(self, base_model: str, adapter: str | Path | None, **details: Any) -> ModelVersion:
        """Register a candidate; its adapter directory is copied into the registry."""
        version_id = f"v{len(self.versions) + 1}"
        stored = None
        if adapter:
            stored = self.path / "versions" / version_id / "adapter"
            if stored.exists():
                shutil.rmtree(stored)  # left by an add that was killed before the registry was written
            shutil.copytree(adapter, stored)
        version = ModelVersion(id=version_id, base_model=base_model, adapter=str(stored) if stored else None, **details)
        self.versions.append(version)
        self.save()
        return version

    def promote(self, version_id: str, decision: dict[str, Any] | None = None) -> ModelVersion:
        """Make ``version_id`` the promoted one; the previously promoted version stays in the history."""
        version = self.get(version_id)
        if version.adapter and not Path(version.adapter).is_dir():
            raise RegistryError(f"{version_id}: its adapter {version.adapter} is missing; it cannot be promoted")
        current = self.promoted()
        if current and current.id != version_id:
            current.status = "superseded"
            version.parent = version.parent or current.id
        version.status = "promoted"
        if decision is not None:
            version.decision = decision
        self.versions.remove(version)
        self.versions.append(version)  # the promotion order is the history rollback walks back
        self.save()
        return version

    def refuse(self, version_id: str, decision: dict[str, Any]) -> ModelVersion:
        version = self.get(version_id)
        version.status, version.decision = "refused", decision
        self.save()
        return version

    def rollback(self) -> ModelVersion | None:
        """Demote the promoted version; the one promoted before it (or the shipped student, None) answers again."""
        current = self.promoted()
        if current is None:
            raise RegistryError(f"nothing to roll back: no version in {self.file} is promoted")
        current.status = "rolled back"
        previous = self._previously_promoted(current)
        if previous is not None:
            previous.status = "promoted"
            self.versions.remove(previous)
            self.versions.append(previous)
        self.save()
        return previous

    def _previously_promoted(self, current: ModelVersion) -> ModelVersion | None:
        """The version ``current`` replaced: up its parent chain, the first that was superseded (not rolled back)."""
        parent = current.parent
        while parent:
            version = self.get(parent)
            if version.status == "superseded":
                return version
            parent = version.parent
        return None


def promoted_model() -> tuple[str, str | None] | None:
    """(base model, adapter) of the promoted version in the default registry, or None when none is promoted."""
    if not (registry_dir() / "registry.json").exists():
        return None
    version = Registry().promoted()
    return (version.base_model, version.adapter) if version else None
