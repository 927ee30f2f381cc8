"""Offline model store: named local models (SmolLM2, MiniLM), local directories, hub ids."""

from clauseloop.models.load import generate_text, load_causal_lm, load_embedder, split_adapter
from clauseloop.models.store import (
    MINILM,
    NAMED_MODELS,
    SMOLLM2,
    STUDENT,
    ModelNotAvailable,
    PreparedModel,
    cache_root,
    prepare,
)

__all__ = [
    "MINILM", "NAMED_MODELS", "SMOLLM2", "STUDENT", "ModelNotAvailable", "PreparedModel", "cache_root", "prepare",
    "generate_text", "load_causal_lm", "load_embedder", "split_adapter",
]
