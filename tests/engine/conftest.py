"""Engine fixtures: one SmolLM2 engine per test session, a private DSPy cache, and a tiny random LoRA adapter."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def engine(smollm2_dir):
    """The process-wide SmolLM2 engine; its worker thread and weights are released at the end of the session."""
    from clauseloop.engine import close_engines, get_engine
    from clauseloop.models import SMOLLM2

    yield get_engine(SMOLLM2)
    close_engines()


@pytest.fixture
def fresh_cache():
    """A memory-only DSPy cache for one test: cache assertions see only this test's calls, and no disk is touched."""
    import dspy
    from dspy.clients.cache import Cache

    previous = dspy.cache
    dspy.cache = Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None)
    yield dspy.cache
    dspy.cache = previous


@pytest.fixture(scope="session")
def random_adapter(smollm2_dir, tmp_path_factory) -> str:
    """A LoRA adapter with random (not zero) B matrices, so it visibly changes SmolLM2's output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    directory = tmp_path_factory.mktemp("adapter") / "random-lora"
    get_peft_model(base, config).save_pretrained(directory)
    return str(directory)
