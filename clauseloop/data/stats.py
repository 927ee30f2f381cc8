"""Dataset statistics: what `clauseloop data stats` prints."""

from __future__ import annotations

import statistics
from collections import Counter

from clauseloop.data.records import CuadDataset


def dataset_stats(dataset: CuadDataset) -> dict:
    """Counts, answerable share, per-category counts and the contract length distribution (characters)."""
    lengths = sorted(len(c.text) for c in dataset.contracts.values())
    asked, answered, spans = Counter(), Counter(), Counter()
    for question in dataset.questions:
        asked[question.category] += 1
        answered[question.category] += question.answerable
        spans[question.category] += len(question.answers)
    n_answerable = sum(answered.values())
    return {
        "source": dataset.source,
        "fingerprint": dataset.fingerprint(),
        "contracts": len(dataset.contracts),
        "questions": len(dataset.questions),
        "answerable": n_answerable,
        "answerable_share": round(n_answerable / len(dataset.questions), 4) if dataset.questions else 0.0,
        "answer_spans": sum(spans.values()),
        "categories": len(asked),
        "skipped_records": len(dataset.skipped),
        "contract_chars": _distribution(lengths),
        "per_category": {
            name: {"questions": asked[name], "answerable": answered[name], "spans": spans[name]}
            for name in sorted(asked)
        },
    }


def _distribution(values: list[int]) -> dict:
    if not values:
        return {"min": 0, "median": 0, "mean": 0, "p90": 0, "max": 0, "total": 0}
    return {
        "min": values[0],
        "median": int(statistics.median(values)),
        "mean": int(statistics.fmean(values)),
        "p90": values[min(len(values) - 1, int(0.9 * len(values)))],
        "max": values[-1],
        "total": sum(values),
    }
