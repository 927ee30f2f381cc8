"""Corpus scoring exactly as CUAD's official ``evaluate.py``: AUPR and precision at 80 % / 90 % recall.

The official procedure, which this module reproduces number for number (checked against the script itself on
random nbest lists over real CUAD contracts: identical floats):

1. Thresholds ``list(np.arange(0.99, 0, -0.01)) + [0.001, 0]`` (101 values, float64 as numpy makes them).
2. At each threshold a question keeps its non-empty nbest texts whose probability is *strictly greater* than the
   threshold (a text listed twice keeps its last probability); ``metrics.score_question`` counts are pooled over
   the corpus into precision ``tp / (tp + fp)`` and recall ``tp / (tp + fn)`` (``nan`` on a zero denominator).
3. The curve starts with the anchor point (recall 0, precision 1); precisions are replaced by their running
   maximum from the low-threshold end (Python ``max``, so a ``nan`` is overwritten by any number after it).
4. AUPR is the trapezoidal area under (recall, processed precision), as ``sklearn.metrics.auc``; ``nan`` → 0.
5. Precision at recall R is the processed precision at the first point whose recall is ≥ R, else 0. The official
   loop zips the 102 points with the 101 thresholds, so the last point (threshold 0) is never looked at: a recall
   first reached at threshold 0 scores 0. We keep that quirk so numbers compare with published ones.

One formal difference: the official script switches on Parties containment when "Parties" occurs anywhere in the
question id; we test the category. The two agree on every id of CUAD (``<title>__<Category>``, no title contains
"Parties").

Instead of re-matching every question at every threshold we match once: a gold span counts as found at threshold
``t`` when the highest probability among the predictions matching it exceeds ``t``, and a prediction that matches
no gold is a false positive while its probability exceeds ``t``. That gives each contract a (tp, fp, fn) count per
threshold, so the bootstrap (contracts resampled with replacement, seeded) only re-sums counts.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from clauseloop.program.metrics import (
    QuestionScore,
    QuestionSummary,
    match_matrix,
    summarize,
    uses_containment,
)
from clauseloop.program.types import GoldQuestion

logger = logging.getLogger(__name__)

THRESHOLDS = np.array(list(np.arange(0.99, 0, -0.01)) + [0.001, 0], dtype=np.float64)
RECALL_TARGETS = {"prec_at_80_recall": 0.8, "prec_at_90_recall": 0.9}
NBest = Mapping[str, Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class ScoringConfig:
    """Corpus scoring options.

    ``answer_threshold``: the per-question summary (F1, no-answer accuracy, laziness) counts the nbest texts whose
    probability is above it; ``None`` counts every non-empty text (right for a program that returns only its
    answer; set e.g. 0.5 for an extractive model's long nbest list). ``bootstrap_draws`` 0 turns the CI off.
    """

    answer_threshold: float | None = None
    bootstrap_draws: int = 1000
    confidence_level: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class PRCurve:
    """Official curve points: index 0 is the (recall 0, precision 1) anchor, point ``i + 1`` is threshold ``i``."""

    precisions: tuple[float, ...]
    recalls: tuple[float, ...]
    thresholds: tuple[float, ...] = tuple(THRESHOLDS.tolist())


@dataclass(frozen=True)
class CorpusScore:
    aupr: float
    prec_at_80_recall: float
    prec_at_90_recall: float
    n_questions: int
    n_contracts: int
    summary: QuestionSummary
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    curve: PRCurve | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (``nan`` becomes ``None``); the curve is left out."""
        numbers = {"aupr": self.aupr, **{name: getattr(self, name) for name in RECALL_TARGETS}}
        numbers.update(self.summary.to_dict())
        out = {k: _json_number(v) for k, v in numbers.items()}
        out.update(n_questions=self.n_questions, n_contracts=self.n_contracts)
        out["ci"] = {k: [_json_number(lo), _json_number(hi)] for k, (lo, hi) in self.ci.items()}
        return out


def _json_number(value: float) -> float | None:
    return None if isinstance(value, float) and math.isnan(value) else value


def nbest_probabilities(entries: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Non-empty texts → probability, the last listing of a text winning (official ``get_preds``)."""
    probabilities: dict[str, float] = {}
    for entry in entries:
        if entry["text"] != "":
            probabilities[entry["text"]] = float(entry["probability"])
    return probabilities


@dataclass(frozen=True)
class QuestionEvidence:
    """One question matched once. ``gold_best``: per gold, the highest probability among the predictions matching
    it (-inf when none); ``unmatched``: the probability of each prediction matching no gold; ``answer``: the
    question's score for the predictions above the answer threshold."""

    gold_best: list[float]
    unmatched: list[float]
    answer: QuestionScore


def question_evidence(
    gold: GoldQuestion, entries: Sequence[Mapping[str, Any]], answer_threshold: float | None = None
) -> QuestionEvidence:
    probabilities = nbest_probabilities(entries)
    texts, probs = list(probabilities), list(probabilities.values())
    matches = match_matrix(gold.gold, texts, uses_containment(gold.category))
    matched_any = [any(row[j] for row in matches) for j in range(len(texts))]
    kept = [answer_threshold is None or p > answer_threshold for p in probs]
    tp = sum(any(hit and keep for hit, keep in zip(row, kept)) for row in matches)
    answer = QuestionScore(
        tp=tp,
        fp=sum(keep and not hit for keep, hit in zip(kept, matched_any)),
        fn=len(gold.gold) - tp,
        n_gold=len(gold.gold),
        n_pred=sum(kept),
    )
    return QuestionEvidence(
        gold_best=[max((p for p, hit in zip(probs, row) if hit), default=-math.inf) for row in matches],
        unmatched=[p for p, hit in zip(probs, matched_any) if not hit],
        answer=answer,
    )


def counts_above(probabilities: Sequence[float]) -> np.ndarray:
    """How many of ``probabilities`` are strictly above each official threshold."""
    values = np.asarray(probabilities, dtype=np.float64).reshape(-1, 1)
    return (values > THRESHOLDS[None, :]).sum(axis=0)


def evidence_counts(evidence: Sequence[QuestionEvidence]) -> np.ndarray:
    """Pooled (tp, fp, fn) at every threshold, shape (3, len(THRESHOLDS)): a gold is found while its best matching
    prediction survives the threshold; an unmatched prediction is a false positive while it survives."""
    gold_best = [p for e in evidence for p in e.gold_best]
    tp = counts_above(gold_best)
    fp = counts_above([p for e in evidence for p in e.unmatched])
    return np.stack([tp, fp, len(gold_best) - tp])


def question_counts(gold: GoldQuestion, entries: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """(tp, fp, fn) of one question at every official threshold, shape (3, len(THRESHOLDS))."""
    return evidence_counts([question_evidence(gold, entries)])


def process_precisions(precisions: Sequence[float]) -> list[float]:
    """Running maximum from the end, with Python ``max`` (keeps the official ``nan`` behaviour)."""
    best = list(precisions)[::-1]
    for i in range(1, len(best)):
        best[i] = max(best[i - 1], best[i])
    return best[::-1]


def curve_from_counts(counts: np.ndarray) -> PRCurve:
    """The official curve from pooled (tp, fp, fn) counts per threshold (shape (3, len(THRESHOLDS)))."""
    precisions, recalls = [1.0], [0.0]
    for tp, fp, fn in counts.T.tolist():
        precisions.append(tp / (tp + fp) if tp + fp > 0 else math.nan)
        recalls.append(tp / (tp + fn) if tp + fn > 0 else math.nan)
    return PRCurve(tuple(precisions), tuple(recalls))


def aupr(curve: PRCurve) -> float:
    """Area under the processed curve (trapezoids over recall, as ``sklearn.metrics.auc``); ``nan`` → 0."""
    x, y = np.asarray(curve.recalls), np.asarray(process_precisions(curve.precisions))
    steps = np.diff(x)
    direction = 1.0
    if np.any(steps < 0):
        if not np.all(steps <= 0):
            raise ValueError(f"recalls must be monotonic to integrate the PR curve: {curve.recalls}")
        direction = -1.0
    area = direction * float(np.trapezoid(y, x))
    return 0.0 if math.isnan(area) else area


def precision_at_recall(curve: PRCurve, target: float) -> float:
    """Processed precision at the first point with recall ≥ ``target`` among the first 101 points, else 0."""
    processed = process_precisions(curve.precisions)
    for precision, recall, _ in zip(processed, curve.recalls, curve.thresholds):
        if recall >= target:
            return precision
    return 0.0


def curve_metrics(counts: np.ndarray) -> dict[str, float]:
    curve = curve_from_counts(counts)
    return {"aupr": aupr(curve), **{k: precision_at_recall(curve, t) for k, t in RECALL_TARGETS.items()}}


def _summary_row(score: QuestionScore) -> list:
    """One question's share of the summary: [f1, 1, unanswerable, …abstained, answerable, …abstained]."""
    answerable = score.n_gold > 0
    return [score.f1, 1, not answerable, not answerable and score.abstained, answerable, answerable and score.abstained]


def summary_metrics(row: np.ndarray) -> dict[str, float]:
    ratio = lambda a, b: float(a / b) if b else math.nan  # noqa: E731
    return {"f1": ratio(row[0], row[1]), "no_answer_accuracy": ratio(row[3], row[2]), "laziness": ratio(row[5], row[4])}


@dataclass
class CorpusTables:
    """Per contract: pooled (tp, fp, fn) per threshold ``counts`` (C, 3, T) and summary ``rows`` (C, 6)."""

    contract_ids: list[str]
    counts: np.ndarray
    rows: np.ndarray
    question_scores: list[QuestionScore]


def contract_tables(golds: Sequence[GoldQuestion], nbest: NBest, answer_threshold: float | None = None) -> CorpusTables:
    contract_ids = list(dict.fromkeys(g.contract_id for g in golds))
    index = {cid: i for i, cid in enumerate(contract_ids)}
    tables = CorpusTables(
        contract_ids,
        counts=np.zeros((len(contract_ids), 3, len(THRESHOLDS)), dtype=np.int64),
        rows=np.zeros((len(contract_ids), 6), dtype=np.float64),
        question_scores=[],
    )
    by_contract: dict[str, list[QuestionEvidence]] = {cid: [] for cid in contract_ids}
    for gold in golds:
        evidence = question_evidence(gold, nbest.get(gold.question_id, ()), answer_threshold)
        by_contract[gold.contract_id].append(evidence)
        tables.rows[index[gold.contract_id]] += _summary_row(evidence.answer)
        tables.question_scores.append(evidence.answer)
    for cid, evidence in by_contract.items():
        tables.counts[index[cid]] = evidence_counts(evidence)
    return tables


def bootstrap_ci(counts: np.ndarray, rows: np.ndarray, config: ScoringConfig) -> dict[str, tuple[float, float]]:
    """Percentile CIs of every corpus metric over contracts resampled with replacement (seeded)."""
    rng = np.random.default_rng(config.seed)
    n_contracts = len(counts)
    flat_counts = counts.reshape(n_contracts, -1)
    samples: dict[str, list[float]] = {}
    for _ in range(config.bootstrap_draws):
        weights = np.bincount(rng.integers(0, n_contracts, n_contracts), minlength=n_contracts)
        draw = curve_metrics((weights @ flat_counts).reshape(3, -1))
        draw.update(summary_metrics(weights @ rows))
        for name, value in draw.items():
            samples.setdefault(name, []).append(value)
    tail = 100 * (1 - config.confidence_level) / 2
    ci = {}
    for name, values in samples.items():
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[~np.isnan(finite)]
        ci[name] = tuple(np.percentile(finite, [tail, 100 - tail]).tolist()) if len(finite) else (math.nan, math.nan)
    return ci


def _check_coverage(golds: Sequence[GoldQuestion], nbest: NBest) -> None:
    gold_ids = {g.question_id for g in golds}
    missing, extra = gold_ids - set(nbest), set(nbest) - gold_ids
    if missing:
        logger.warning("%d of %d questions have no prediction; scored as unanswered (e.g. %s)",
                       len(missing), len(gold_ids), sorted(missing)[0])
    if extra:
        logger.warning("%d predictions are for questions outside the gold set and are ignored (e.g. %s)",
                       len(extra), sorted(extra)[0])


def score_corpus(golds: Sequence[GoldQuestion], nbest: NBest, config: ScoringConfig = ScoringConfig()) -> CorpusScore:
    """Official AUPR / P@80R / P@90R of nbest predictions, the question summary and bootstrap CIs."""
    if not golds:
        raise ValueError("nothing to score: the gold question list is empty")
    _check_coverage(golds, nbest)
    tables = contract_tables(golds, nbest, config.answer_threshold)
    pooled = tables.counts.sum(axis=0)
    headline = curve_metrics(pooled)
    ci = bootstrap_ci(tables.counts, tables.rows, config) if config.bootstrap_draws > 0 else {}
    return CorpusScore(
        aupr=headline["aupr"],
        prec_at_80_recall=headline["prec_at_80_recall"],
        prec_at_90_recall=headline["prec_at_90_recall"],
        n_questions=len(golds),
        n_contracts=len(tables.contract_ids),
        summary=summarize(tables.question_scores),
        ci=ci,
        curve=curve_from_counts(pooled),
    )


def score_predictions(
    examples: Sequence[Any], predictions: Sequence[Any], config: ScoringConfig = ScoringConfig()
) -> CorpusScore:
    """Score DSPy predictions (``pred.spans``) of examples built by ``example_from_question``."""
    from clauseloop.program.export import to_nbest
    from clauseloop.program.types import predicted_spans

    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions: pass one prediction each")
    golds = [GoldQuestion.from_example(example) for example in examples]
    nbest = to_nbest((g.question_id, predicted_spans(p)) for g, p in zip(golds, predictions))
    return score_corpus(golds, nbest, config)
