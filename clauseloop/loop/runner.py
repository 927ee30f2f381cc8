"""Fingerprinted stages: run a stage only when its inputs changed, continue a killed run where it stopped.

A stage is a name, a JSON-able description of its inputs (contract content hashes, its config, the fingerprints of
the upstream artifacts it reads) and a function that writes into the stage's directory and returns JSON-able
outputs. The input fingerprint is the sha256 of that description plus the code version (the package version and a
hash of the stage's source module). ``DIR/state.json`` records, per stage, the fingerprint it last finished with
and its outputs, written atomically *after* the stage finished — so a stage killed half-way runs again on the next
loop (stages built on resumable pieces, such as the SFT trainer's checkpoints, continue inside), and a finished one
is skipped as long as nothing it depends on changed.

``DIR/loop.lock`` (an ``fcntl`` lock, released by the OS when the process dies) refuses a second loop on the same
directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from clauseloop.data.atomic import write_json_atomic

logger = logging.getLogger(__name__)


class LoopLocked(RuntimeError):
    """Another loop holds the directory's lock."""


def fingerprint(payload: Any) -> str:
    """A stable 16-hex-digit hash of a JSON-able value (keys sorted)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def code_version(function: Callable) -> str:
    """The package version and a hash of the module defining ``function``: editing a stage re-runs it."""
    from clauseloop import __version__

    module = inspect.getmodule(function)
    source = inspect.getsource(module) if module else ""
    return f"{__version__}:{hashlib.sha256(source.encode()).hexdigest()[:12]}"


@dataclass
class StageRecord:
    """What one stage did in this loop run: ``ran`` or ``skipped`` (unchanged), its fingerprint, outputs, time."""

    name: str
    status: str
    fingerprint: str
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    reason: str = ""


@contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / "loop.lock", "w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LoopLocked(
                f"another `clauseloop loop` is running on {directory}; wait for it to finish, or pass another --out"
            ) from None
        yield
    finally:
        handle.close()


class StageRunner:
    """Runs stages under ``directory``; ``records`` lists what each did, in order."""

    def __init__(self, directory: str | Path, on_stage: Callable[[StageRecord], None] | None = None):
        self.directory = Path(directory)
        self.state_file = self.directory / "state.json"
        self.state: dict[str, Any] = self._read_state()
        self.records: list[StageRecord] = []
        self.on_stage = on_stage

    def _read_state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {"stages": {}}
        try:
            return json.loads(self.state_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise RuntimeError(f"{self.state_file} is corrupted ({error}); delete it to re-run every stage") from error

    def stage_dir(self, name: str) -> Path:
        return self.directory / "stages" / name

    def outputs(self, name: str) -> dict[str, Any]:
        """The outputs a stage last finished with (empty when it never did)."""
        return self.state["stages"].get(name, {}).get("outputs", {})

    def run(self, name: str, inputs: dict[str, Any], function: Callable[[Path], dict[str, Any]]) -> StageRecord:
        """Run ``function(stages/NAME/FINGERPRINT)`` unless the stage last finished with the same fingerprint."""
        stage_fingerprint = fingerprint({"inputs": inputs, "code": code_version(function)})
        previous = self.state["stages"].get(name)
        if previous and previous.get("fingerprint") == stage_fingerprint:
            record = StageRecord(name, "skipped", stage_fingerprint, previous.get("outputs", {}), reason="unchanged")
        else:
            started = time.perf_counter()
            # One directory per fingerprint: a killed stage resumes in its own directory, and a stage whose inputs
            # changed starts clean instead of resuming someone else's checkpoints.
            outputs = function(self.stage_dir(name) / stage_fingerprint) or {}
            record = StageRecord(name, "ran", stage_fingerprint, outputs, round(time.perf_counter() - started, 2))
            self.state["stages"][name] = {"fingerprint": stage_fingerprint, "outputs": outputs,
                                          "finished": time.time(), "seconds": record.seconds}
            write_json_atomic(self.state_file, self.state)
        return self._record(record)

    def skip(self, name: str, reason: str) -> StageRecord:
        """Record a stage that had nothing to do (no new rows, no feedback …)."""
        return self._record(StageRecord(name, "skipped", "", {}, reason=reason))

    def _record(self, record: StageRecord) -> StageRecord:
        logger.info("stage %s: %s%s", record.name, record.status, f" ({record.reason})" if record.reason else "")
        self.records.append(record)
        if self.on_stage:
            self.on_stage(record)
        return record
