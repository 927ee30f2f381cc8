"""Tuned embedders: a base sentence embedder plus the weights of the layers fine-tuning changed.

Only the trained layers are stored (``layers.safetensors``, float16: a few MB where the whole model is 90), with
``tuned-embedder.json`` naming the base model and how the layers were trained. On first use,
:func:`clauseloop.models.store.prepare` merges them into a copy of the base in the model cache (keyed by the layers'
hash, :func:`build_merged`), which then loads like any SentenceTransformer directory: such a directory works wherever
an embedder name does (``clauseloop index build --embedder DIR``). Made by :mod:`clauseloop.retrieval.tuning`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

FORMAT = "clauseloop-tuned-embedder"
TUNED_MANIFEST = "tuned-embedder.json"
LAYERS = "layers.safetensors"


class TunedEmbedderError(RuntimeError):
    """A tuned-embedder directory that cannot be used; the message says how to fix it."""


def is_tuned_dir(path: Path) -> bool:
    return (path / TUNED_MANIFEST).is_file()


def save_tuned(directory: str | Path, layers: dict[str, np.ndarray], manifest: dict) -> Path:
    """Write the trained layers (float16) and the manifest (last, so a reader never sees half a directory)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TUNED_MANIFEST).unlink(missing_ok=True)
    save_file({key: np.asarray(value, dtype=np.float16) for key, value in layers.items()}, str(directory / LAYERS))
    (directory / LAYERS).chmod(0o644)  # safetensors writes owner-only files; a shipped model must be readable by all
    (directory / TUNED_MANIFEST).write_text(json.dumps({"format": FORMAT, **manifest}, indent=2, sort_keys=True))
    return directory


def read_tuned_manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((directory / TUNED_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TunedEmbedderError(f"{directory}: unreadable {TUNED_MANIFEST} ({error}); re-run "
                                 f"`clauseloop index tune-embedder` or restore the directory") from error
    if manifest.get("format") != FORMAT or "base" not in manifest:
        raise TunedEmbedderError(f"{directory}: not a tuned embedder ({TUNED_MANIFEST} lacks format/base)")
    if not (directory / LAYERS).is_file():
        raise TunedEmbedderError(f"{directory}: {LAYERS} is missing; re-run `clauseloop index tune-embedder`")
    return manifest


def build_merged(directory: Path, manifest: dict, base_path: str, out_dir: Path) -> None:
    """Load the base model, overwrite its tuned layers, save the whole model to ``out_dir``."""
    import torch
    from safetensors.numpy import load_file
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(base_path, device="cpu")
    stored = load_file(str(directory / LAYERS))
    layers = {key: torch.as_tensor(value.astype(np.float32)) for key, value in stored.items()}
    transformer = model[0].auto_model
    known = transformer.state_dict()
    wrong = [key for key, value in layers.items() if key not in known or known[key].shape != value.shape]
    if wrong:
        raise TunedEmbedderError(f"{directory}: layers {wrong[:3]} do not fit the base model "
                                 f"{manifest['base']!r}; tune again against that base")
    transformer.load_state_dict(layers, strict=False)
    model.save(str(out_dir))
