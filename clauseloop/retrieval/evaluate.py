"""Span recall@k: can the QA program see the answer in what retrieval hands it?

For every answerable question, each gold span counts as *found at k* when at least ``min_coverage`` (50 %) of its
characters lie inside the union of the top-k passages retrieved for that question within its own contract.
Questions without gold spans are left out (there is nothing to find). Recall is the share of gold spans found,
overall and per category.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from clauseloop.data.records import ClauseQuestion, Span
from clauseloop.retrieval.chunking import Passage

logger = logging.getLogger(__name__)

DEFAULT_KS = (1, 5, 10)
MIN_COVERAGE = 0.5


def covered_share(span: Span, passages: Iterable[Passage]) -> float:
    """The share of ``span``'s characters inside the union of ``passages`` (offsets into the same contract)."""
    if not span.text:
        return 0.0
    pieces = sorted((max(p.start, span.start), min(p.end, span.end)) for p in passages)
    covered, reach = 0, span.start
    for start, end in pieces:
        start = max(start, reach)
        if end > start:
            covered += end - start
            reach = end
    return covered / len(span.text)


@dataclass
class RecallReport:
    """Span recall at each k, overall and per category, with the counts behind them."""

    ks: tuple[int, ...]
    spans: int = 0
    questions: int = 0
    found: dict[int, int] = field(default_factory=dict)
    per_category: dict[str, dict] = field(default_factory=dict)

    def recall(self, k: int) -> float:
        return self.found.get(k, 0) / self.spans if self.spans else 0.0

    def to_dict(self) -> dict:
        categories = {
            name: {"spans": row["spans"], **{f"recall@{k}": row["found"][k] / row["spans"] for k in self.ks}}
            for name, row in sorted(self.per_category.items())
        }
        overall = {f"recall@{k}": self.recall(k) for k in self.ks}
        return {"questions": self.questions, "spans": self.spans, **overall, "per_category": categories}


Retrieve = Callable[[ClauseQuestion, int], Sequence[Passage]]


def span_recall(
    questions: Iterable[ClauseQuestion],
    retrieve: Retrieve,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    min_coverage: float = MIN_COVERAGE,
    progress: bool = False,
) -> RecallReport:
    """Run ``retrieve(question, max(ks))`` for each answerable question and score its top-k prefixes."""
    from tqdm.auto import tqdm

    ks = tuple(sorted(set(ks)))
    if not ks or ks[0] < 1:
        raise ValueError(f"k values must be positive integers, got {ks}")
    report = RecallReport(ks=ks, found={k: 0 for k in ks})
    answerable = [q for q in questions if q.answers]
    for question in tqdm(answerable, desc="recall", disable=not progress, leave=False):
        passages = list(retrieve(question, ks[-1]))
        if any(p.contract_id != question.contract_id for p in passages):
            raise ValueError(f"retrieval for {question.id} returned passages of another contract")
        row = report.per_category.setdefault(question.category, {"spans": 0, "found": defaultdict(int)})
        report.questions += 1
        for span in question.answers:
            report.spans += 1
            row["spans"] += 1
            for k in ks:
                if covered_share(span, passages[:k]) >= min_coverage:
                    report.found[k] += 1
                    row["found"][k] += 1
    logger.info("span recall over %d spans: %s", report.spans, {k: round(report.recall(k), 3) for k in ks})
    return report


def evaluate_index(
    index,
    questions: Iterable[ClauseQuestion],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    builder=None,
    mode: str | None = None,
    progress: bool = False,
) -> RecallReport:
    """Span recall of a :class:`~clauseloop.retrieval.index.PassageIndex`: each question searches its own contract
    with the query ``builder(category)`` (by default :class:`LearnedQueryBuilder`: hand-written + learned)."""
    from clauseloop.retrieval.queries import LearnedQueryBuilder

    builder = builder or LearnedQueryBuilder()
    questions = list(questions)
    missing = sorted({q.contract_id for q in questions if q.answers} - set(index.ranges))
    if missing:
        raise ValueError(
            f"{len(missing)} contracts of these questions are not in the index (e.g. {missing[0]!r}); "
            "build the index over the same data"
        )

    def retrieve(question: ClauseQuestion, k: int) -> list[Passage]:
        hits = index.search(builder(question.category), k, contract_id=question.contract_id, mode=mode)
        return [hit.passage for hit in hits]

    return span_recall(questions, retrieve, ks, progress=progress)
