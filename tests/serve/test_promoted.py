"""After the loop promotes a version, the server reports (and loads) that version as the student."""

from __future__ import annotations

import json

import httpx

from tests.serve.conftest import RunningServer


def test_the_server_answers_with_the_promoted_student(tmp_path, monkeypatch, offline_litellm):
    from clauseloop.models import SMOLLM2
    from clauseloop.models.registry import Registry
    from clauseloop.serve import ServeConfig

    monkeypatch.setenv("CLAUSELOOP_REGISTRY", str(tmp_path / "registry"))
    adapter = tmp_path / "run" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (adapter / "manifest.json").write_text(json.dumps({"trained_by": "the loop"}))

    def reported() -> dict:
        with RunningServer(ServeConfig(db=str(tmp_path / "db.sqlite"), student="clauseloop-student", port=0)) as server:
            return httpx.get(f"{server.url}/api/models", timeout=60).json()

    assert reported()["adapter_manifest"] != {"trained_by": "the loop"}  # the shipped student before promotion
    registry = Registry()
    registry.promote(registry.add(SMOLLM2, adapter).id)
    assert reported()["adapter_manifest"] == {"trained_by": "the loop"}
