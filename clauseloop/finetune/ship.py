"""Ship an SFT adapter as the package's student: ``clauseloop finetune ship OUT/adapter``.

The student role defaults to ``clauseloop-student`` = SmolLM2 + the adapter in ``clauseloop/models/student/``
(:data:`clauseloop.models.store.SHIPPED_STUDENT_DIR`). Shipping copies a trained adapter there in float16 — half
the bytes, and LoRA deltas lose nothing that matters at fp16 once merged into fp32 weights — with its manifest plus
where it came from, and refuses an adapter over the size a package should carry (lower the LoRA rank instead).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from clauseloop.models.store import SHIPPED_STUDENT_DIR

WEIGHTS = "adapter_model.safetensors"
MAX_SHIPPED_BYTES = 10 * 1024 * 1024


def _fp16_weights(source: Path, target: Path) -> int:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = {name: value.to(torch.float16).contiguous() for name, value in load_file(str(source)).items()}
    save_file(tensors, str(target), metadata={"format": "pt"})
    target.chmod(0o644)
    return target.stat().st_size


def ship_adapter(adapter_dir: str | Path, target: str | Path = SHIPPED_STUDENT_DIR) -> dict[str, Any]:
    """Copy ``adapter_dir`` (an SFT run's ``OUT/adapter``) to ``target`` in float16; returns the new manifest."""
    from clauseloop.finetune.sft_output import (
        MANIFEST,
        install_directory,
        read_manifest,
    )

    source, target = Path(adapter_dir).expanduser(), Path(target)
    if not (source / WEIGHTS).is_file() or not (source / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{source} is not an adapter directory; pass OUT/adapter of `clauseloop finetune sft`")
    manifest = read_manifest(source)
    building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        size = _fp16_weights(source / WEIGHTS, building / WEIGHTS)
        if size > MAX_SHIPPED_BYTES:
            raise ValueError(f"{source}: {size / 2**20:.1f} MiB in float16, over the {MAX_SHIPPED_BYTES // 2**20} "
                             "MiB a package ships; train with a lower LoRA rank (lora_r)")
        shutil.copy2(source / "adapter_config.json", building / "adapter_config.json")
        manifest["shipped"] = {"dtype": "float16", "bytes": size, "from": str(source),
                               "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for path in building.iterdir():
            path.chmod(0o644)
        install_directory(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return manifest
