"""Preference pairs from human feedback, in the same rows as the judge's pairs (`clauseloop finetune pairs`).

A reviewer's thumbs-down with a corrected span is the clearest preference there is: the correction is *chosen*, the
answer shown is *rejected*. A thumbs-up and a thumbs-down on different answers for the same contract and category
pair the same way (up chosen, down rejected). Anything else says too little to make a pair — a lone thumbs-up has
nothing to beat, and a lone thumbs-down without a correction does not say what was right — and is counted, not
guessed at. The prompt is exactly what the QA program would send the student for that contract and category, so
DPO trains the behaviour users saw. Records about contracts outside the data, or about free questions, are
counted and left out.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from clauseloop.data import CuadDataset
from clauseloop.data.atomic import atomic_path
from clauseloop.feedback.records import FeedbackRecord, contract_hash

logger = logging.getLogger(__name__)
SOURCE = "human"


def _quotes(spans) -> list[str]:
    return [span.text for span in spans or ()]


def preference_sides(records: list[FeedbackRecord]) -> list[tuple[list[str], list[str], list[int]]]:
    """(chosen quotes, rejected quotes, record ids) for one contract and category's records."""
    sides = []
    ups = [r for r in records if r.vote == "up"]
    for record in records:
        if record.vote == "down" and record.corrected_spans is not None:
            sides.append((_quotes(record.corrected_spans), _quotes(record.spans), [record.id]))
        elif record.vote == "down":
            for up in ups:
                if _quotes(up.spans) != _quotes(record.spans):
                    sides.append((_quotes(up.spans), _quotes(record.spans), [up.id, record.id]))
    return [side for side in sides if side[0] != side[1]]


def _grouped(records: Iterable[FeedbackRecord], dataset: CuadDataset, counts: Counter) -> dict:
    by_hash = {contract_hash(c.text): c for c in dataset.contracts.values()}
    groups: dict[tuple[str, str], list[FeedbackRecord]] = {}
    for record in records:
        counts["records"] += 1
        if record.contract_hash not in by_hash:
            counts["unknown_contract"] += 1
        elif not record.category:
            counts["free_question"] += 1
        else:
            groups.setdefault((by_hash[record.contract_hash].id, record.category), []).append(record)
    return groups


def pair_rows(records: Iterable[FeedbackRecord], dataset: CuadDataset, program: Any, counts: Counter) -> list[dict]:
    """DPO rows (``prompt``, ``chosen``, ``rejected`` as chat messages) from feedback records."""
    from clauseloop.finetune.rows import _adapter_messages, program_inputs, row_id

    rows = []
    for (contract_id, category), group in sorted(_grouped(records, dataset, counts).items()):
        sides = preference_sides(group)
        counts["unpaired"] += sum(1 for r in group if not any(r.id in ids for _, _, ids in sides))
        if not sides:
            continue
        task, passages, _ = program_inputs(program, dataset.contracts[contract_id], category, None)
        prompt = _adapter_messages(task, passages, [])[:2]
        for chosen, rejected, ids in sides:
            chosen_message = [_adapter_messages(task, passages, chosen)[2]]
            rejected_message = [_adapter_messages(task, passages, rejected)[2]]
            rows.append({"prompt": prompt, "chosen": chosen_message, "rejected": rejected_message, "source": SOURCE,
                         "contract_id": contract_id, "category": category, "feedback_ids": ids,
                         "id": row_id(prompt, chosen_message + rejected_message)})
    counts["pairs"] = len(rows)
    return rows


def write_feedback_pairs(records: Iterable[FeedbackRecord], dataset: CuadDataset, out: str | Path) -> dict[str, Any]:
    """Write the pairs as JSON lines (atomically); returns the counts (records, pairs, and what was left out)."""
    import json

    from clauseloop.program.evaluation import build_program

    counts: Counter = Counter()
    rows = pair_rows(records, dataset, build_program("zero-shot", dataset), counts)
    with atomic_path(out) as temporary:
        temporary.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    logger.info("feedback pairs: %s", dict(counts))
    return {"file": str(out), **{key: counts[key] for key in
                                 ("records", "pairs", "unpaired", "unknown_contract", "free_question")}}
