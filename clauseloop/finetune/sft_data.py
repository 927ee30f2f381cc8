"""The SFT training input: dataset rows read for training, checked, fingerprinted and measured in tokens.

The file is the JSON-lines dataset of :mod:`clauseloop.finetune.dataset` (TRL conversational prompt-completion
rows plus bookkeeping columns). Training reads only complete lines — the file may still be growing while a build
runs, and a half-written last line is not a row — and fingerprints exactly the bytes it read (sha256 + row count),
so an adapter's manifest names the data it saw. Only ``prompt`` and ``completion`` reach the trainer: the
bookkeeping columns (``source``, ``quotes``, ``score``, …) would otherwise travel through TRL's collator.

Rows longer than ``max_length`` tokens are dropped rather than truncated: TRL keeps the start of a sequence, so a
truncated row loses its completion — the only part with a loss — and would train nothing but cost a full step.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BUILD_HINT = "build it with `clauseloop finetune data --out FILE`"


@dataclass(frozen=True)
class TrainingRows:
    """The prompt-completion pairs read from ``path``, and the fingerprint of the bytes they came from."""

    path: str
    sha256: str
    rows: list[dict[str, Any]] = field(repr=False)

    def fingerprint(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "rows": len(self.rows)}


def _is_message_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in value)
    )


def _training_pair(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{number} is not a JSON row ({error}); fix or remove that line") from None
    if not isinstance(row, dict) or not _is_message_list(row.get("prompt")) or not _is_message_list(
        row.get("completion")
    ):
        raise ValueError(
            f"{path}:{number} has no 'prompt' and 'completion' message lists ([{{'role': ..., 'content': ...}}]); "
            f"SFT needs TRL prompt-completion rows: {BUILD_HINT}"
        )
    return {"prompt": row["prompt"], "completion": row["completion"]}


def read_training_rows(path: str | Path) -> TrainingRows:
    """Read the complete lines of a dataset file; raise with the fix on a missing, empty or malformed file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"SFT dataset {str(path)!r} does not exist; {BUILD_HINT}")
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if len(complete) < len(raw):
        logger.warning("%s: ignoring a partial last line (the file is still being written?)", path)
    rows = [
        _training_pair(line, path, number)
        for number, line in enumerate(complete.splitlines(), start=1)
        if line.strip()
    ]
    if not rows:
        raise ValueError(f"SFT dataset {str(path)!r} has no rows; {BUILD_HINT}")
    return TrainingRows(str(path), hashlib.sha256(complete).hexdigest(), rows)


def token_length(tokenizer, row: dict[str, Any]) -> int:
    """Tokens of prompt + completion as the trainer sees them (the tokenizer's chat template)."""
    rendered = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True, return_dict=True)
    return len(rendered["input_ids"])


def length_summary(lengths: list[int]) -> dict[str, int]:
    ordered = sorted(lengths)

    def at(fraction: float) -> int:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    mean = round(sum(ordered) / len(ordered))
    return {"min": ordered[0], "p50": at(0.5), "p95": at(0.95), "max": ordered[-1], "mean": mean}


def fitting_rows(training: TrainingRows, tokenizer, max_length: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows that fit ``max_length`` tokens, and a summary (lengths, rows dropped) for the manifest."""
    lengths = [token_length(tokenizer, row) for row in training.rows]
    kept = [row for row, length in zip(training.rows, lengths) if length <= max_length]
    dropped = len(training.rows) - len(kept)
    if not kept:
        raise ValueError(
            f"every row of {training.path} is longer than max_length={max_length} tokens "
            f"(shortest: {min(lengths)}); raise --max-length"
        )
    if dropped:
        logger.warning(
            "%d of %d rows are longer than max_length=%d tokens and are left out (longest: %d); raise "
            "max_length to train on them", dropped, len(lengths), max_length, max(lengths),
        )
    summary = {"rows_trained": len(kept), "rows_too_long": dropped, "token_lengths": length_summary(lengths)}
    return kept, summary


def training_dataset(rows: list[dict[str, Any]]):
    """A ``datasets.Dataset`` with the two columns TRL reads; everything else stays out of the trainer."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": row["prompt"], "completion": row["completion"]} for row in rows])
