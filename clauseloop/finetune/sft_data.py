"""The SFT training input: dataset rows read for training, checked, fingerprinted and measured in tokens.

The file is the JSON-lines dataset of :mod:`clauseloop.finetune.dataset` (TRL conversational prompt-completion
rows plus bookkeeping columns). Training streams it line by line and reads only complete lines — the file may
still be growing while a build runs, and a half-written last line is not a row — and fingerprints exactly the
bytes it read (sha256 + row count), so an adapter's manifest names the data it saw. Only ``prompt`` and
``completion`` reach the trainer (the bookkeeping columns, ``source``, ``quotes``, …, would otherwise travel
through TRL's collator), written to a file of their own that the trainer reads memory-mapped through Arrow: a
dataset larger than memory trains.

Rows longer than ``max_length`` tokens are dropped rather than truncated: TRL keeps the start of a sequence, so a
truncated row loses its completion — the only part with a loss — and would train nothing but cost a full step.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
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


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"SFT dataset {str(path)!r} does not exist; {BUILD_HINT}")
    return path


def iter_training_pairs(path: str | Path, digest=None) -> Iterator[dict[str, Any]]:
    """Stream the pairs of a dataset file line by line (a file larger than memory is fine), validating each.

    Only complete lines count — the file may still be growing while a build runs — and ``digest`` (a hashlib
    object) is fed exactly those bytes. Raises with the file and line of a malformed row, or on an empty file.
    """
    path, rows, partial = _existing(path), 0, False
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                partial = True
                break
            if digest is not None:
                digest.update(line)
            if line.strip():
                rows += 1
                yield _training_pair(line, path, number)
    if partial:
        logger.warning("%s: ignoring a partial last line (the file is still being written?)", path)
    if not rows:
        raise ValueError(f"SFT dataset {str(path)!r} has no rows; {BUILD_HINT}")


def read_training_rows(path: str | Path) -> TrainingRows:
    """All pairs of a (small) dataset file in memory, with its fingerprint; training itself streams the file."""
    digest = hashlib.sha256()
    rows = list(iter_training_pairs(path, digest))
    return TrainingRows(str(_existing(path)), digest.hexdigest(), rows)


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


@dataclass(frozen=True)
class PreparedRows:
    """What the trainer reads: the pairs that fit, written to ``file`` (loaded memory-mapped, never all in RAM),
    the fingerprint of the dataset they came from, and a summary for the manifest."""

    file: Path
    fingerprint: dict[str, Any]
    summary: dict[str, Any]


def prepare_training_rows(path: str | Path, tokenizer, max_length: int, out_file: Path) -> PreparedRows:
    """Stream ``path``, keep the rows of at most ``max_length`` tokens and write them to ``out_file``; raise with
    the fix when none fits."""
    digest, lengths, kept = hashlib.sha256(), [], 0
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w") as out:
        for row in iter_training_pairs(path, digest):
            lengths.append(token_length(tokenizer, row))
            if lengths[-1] <= max_length:
                out.write(json.dumps(row) + "\n")
                kept += 1
        if not kept:
            raise ValueError(f"every row of {path} is longer than max_length={max_length} tokens "
                             f"(shortest: {min(lengths)}); raise --max-length")
    dropped = len(lengths) - kept
    if dropped:
        logger.warning(
            "%d of %d rows are longer than max_length=%d tokens and are left out (longest: %d); raise "
            "max_length to train on them", dropped, len(lengths), max_length, max(lengths),
        )
    fingerprint = {"path": str(_existing(path)), "sha256": digest.hexdigest(), "rows": len(lengths)}
    summary = {"rows_trained": kept, "rows_too_long": dropped, "token_lengths": length_summary(lengths)}
    return PreparedRows(out_file, fingerprint, summary)


def training_dataset(file: Path, cache_dir: Path):
    """A ``datasets.Dataset`` over ``file`` (Arrow, memory-mapped from ``cache_dir``): the two columns TRL reads."""
    from datasets import load_dataset

    return load_dataset("json", data_files=str(file), split="train", cache_dir=str(cache_dir))
