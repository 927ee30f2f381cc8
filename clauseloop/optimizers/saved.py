"""Writing compiled programs: ``DIR/program.json`` (DSPy JSON state, no LM, no pickle) and ``DIR/manifest.json``.

The reading side — validation, the refusal of damaged files, ``load_compiled`` — lives in
:mod:`clauseloop.program.saved`, so that running a compiled program never imports the optimizers.
"""

from __future__ import annotations

import math
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import dspy

from clauseloop.data.atomic import atomic_path, write_json_atomic
from clauseloop.optimizers.config import OptimizeConfig
from clauseloop.program.saved import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    PROGRAM_FILE,
    read_program_state,
)

VERSIONED_PACKAGES = ("dspy", "transformers", "torch")


def library_versions() -> dict[str, str | None]:
    """Versions of clauseloop and of the libraries that shape a compiled program's prompts and scores."""
    import clauseloop

    versions: dict[str, str | None] = {"clauseloop": clauseloop.__version__, "python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return versions


def describe_lm(spec: str) -> dict[str, str | None]:
    """A role or model string as the manifest records it: what was asked for, the model it meant and where it ran."""
    from clauseloop.engine.roles import ROLES, load_roles

    if spec not in ROLES:
        return {"spec": spec, "model": spec, "api_base": None}
    role = load_roles().role(spec)
    return {"spec": spec, "model": role.model, "api_base": role.api_base}


def build_manifest(
    config: OptimizeConfig,
    *,
    data: dict[str, Any],
    lm_usage: dict[str, Any],
    dev_scores: dict[str, Any],
    candidates: list[dict[str, Any]] | None = None,
    qa_config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to judge, compare or reproduce a compiled program (see ``clauseloop.program.saved``)."""
    return {
        "format": MANIFEST_FORMAT,
        "optimizer": config.optimizer,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(config),
        "qa_config": qa_config or {},
        "data": data,
        "teacher": describe_lm(config.teacher),
        "student": describe_lm(config.student),
        "versions": library_versions(),
        "lm_calls": {key: value for key, value in lm_usage.items() if key != "seconds"},
        "seconds": lm_usage.get("seconds", {}),
        "candidates": candidates or [],
        "dev_scores": dev_scores,
    }


def stateless_copy(program: dspy.Module) -> dspy.Module:
    """A copy of ``program`` whose predictors hold no LM: the LM is picked at run time, never stored."""
    copy = program.deepcopy()
    for predictor in copy.predictors():
        predictor.lm = None
    return copy


def save_compiled(out_dir: str | Path, program: dspy.Module, manifest: dict[str, Any]) -> dict[str, str]:
    """Write ``program.json`` then ``manifest.json`` into ``out_dir``, each atomically; returns their paths.

    The manifest goes last: a directory with a manifest holds a complete program.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if manifest.get("format") != MANIFEST_FORMAT or "optimizer" not in manifest:
        raise ValueError("the manifest must come from clauseloop.optimizers.saved.build_manifest(...)")
    program_path = _save_program_atomic(stateless_copy(program), out_dir / PROGRAM_FILE)
    read_program_state(out_dir, manifest["optimizer"])  # what was written reads back, without LM state
    manifest_path = write_json_atomic(out_dir / MANIFEST_FILE, _json_safe(manifest))
    return {"program": str(program_path), "manifest": str(manifest_path)}


def _save_program_atomic(program: dspy.Module, path: Path) -> Path:
    # DSPy's JSON save needs a path ending in .json
    with atomic_path(path, suffix=".json") as temporary:
        program.save(str(temporary))
    return path


def _json_safe(value: Any) -> Any:
    """Strict JSON: NaN scores (e.g. no answerable question in a tiny valset) become null, odd objects strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
