"""Shipping an adapter as the package's student, the model aliases, and the shipped student itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from clauseloop.engine.roles import load_roles
from clauseloop.finetune import ship
from clauseloop.finetune.ship import ship_adapter
from clauseloop.models import SMOLLM2, STUDENT, split_adapter
from clauseloop.models import store
from clauseloop.models.store import ModelNotAvailable, SHIPPED_STUDENT_DIR


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory) -> Path:
    """A rank-2 LoRA with random (non-zero) weights on the real base, saved like an SFT run's OUT/adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(store.prepare(SMOLLM2).path)
    lora = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    directory = tmp_path_factory.mktemp("run") / "adapter"
    get_peft_model(base, lora).save_pretrained(str(directory))
    (directory / "manifest.json").write_text(json.dumps({"format": "clauseloop-sft-adapter", "base_model": SMOLLM2}))
    return directory


def test_ship_writes_float16_weights_and_says_where_they_came_from(tiny_adapter, tmp_path):
    target = tmp_path / "student"
    manifest = ship_adapter(tiny_adapter, target)
    original = load_file(str(tiny_adapter / "adapter_model.safetensors"))
    shipped = load_file(str(target / "adapter_model.safetensors"))
    assert set(shipped) == set(original) and {t.dtype for t in shipped.values()} == {__import__("torch").float16}
    assert manifest["shipped"]["from"] == str(tiny_adapter) and manifest["base_model"] == SMOLLM2
    assert json.loads((target / "manifest.json").read_text())["shipped"]["dtype"] == "float16"
    ship_adapter(tiny_adapter, target)  # shipping again replaces the directory
    assert sorted(p.name for p in target.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                       "manifest.json"]


def test_ship_refuses_an_oversized_adapter_or_a_non_adapter(tiny_adapter, tmp_path, monkeypatch):
    monkeypatch.setattr(ship, "MAX_SHIPPED_BYTES", 1000)
    with pytest.raises(ValueError, match="lower LoRA rank"):
        ship_adapter(tiny_adapter, tmp_path / "student")
    assert not (tmp_path / "student").exists()  # nothing half-shipped
    with pytest.raises(FileNotFoundError, match="not an adapter directory"):
        ship_adapter(tmp_path, tmp_path / "other")


def test_aliases_resolve_to_the_shipped_adapter_and_the_base(tmp_path, monkeypatch):
    assert split_adapter("base") == (SMOLLM2, None)
    assert split_adapter(f"{SMOLLM2}+/x/adapter") == (SMOLLM2, "/x/adapter")
    assert load_roles(environ={}).student.model == STUDENT
    monkeypatch.setattr(store, "SHIPPED_STUDENT_DIR", tmp_path)
    with pytest.raises(ModelNotAvailable, match="--student base"):
        split_adapter(STUDENT)


def test_the_shipped_student_is_a_small_adapter_on_the_base_and_answers_unlike_it():
    from clauseloop.engine.lm import LocalLM
    from clauseloop.finetune.sft_output import read_manifest

    assert split_adapter(STUDENT) == (SMOLLM2, str(SHIPPED_STUDENT_DIR))
    manifest = read_manifest(SHIPPED_STUDENT_DIR)
    assert manifest["base_model"] == SMOLLM2 and manifest["shipped"]["dtype"] == "float16"
    assert (SHIPPED_STUDENT_DIR / "adapter_model.safetensors").stat().st_size <= ship.MAX_SHIPPED_BYTES
    assert manifest["dataset"]["rows_trained"] > 0 and manifest["metrics"]["steps"] > 0
    messages = [{"role": "user", "content": "Name one colour of the rainbow."}]
    fingerprints = {LocalLM(spec, cache=False).local_engine.loaded.fingerprint for spec in ("base", STUDENT)}
    assert len(fingerprints) == 2  # two different weight sets are loaded
    assert LocalLM(STUDENT, cache=False, max_tokens=8)(messages=messages)[0].strip()
