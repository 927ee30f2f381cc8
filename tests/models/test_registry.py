"""The model registry: versions with lineage, promotion, refusal, rollback, and a corrupted file refused with a fix."""

from __future__ import annotations

import json

import pytest

from clauseloop.models import SMOLLM2, STUDENT
from clauseloop.models.registry import Registry, RegistryError
from clauseloop.models.store import SHIPPED_STUDENT_DIR, resolve_alias


@pytest.fixture
def adapter(tmp_path):
    directory = tmp_path / "run" / "adapter"
    directory.mkdir(parents=True)
    (directory / "adapter_model.safetensors").write_bytes(b"weights")
    (directory / "adapter_config.json").write_text("{}")
    return directory


def test_a_promoted_version_is_what_clauseloop_student_runs_and_rollback_restores_the_shipped_one(
        tmp_path, adapter, monkeypatch):
    monkeypatch.setenv("CLAUSELOOP_REGISTRY", str(tmp_path / "registry"))
    assert resolve_alias(STUDENT) == (SMOLLM2, str(SHIPPED_STUDENT_DIR))
    registry = Registry()
    version = registry.add(SMOLLM2, adapter, metrics={"aupr": 0.1})
    assert version.id == "v1" and version.status == "candidate"
    assert (tmp_path / "registry" / "versions" / "v1" / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    assert resolve_alias(STUDENT) == (SMOLLM2, str(SHIPPED_STUDENT_DIR))  # a candidate does not answer
    registry.promote("v1")
    assert resolve_alias(STUDENT) == (SMOLLM2, version.adapter)
    assert Registry().promoted().id == "v1"  # persisted
    assert Registry().rollback() is None
    assert resolve_alias(STUDENT) == (SMOLLM2, str(SHIPPED_STUDENT_DIR))
    assert Registry().get("v1").status == "rolled back"


def test_rollback_walks_back_to_the_version_that_was_replaced(tmp_path, adapter):
    registry = Registry(tmp_path)
    first = registry.promote(registry.add(SMOLLM2, adapter).id)
    refused = registry.refuse(registry.add(SMOLLM2, adapter, parent="v1").id, {"promote": False, "reasons": ["x"]})
    second = registry.promote(registry.add(SMOLLM2, adapter).id)
    assert second.parent == "v1" and registry.get("v1").status == "superseded" and refused.status == "refused"
    assert registry.rollback().id == first.id
    reread = Registry(tmp_path)
    assert [(v.id, v.status) for v in sorted(reread.versions, key=lambda v: v.id)] == [
        ("v1", "promoted"), ("v2", "refused"), ("v3", "rolled back")]
    assert reread.rollback() is None  # v1 replaced the shipped adapter
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reread.rollback()


def test_a_corrupted_registry_is_refused_with_the_backup_to_restore(tmp_path, adapter):
    registry = Registry(tmp_path)
    registry.add(SMOLLM2, adapter)
    registry.promote("v1")  # a second write: the first is kept as registry.json.bak
    (tmp_path / "registry.json").write_text('{"format": 1, "versions": [')
    with pytest.raises(RegistryError, match=r"corrupted .*cp .*registry\.json\.bak"):
        Registry(tmp_path)
    (tmp_path / "registry.json").write_text(json.dumps({"format": 1, "versions": [{"id": "v1"}]}))
    with pytest.raises(RegistryError, match="corrupted"):
        Registry(tmp_path)


def test_unknown_versions_and_missing_adapters_are_refused(tmp_path, adapter):
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no version 'v9'.*none yet"):
        registry.promote("v9")
    version = registry.add(SMOLLM2, adapter)
    for path in sorted((tmp_path / "versions" / "v1" / "adapter").iterdir()):
        path.unlink()
    (tmp_path / "versions" / "v1" / "adapter").rmdir()
    with pytest.raises(RegistryError, match="missing"):
        registry.promote(version.id)
