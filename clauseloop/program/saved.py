"""Compiled programs on disk: a directory with ``program.json`` and ``manifest.json``, read back and checked.

``clauseloop optimize`` writes the directory (:func:`clauseloop.optimizers.saved.save_compiled`); everything that
reads it lives here, in the program stage, so ``evaluate``, ``ask`` and later stages load compiled programs
without importing the optimizers.

* ``program.json`` is DSPy's JSON state (``module.save(path)``): per predictor its demos, instructions and field
  descriptions, with ``"lm": null`` — the LM is chosen when the program runs, never stored with it. No pickle.
* ``manifest.json`` says how the program was made: optimizer, settings, data fingerprint, teacher and student,
  library versions, LM calls, wall time and the dev scores.

Both files are written atomically (temp file + ``os.replace``), the manifest last, so a directory holding both
was completely written. Anything unreadable is refused with the command that rebuilds it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from clauseloop.data import CuadDataset

logger = logging.getLogger(__name__)

PROGRAM_FILE = "program.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
REQUIRED_MANIFEST_KEYS = ("format", "optimizer", "settings", "data", "teacher", "student", "versions", "dev_scores")


class SavedProgramError(ValueError):
    """A compiled-program directory that cannot be used; the message says how to rebuild it."""


def rebuild_hint(directory: str | Path, optimizer: str | None = None) -> str:
    name = optimizer or "bootstrap|random-search|mipro"
    return f"re-run `clauseloop optimize --optimizer {name} ... --out {directory}` to write it again"


def _read_json_object(path: Path, directory: Path, what: str, optimizer: str | None = None) -> dict[str, Any]:
    if not path.is_file():
        raise SavedProgramError(
            f"{path} is missing, so {directory} is no compiled program; {rebuild_hint(directory, optimizer)}"
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SavedProgramError(
            f"{path} is not valid JSON ({error}); the {what} is damaged: {rebuild_hint(directory, optimizer)}"
        ) from None
    if not isinstance(payload, dict):
        raise SavedProgramError(
            f"{path} holds a JSON {type(payload).__name__}, not the {what}; {rebuild_hint(directory, optimizer)}"
        )
    return payload


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a compiled-program directory, checked for the keys every manifest has."""
    directory = Path(directory)
    manifest = _read_json_object(directory / MANIFEST_FILE, directory, "manifest")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    hint = rebuild_hint(directory, manifest.get("optimizer"))
    if missing:
        raise SavedProgramError(f"{directory / MANIFEST_FILE} lacks {', '.join(missing)}; {hint}")
    if manifest["format"] != MANIFEST_FORMAT:
        raise SavedProgramError(
            f"{directory / MANIFEST_FILE} has format {manifest['format']!r}, this clauseloop reads format "
            f"{MANIFEST_FORMAT}; {hint}"
        )
    return manifest


def read_program_state(directory: str | Path, optimizer: str | None = None) -> dict[str, Any]:
    """``program.json`` as DSPy wrote it; refused when a predictor carries LM state (it never should)."""
    directory = Path(directory)
    state = _read_json_object(directory / PROGRAM_FILE, directory, "program state", optimizer)
    with_lm = [name for name, value in state.items() if isinstance(value, dict) and value.get("lm") is not None]
    if with_lm:
        raise SavedProgramError(
            f"{directory / PROGRAM_FILE} stores LM state for {', '.join(with_lm)}; compiled programs are saved "
            f"without their LM (it is chosen at run time): {rebuild_hint(directory, optimizer)}"
        )
    return state


def load_compiled(directory: str | Path, dataset: CuadDataset, *, gate: bool = True):
    """The :class:`~clauseloop.program.qa.ContractQA` saved in ``directory``, over ``dataset``'s contracts."""
    from clauseloop.program.qa import ContractQA, QAConfig

    directory = Path(directory)
    manifest = read_manifest(directory)
    state = read_program_state(directory, manifest["optimizer"])
    warn_on_version_change(manifest)
    program = ContractQA(dataset.contracts, config=QAConfig(gate=gate))
    expected = sorted(name for name, _ in program.named_parameters())
    missing = [name for name in expected if name not in state]
    if missing:
        raise SavedProgramError(
            f"{directory / PROGRAM_FILE} has no state for {', '.join(missing)} (it holds {sorted(state)}); it was "
            f"not saved from the QA program: {rebuild_hint(directory, manifest['optimizer'])}"
        )
    try:
        program.load_state(state)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise SavedProgramError(
            f"{directory / PROGRAM_FILE} does not fit the QA program ({type(error).__name__}: {error}); "
            f"{rebuild_hint(directory, manifest['optimizer'])}"
        ) from None
    return program


def warn_on_version_change(manifest: dict[str, Any]) -> None:
    """DSPy's prompt formatting changes between versions: say so when the program was compiled under another."""
    from importlib.metadata import PackageNotFoundError, version

    saved = (manifest.get("versions") or {}).get("dspy")
    try:
        installed = version("dspy")
    except PackageNotFoundError:
        return
    if saved and saved != installed:
        logger.warning("the program was compiled with dspy %s, this is dspy %s: its demos may format differently",
                       saved, installed)
