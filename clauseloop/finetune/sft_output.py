"""What an SFT run shows and leaves behind: per-step progress (loss, tokens/s, ETA), metrics, the adapter artifact.

The artifact is ``OUT/adapter/``: ``adapter_model.safetensors``, ``adapter_config.json`` and ``manifest.json``,
nothing else — in particular not the trainer's ``training_args.bin``, a pickle that runs code when loaded
(checkpoints keep theirs internally, for resuming). The directory is built beside its target and renamed into
place, so a reader (an engine loading the adapter, a second run) never sees a half-written adapter.

Imports transformers at module level (for ``TrainerCallback``): :mod:`clauseloop.finetune.sft` loads it lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
MANIFEST = "manifest.json"
FORMAT = "clauseloop-sft-adapter"


class TrainingProgress(TrainerCallback):
    """Logs every optimizer step (loss, tokens/s, s/step, ETA) and adds ``tokens_per_s`` to the trainer's own
    log line (the one TRL's progress bar prints); keeps what the manifest's metrics need."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_step = self.first_tokens = 0
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        # after a resume the state already holds the checkpoint's step and token count: rates cover this run only
        self.started = time.perf_counter()
        self.first_step, self.first_tokens = state.global_step, state.num_input_tokens_seen

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        steps = state.global_step - self.first_step
        tokens_per_second = (state.num_input_tokens_seen - self.first_tokens) / elapsed
        seconds_per_step = elapsed / max(steps, 1)
        eta = timedelta(seconds=round(seconds_per_step * max(state.max_steps - state.global_step, 0)))
        self.last_loss = float(logs["loss"])
        logs["tokens_per_s"] = round(tokens_per_second, 1)
        logger.info(
            "step %d/%d  loss %.4f  %.0f tokens/s  %.1f s/step  ETA %s", state.global_step, state.max_steps,
            self.last_loss, tokens_per_second, seconds_per_step, eta,
        )

    def summary(self, state, train_loss: float) -> dict[str, Any]:
        """Metrics of the run; rates and seconds cover this invocation (a resumed run counts from its checkpoint)."""
        seconds = time.perf_counter() - self.started
        steps_now = state.global_step - self.first_step
        tokens_now = state.num_input_tokens_seen - self.first_tokens
        return {
            "train_loss": round(float(train_loss), 4),
            "final_loss": None if self.last_loss is None else round(self.last_loss, 4),
            "steps": state.global_step,
            "max_steps": state.max_steps,
            "epochs": round(float(state.epoch or 0), 3),
            "tokens": int(state.num_input_tokens_seen),
            "resumed_from_step": self.first_step or None,
            "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / steps_now, 2) if steps_now else None,
            "tokens_per_second": round(tokens_now / seconds, 1) if seconds > 0 else None,
        }


@lru_cache(maxsize=8)
def _files_sha256(directory: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in stamp:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(directory, name), "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def base_weights_sha256(model_dir: str) -> str:
    """sha256 over the base model's config and weight files: the manifest names the exact base it was tuned on."""
    root = Path(model_dir)
    files = sorted(p for p in root.iterdir() if p.name == "config.json" or p.suffix == ".safetensors")
    # memoised on (name, size, mtime): hashing ~0.5 GB again for every run in one process would cost seconds
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _files_sha256(str(root), stamp)


def library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers
    import trl

    import clauseloop

    return {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
            "peft": peft.__version__, "clauseloop": clauseloop.__version__}


def lineage_entry(manifest: dict[str, Any]) -> dict[str, Any]:
    """One training run of an adapter's history: what it trained on and how much."""
    dataset, metrics, config = (manifest.get(key, {}) for key in ("dataset", "metrics", "config"))
    per_step = (config.get("batch_size") or 0) * (config.get("gradient_accumulation") or 0)
    return {"stage": manifest.get("stage", "sft"), "created": manifest.get("created"), "data": dataset.get("path"),
            "sha256": dataset.get("sha256"), "dataset_rows": dataset.get("rows_trained", dataset.get("rows")),
            "replay_rows": dataset.get("replay_rows"), "steps": metrics.get("steps"),
            "rows_seen": (metrics.get("steps") or 0) * per_step, "tokens": metrics.get("tokens")}


def parent_lineage(from_adapter: str | None) -> list[dict[str, Any]]:
    """The runs behind the adapter a run continues (read before training: that directory may be replaced later,
    e.g. when the continued adapter is shipped over it); empty for a new adapter or one from elsewhere."""
    if not from_adapter or not (Path(from_adapter).expanduser() / MANIFEST).is_file():
        return []
    parent = read_manifest(Path(from_adapter).expanduser())
    return [*parent.get("lineage", []), lineage_entry(parent)]


def adapter_manifest(*, config: dict, base_path: str, dataset: dict, metrics: dict,
                     lineage: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The manifest of a trained adapter; ``lineage`` (:func:`parent_lineage`) lists the runs it continued, and
    ``seen`` totals what all of them and this one trained on."""
    manifest = {
        "format": FORMAT,
        "base_model": config["base_model"],
        "base_sha256": base_weights_sha256(base_path),
        "from_adapter": config.get("from_adapter"),
        "dataset": dataset,
        "config": config,
        "versions": library_versions(),
        "metrics": metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lineage": list(lineage),
    }
    runs = [*lineage, lineage_entry(manifest)]
    return {**manifest, "seen": seen_totals(runs)}


def seen_totals(runs: list[dict[str, Any]]) -> dict[str, int]:
    """Rows (domain and replay, counted each time a step used them) and tokens an adapter's runs trained on."""
    return {"runs": len(runs), **{key: sum(run.get(key) or 0 for run in runs) for key in ("rows_seen", "tokens")}}


def _save_adapter_files(model, directory: Path, base_name: str) -> None:
    model.save_pretrained(str(directory))
    for path in directory.iterdir():
        if path.name not in ADAPTER_FILES:  # PEFT's README model card: a template with nothing filled in
            path.unlink()
    # name the base by its store name, not this machine's cache path, so the adapter works on another machine
    # (rewritten after saving: PEFT reads the base's config from that path while it saves)
    config_path = directory / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = base_name
    config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    for name in ADAPTER_FILES:
        (directory / name).chmod(0o644)  # safetensors writes owner-only files; an artifact is shared


def write_adapter(model, target: Path, manifest: dict[str, Any], *, base_name: str) -> Path:
    """Save the PEFT adapter + manifest into ``target`` atomically (build beside it, then rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _save_adapter_files(model, building, base_name)
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (building / MANIFEST).chmod(0o644)
        install_directory(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target


def install_directory(building: Path, target: Path) -> None:
    """Rename the finished ``building`` directory to ``target``, replacing an older one without a moment in which
    a reader could see a mix of both."""
    building.chmod(0o755)
    if target.exists():
        # a directory cannot be replaced by rename while it has files: move the old one aside first
        previous = target.with_name(f".{target.name}.previous-{os.getpid()}")
        os.replace(target, previous)
        os.replace(building, target)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(building, target)


def read_manifest(adapter_dir: str | Path) -> dict[str, Any]:
    path = Path(adapter_dir) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: unreadable adapter manifest ({error}); retrain with `clauseloop finetune sft`")
