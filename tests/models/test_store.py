"""The offline model store: atomic, race-safe caching, and the real SmolLM2 / MiniLM."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from clauseloop.models import MINILM, SMOLLM2, ModelNotAvailable, prepare, split_adapter
from clauseloop.models.store import MANIFEST, file_sha256, materialize, smollm2_gguf, strip_quantization_config


def slow_build(tmp: Path) -> None:
    (tmp / "weights.bin").write_bytes(os.urandom(1 << 16))
    time.sleep(0.3)  # widen the race window so both processes are building at once
    (tmp / MANIFEST).write_text(json.dumps({"pid": os.getpid()}))


def build_in_process(target: str, results) -> None:
    results.put(materialize(Path(target), slow_build))


def test_materialize_builds_once_and_reuses(tmp_path):
    target = tmp_path / "m"
    calls = []
    assert materialize(target, lambda tmp: calls.append(slow_build(tmp))) is True
    assert materialize(target, lambda tmp: calls.append(slow_build(tmp))) is False
    assert len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp directory left behind


def test_two_processes_preparing_at_once_do_not_corrupt(tmp_path):
    target = tmp_path / "m"
    results = multiprocessing.get_context("spawn").Queue()
    processes = [
        multiprocessing.get_context("spawn").Process(target=build_in_process, args=(str(target), results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    built = sorted(results.get(timeout=5) for _ in processes)
    assert built in ([False, True], [True, True])  # the loser may finish building but never overwrites
    manifest = json.loads((target / MANIFEST).read_text())
    assert (target / "weights.bin").stat().st_size == 1 << 16 and "pid" in manifest
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_failed_build_leaves_nothing(tmp_path):
    def broken(tmp: Path) -> None:
        (tmp / "partial").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        materialize(tmp_path / "m", broken)
    assert list(tmp_path.iterdir()) == []


def test_unknown_local_path_and_adapter_spec(tmp_path):
    with pytest.raises(ModelNotAvailable, match="no such directory"):
        prepare(str(tmp_path / "missing-model"))
    assert prepare(str(tmp_path)).path == str(tmp_path)
    assert split_adapter("smollm2-135m-instruct+/runs/lora") == ("smollm2-135m-instruct", "/runs/lora")
    assert split_adapter("openai/gpt-4o-mini") == ("openai/gpt-4o-mini", None)


GGUF_QUANTIZATION = {"dequantize": False, "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "quant_method": "gguf"}


def test_strip_quantization_config_rewrites_only_that_key(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": GGUF_QUANTIZATION}))
    assert strip_quantization_config(tmp_path) is True
    assert json.loads((tmp_path / "config.json").read_text()) == {"model_type": "llama"}
    assert strip_quantization_config(tmp_path) is False
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temp file left behind


def test_prepare_migrates_a_cache_converted_before_the_fix(tmp_path, monkeypatch):
    """A cache written by an older version keeps its path and weights; only config.json loses the GGUF key."""
    try:
        gguf = smollm2_gguf()
    except ModelNotAvailable as error:
        pytest.skip(str(error))
    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path))
    old = tmp_path / "models" / f"{SMOLLM2}-{file_sha256(gguf)[:16]}"
    old.mkdir(parents=True)
    (old / MANIFEST).write_text(json.dumps({"name": SMOLLM2}))
    (old / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": GGUF_QUANTIZATION}))
    prepared = prepare(SMOLLM2)
    assert prepared.path == str(old) and prepared.created is False
    assert "quantization_config" not in json.loads((old / "config.json").read_text())


@pytest.mark.real_model
def test_real_smollm2_is_a_plain_model_a_trainer_accepts(smollm2_dir, tmp_path):
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    assert "quantization_config" not in json.loads((Path(smollm2_dir) / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    assert getattr(model, "hf_quantizer", None) is None
    Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))


@pytest.mark.real_model
def test_real_smollm2_prepare_reuses_cache_and_generates(smollm2_dir):
    again = prepare(SMOLLM2)
    assert again.path == smollm2_dir and again.created is False
    manifest = json.loads((Path(smollm2_dir) / MANIFEST).read_text())
    assert manifest["name"] == SMOLLM2 and len(manifest["source_sha256"]) == 64
    from clauseloop.models import load_causal_lm

    model, tokenizer = load_causal_lm(SMOLLM2)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name one type of contract."}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    assert len(new_tokens) >= 5
    assert tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


@pytest.mark.real_model
def test_real_minilm_embeds():
    from clauseloop.models import load_embedder

    assert Path(prepare(MINILM).path, "config.json").exists()
    vectors = load_embedder(MINILM).encode(["governing law", "assignment of this agreement"])
    assert vectors.shape == (2, 384)


@pytest.mark.real_model
def test_fresh_conversion_matches_cached_model(tmp_path, monkeypatch, smollm2_dir):
    """The GGUF → safetensors path itself (CI machines usually have the cache already)."""
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path))
    fresh = prepare(SMOLLM2)
    assert fresh.created is True and fresh.path.startswith(str(tmp_path))
    assert "quantization_config" not in json.loads((Path(fresh.path) / "config.json").read_text())
    ids = torch.tensor([[1, 422, 3251, 314]])
    with torch.no_grad():
        logits = [AutoModelForCausalLM.from_pretrained(p)(ids).logits for p in (fresh.path, smollm2_dir)]
    assert torch.allclose(logits[0], logits[1])
