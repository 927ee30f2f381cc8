"""The DPO training input: preference pairs read, checked, fingerprinted and measured in tokens.

A pairs file is JSON lines in TRL's conversational preference form — ``prompt`` (system and user messages),
``chosen`` and ``rejected`` (one assistant message each) — plus provenance columns (``source``, ``contract_id``,
``scores``, ``judge``, …) that never reach the trainer. :mod:`clauseloop.finetune.pairs` writes such files; so
can anything else (human feedback, hand-made pairs).

A line that is not JSON stops the run with its file and line: the file is damaged and no count would say how.
A well-formed JSON row that cannot train is skipped and counted by reason instead, since pairs come from sampling
and judging at scale and a few bad ones are expected:

* ``malformed``: ``prompt``, ``chosen`` or ``rejected`` is not a list of ``{"role", "content"}`` messages;
* ``empty_side``: the chosen or the rejected answer has no text;
* ``identical``: chosen equals rejected (the DPO loss is exactly zero: a step that trains nothing);
* ``too_long``: prompt + the longer answer exceed ``max_length`` tokens. Dropped rather than truncated: TRL keeps
  the start of a sequence, so truncation cuts the answers, the only part with a loss.

Streaming, fingerprinting and the trainer's Arrow view are :mod:`clauseloop.finetune.sft_data`'s.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clauseloop.finetune.sft_data import PreparedRows, length_summary, token_length

logger = logging.getLogger(__name__)

BUILD_HINT = "build it with `clauseloop finetune pairs --out FILE`"
SKIP_REASONS = ("malformed", "empty_side", "identical", "too_long")


def _is_message_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in value)
    )


def _text(messages: list[dict[str, str]]) -> str:
    return "".join(message["content"] for message in messages)


def skip_reason(row: Any) -> str | None:
    """Why a parsed row cannot be a training pair (one of ``SKIP_REASONS`` but ``too_long``), or None."""
    if not isinstance(row, dict) or not all(_is_message_list(row.get(key)) for key in ("prompt", "chosen", "rejected")):
        return "malformed"
    if not _text(row["chosen"]).strip() or not _text(row["rejected"]).strip():
        return "empty_side"
    if row["chosen"] == row["rejected"]:
        return "identical"
    return None


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {str(path)!r} does not exist; {BUILD_HINT}")
    return path


def iter_pair_rows(path: str | Path, digest=None) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """``(line number, row, skip reason)`` for every non-blank complete line of a pairs file.

    Only complete lines count (the file may still be growing while ``clauseloop finetune pairs`` runs), and
    ``digest`` is fed exactly those bytes. A line that is not JSON raises with its file and line.
    """
    path = _existing(path)
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                logger.warning("%s: ignoring a partial last line (the file is still being written?)", path)
                break
            if digest is not None:
                digest.update(line)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not a JSON row ({error}); fix or remove that line") from None
            yield number, row, skip_reason(row)


def pair_token_length(tokenizer, row: dict[str, Any]) -> int:
    """Tokens of the prompt with the longer of the two answers, as the trainer renders them."""
    return max(token_length(tokenizer, {"prompt": row["prompt"], "completion": row[side]})
               for side in ("chosen", "rejected"))


def prepare_preference_rows(path: str | Path, tokenizer, max_length: int, out_file: Path) -> PreparedRows:
    """Stream the pairs file, write the trainable pairs (``prompt``, ``chosen``, ``rejected`` only) to
    ``out_file`` and count the rest by reason; raise with the fix when none can train."""
    digest, skipped, lengths, rows = hashlib.sha256(), Counter(), [], 0
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w") as out:
        for _number, row, reason in iter_pair_rows(path, digest):
            rows += 1
            if reason is None:
                lengths.append(pair_token_length(tokenizer, row))
                reason = "too_long" if lengths[-1] > max_length else None
            if reason:
                skipped[reason] += 1
                continue
            out.write(json.dumps({key: row[key] for key in ("prompt", "chosen", "rejected")}) + "\n")
    kept = rows - sum(skipped.values())
    if not rows:
        raise ValueError(f"pairs file {str(path)!r} has no rows; {BUILD_HINT}")
    if not kept:
        raise ValueError(f"none of the {rows} pairs of {path} can train ({dict(skipped)}); "
                         + ("raise --max-length" if skipped["too_long"] else BUILD_HINT))
    if skipped:
        logger.warning("%d of %d pairs of %s are skipped: %s", rows - kept, rows, path, dict(skipped))
    fingerprint = {"path": str(_existing(path)), "sha256": digest.hexdigest(), "rows": rows}
    summary = {"pairs_trained": kept, "pairs_skipped": {reason: skipped[reason] for reason in SKIP_REASONS},
               "token_lengths": length_summary(lengths) if lengths else None}
    return PreparedRows(out_file, fingerprint, summary)
