"""Load prepared models: causal LMs (optionally with a PEFT LoRA adapter) and sentence embedders."""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

from clauseloop.models.store import prepare, resolve_alias

logger = logging.getLogger(__name__)


def split_adapter(spec: str) -> tuple[str, str | None]:
    """``"model+adapter_dir"`` → ``("model", "adapter_dir")``; a plain spec has no adapter; the aliases
    ``clauseloop-student`` (SmolLM2 + the shipped adapter) and ``base`` (SmolLM2) are resolved."""
    model, plus, adapter = spec.partition("+")
    if plus:
        return model, adapter
    return resolve_alias(model)


def load_causal_lm(name_or_path: str, *, adapter: str | None = None, dtype: str = "float32"):
    """(model, tokenizer) in eval mode. ``adapter`` (or ``name+adapter``) applies a PEFT adapter on top."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, inline_adapter = split_adapter(name_or_path)
    adapter = adapter or inline_adapter
    path = prepare(base).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


_EMBEDDER_LOCK = threading.Lock()


def load_embedder(name_or_path: str = "minilm-l6", device: str = "cpu"):
    """A cached SentenceTransformer: loaded once per process, even when many threads ask at once."""
    with _EMBEDDER_LOCK:
        return _load_embedder(name_or_path, device)


@lru_cache(maxsize=4)
def _load_embedder(name_or_path: str, device: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(prepare(name_or_path).path, device=device)


def generate_text(name_or_path: str, prompt: str, *, max_new_tokens: int = 48) -> str:
    """One greedy chat-formatted completion: the smallest end-to-end check that a model works."""
    import torch

    model, tokenizer = load_causal_lm(name_or_path)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
