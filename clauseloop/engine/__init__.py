"""Local LM engine for DSPy: batched in-process generation, roles, and an OpenAI-compatible server.

* ``LocalLM`` (``lm.py``): a ``dspy.LM`` over a local transformers model (+ optional PEFT adapter), with DSPy's
  cache, history, ``copy()``, ``n``, stop strings and per-token log-probs.
* ``LocalEngine`` / ``get_engine`` (``batcher.py``): one model and one micro-batching worker per process,
  shared by every ``LocalLM`` and the server; ``running.py`` runs a continuous batch (rows leave and join between
  steps, prompt prefixes are prefilled once) and ``decoding.py`` gives each row its own settings.
* ``make_lm`` / ``RolesConfig`` / ``load_roles`` (``roles.py``): teacher, student and judge from model strings.
* ``create_app`` / ``ServerThread`` (``server.py``): ``/v1/chat/completions`` and ``/v1/models`` over an engine.

The heavy names load lazily, so ``import clauseloop.engine`` does not import torch, transformers or DSPy.
"""

from __future__ import annotations

import importlib

from clauseloop.engine.config import EngineConfig, ServerConfig
from clauseloop.engine.roles import RoleConfig, RolesConfig, is_local_model, load_roles, make_lm

_EXPORTS = {
    "GenerationRequest": "requests",
    "GenerationResult": "requests",
    "RequestError": "requests",
    "TokenScore": "requests",
    "LocalEngine": "batcher",
    "get_engine": "batcher",
    "close_engines": "batcher",
    "generate_batch": "running",
    "LocalLM": "lm",
    "create_app": "server",
    "ServerThread": "server",
}

__all__ = [
    "EngineConfig", "ServerConfig", "RoleConfig", "RolesConfig", "is_local_model", "load_roles", "make_lm",
    *_EXPORTS,
]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clauseloop.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"clauseloop.engine.{_EXPORTS[name]}"), name)
