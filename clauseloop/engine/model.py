"""A causal LM loaded for the engine: weights (+ merged LoRA adapter), chat template, end tokens, fingerprint."""

from __future__ import annotations

import hashlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clauseloop.engine.kernels import use_weight_major_linears
from clauseloop.engine.requests import RequestError

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
# Large windows (some configs say 128k or 1e30) are capped: the engine never needs more and padding math stays sane.
_MAX_CONTEXT = 131072


@dataclass
class LoadedModel:
    """Everything the decoding loop needs about one model, loaded once per process."""

    name: str
    model: Any
    tokenizer: Any
    eos_token_ids: frozenset[int]
    context_window: int
    fingerprint: str  # changes when the weight files (or the adapter's) change: part of DSPy cache keys
    keeps_last_logits: bool  # the model accepts `logits_to_keep`, so prefill skips the full-vocab logits

    def encode_chat(self, messages: list[dict[str, str]]) -> tuple[int, ...]:
        """Token ids of a chat, rendered with the model's own template and an open assistant turn."""
        if not messages:
            raise RequestError("messages is empty; send at least one message", param="messages")
        if getattr(self.tokenizer, "chat_template", None):
            encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
            return tuple(encoded["input_ids"])
        # Base models have no template: a plain transcript that ends where the assistant should continue.
        transcript = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return tuple(self.tokenizer(transcript, add_special_tokens=True)["input_ids"])


def load_model(model: str, adapter: str | None = None, *, dtype: str = "float32", merge_adapter: bool = True):
    """Load ``model`` (a model-store name or a local directory) and optionally a PEFT adapter directory."""
    from clauseloop.models import load_causal_lm, prepare

    if adapter and not Path(adapter).expanduser().is_dir():
        raise FileNotFoundError(f"adapter directory {adapter!r} does not exist; pass a PEFT adapter folder")
    net, tokenizer = load_causal_lm(model, adapter=adapter, dtype=dtype)
    if adapter and merge_adapter:
        net = net.merge_and_unload()  # plain weights: no per-token LoRA matmuls while decoding
    net.eval()
    use_weight_major_linears(net)  # faster decoding steps on CPU (see kernels.py); training never sees this copy
    model_dir = prepare(model).path
    return LoadedModel(
        name=model if not adapter else f"{model}+{adapter}",
        model=net,
        tokenizer=tokenizer,
        eos_token_ids=end_token_ids(net, tokenizer),
        context_window=context_window(net.config, tokenizer),
        fingerprint=weights_fingerprint(model_dir, adapter),
        keeps_last_logits="logits_to_keep" in inspect.signature(net.forward).parameters,
    )


def end_token_ids(model, tokenizer) -> frozenset[int]:
    """Tokens that end the assistant turn: the generation config's and the tokenizer's EOS."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the model declares no end-of-sequence token; set eos_token_id in its generation_config.json")
    return frozenset(ids)


def context_window(config, tokenizer) -> int:
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return min(value, _MAX_CONTEXT)
    value = getattr(tokenizer, "model_max_length", None)
    return min(value, _MAX_CONTEXT) if isinstance(value, int) and value > 0 else 2048


def weights_fingerprint(model_dir: str, adapter: str | None = None) -> str:
    """A cheap identity of the weights (file names, sizes, mtimes): retraining an adapter in place changes it.

    Hashing gigabytes on every load would cost seconds; size + mtime is what build tools use for the same job.
    """
    digest = hashlib.sha256()
    for root in filter(None, (model_dir, adapter)):
        path = Path(root).expanduser()
        if not path.exists():  # a hub id resolved by transformers' own cache
            digest.update(str(root).encode())
            continue
        for file in sorted(p for p in path.rglob("*") if p.suffix in _WEIGHT_SUFFIXES):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def text_messages(messages: list[dict]) -> list[dict[str, str]]:
    """OpenAI-style messages reduced to ``{"role", "content"}`` text; other content is refused with the fix."""
    rendered = []
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in {"system", "user", "assistant", "developer"}:
            raise RequestError(
                f"messages[{index}].role={role!r} is not supported; use system, user or assistant",
                param=f"messages[{index}].role",
            )
        if isinstance(content, list):
            content = "".join(_text_part(part, index) for part in content)
        if not isinstance(content, str):
            raise RequestError(f"messages[{index}].content must be text", param=f"messages[{index}].content")
        rendered.append({"role": "system" if role == "developer" else role, "content": content})
    return rendered


def _text_part(part: Any, index: int) -> str:
    if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
        return part["text"]
    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
    raise RequestError(
        f"messages[{index}] has a {kind!r} part; this local text model takes text parts only",
        param=f"messages[{index}].content",
    )
