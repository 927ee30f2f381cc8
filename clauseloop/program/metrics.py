"""CUAD's span matching, per-question scores and DSPy metric functions.

Matching is the official CUAD evaluation's (``evaluate.py`` of TheAtticusProject/cuad), reproduced exactly:

* normalization: delete ``. , ; :``, lower-case, ``/`` → space, split on whitespace into a *set* of words;
* a prediction matches a gold span when the word-set Jaccard similarity is ≥ 0.5; for "Parties" questions a
  prediction that *contains the raw gold text* (``gold in pred``, case-sensitive, one direction only) also matches;
* per question: each gold span matched by some prediction is a true positive, each unmatched gold a false negative,
  each prediction matching no gold a false positive (so several predictions of the same gold count once, and a
  question without gold turns every prediction into a false positive);
* predictions are de-duplicated by text and empty strings are not predictions.

Two choices of ours, where the official code has no answer: Jaccard of two texts with no words at all is 0 (the
official code divides by zero), and per-question precision/recall/F1 are all 1 when gold and prediction are both
empty and all 0 when exactly one of them is. Official precision/recall are corpus-level (``scoring.py``); the
per-question numbers here are for DSPy optimization and error analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from clauseloop.program.types import gold_spans_of, predicted_spans

IOU_THRESHOLD = 0.5
CONTAINMENT_CATEGORY = "Parties"
PASS_F1 = 0.5  # with a trace (bootstrapping demos), a metric answers "good enough?" instead of a float
_DROPPED_PUNCTUATION = str.maketrans("", "", ".,;:")


def normalized_words(text: str) -> set[str]:
    """CUAD's normalization: drop ``. , ; :``, lower-case, ``/`` → space, then the set of whitespace words."""
    return set(text.translate(_DROPPED_PUNCTUATION).lower().replace("/", " ").split())


def jaccard(gold: str, pred: str) -> float:
    """Word-set Jaccard similarity after CUAD's normalization (0 when neither text has a word)."""
    return jaccard_of_sets(normalized_words(gold), normalized_words(pred))


def jaccard_of_sets(gold_words: set[str], pred_words: set[str]) -> float:
    union = gold_words | pred_words
    return len(gold_words & pred_words) / len(union) if union else 0.0


def spans_match(gold: str, pred: str, containment: bool = False) -> bool:
    """Official match: Jaccard ≥ 0.5, or (``containment``, i.e. Parties) the gold text inside the prediction."""
    return jaccard(gold, pred) >= IOU_THRESHOLD or (containment and gold in pred)


def match_matrix(gold: Sequence[str], preds: Sequence[str], containment: bool = False) -> list[list[bool]]:
    """``matches[i][j]``: does prediction ``j`` match gold ``i``? (each text normalized once)."""
    pred_words = [normalized_words(p) for p in preds]
    matches = []
    for g in gold:
        g_words = normalized_words(g)
        matches.append([
            jaccard_of_sets(g_words, p_words) >= IOU_THRESHOLD or (containment and g in p)
            for p, p_words in zip(preds, pred_words)
        ])
    return matches


def uses_containment(category: str) -> bool:
    return category == CONTAINMENT_CATEGORY


def distinct_predictions(texts: Iterable[str]) -> list[str]:
    """Non-empty prediction texts, de-duplicated in first-seen order (the official scorer keys them by text)."""
    return list(dict.fromkeys(text for text in texts if text != ""))


@dataclass(frozen=True)
class QuestionScore:
    """True/false positives and negatives of one question, and the scores derived from them."""

    tp: int
    fp: int
    fn: int
    n_gold: int
    n_pred: int

    @property
    def precision(self) -> float:
        if self.n_gold == 0 or self.n_pred == 0:
            return float(self.n_gold == self.n_pred)
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float:
        if self.n_gold == 0 or self.n_pred == 0:
            return float(self.n_gold == self.n_pred)
        return self.tp / (self.tp + self.fn)

    @property
    def f1(self) -> float:
        precision, recall = self.precision, self.recall
        return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0

    @property
    def abstained(self) -> bool:
        return self.n_pred == 0


def score_question(gold: Sequence[str], predictions: Iterable[str], containment: bool = False) -> QuestionScore:
    """Official counts of one question: ``gold`` texts (duplicates count) against predicted texts."""
    preds = distinct_predictions(predictions)
    matches = match_matrix(gold, preds, containment)
    tp = sum(any(row) for row in matches)
    unmatched_preds = sum(not any(row[j] for row in matches) for j in range(len(preds)))
    return QuestionScore(tp=tp, fp=unmatched_preds, fn=len(gold) - tp, n_gold=len(gold), n_pred=len(preds))


def score_example(example: Any, pred: Any, threshold: float | None = None) -> QuestionScore:
    """Score a DSPy prediction (``pred.spans``) against an example (``gold_spans``, ``category``).

    With ``threshold`` only spans whose confidence is strictly above it count, as in the official scorer.
    """
    spans = predicted_spans(pred)
    if threshold is not None:
        spans = [span for span in spans if span.confidence > threshold]
    category = example.get("category", "") if hasattr(example, "get") else getattr(example, "category", "")
    return score_question(gold_spans_of(example), [s.text for s in spans], uses_containment(category))


def _metric_value(value: float, trace: Any, pass_at: float) -> float | bool:
    return value if trace is None else value >= pass_at


def cuad_f1(example: Any, pred: Any, trace: Any = None, threshold: float | None = None) -> float | bool:
    """DSPy metric: per-question F1 under CUAD matching (a bool ``F1 ≥ 0.5`` when DSPy passes a trace)."""
    return _metric_value(score_example(example, pred, threshold).f1, trace, PASS_F1)


def cuad_precision(example: Any, pred: Any, trace: Any = None, threshold: float | None = None) -> float | bool:
    """DSPy metric: per-question precision under CUAD matching."""
    return _metric_value(score_example(example, pred, threshold).precision, trace, PASS_F1)


def cuad_recall(example: Any, pred: Any, trace: Any = None, threshold: float | None = None) -> float | bool:
    """DSPy metric: per-question recall under CUAD matching."""
    return _metric_value(score_example(example, pred, threshold).recall, trace, PASS_F1)


def no_answer_correct(example: Any, pred: Any, trace: Any = None) -> float | bool:
    """DSPy metric: 1 when the program's answer/no-answer decision agrees with the gold (clause exists or not)."""
    score = score_example(example, pred)
    return _metric_value(float((score.n_gold == 0) == score.abstained), trace, 1.0)


@dataclass(frozen=True)
class QuestionSummary:
    """Averages over questions. ``no_answer_accuracy``: share of unanswerable questions left unanswered;
    ``laziness``: share of answerable questions answered with nothing (``nan`` where there are none)."""

    n_questions: int
    precision: float
    recall: float
    f1: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    no_answer_accuracy: float
    laziness: float

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def summarize(scores: Sequence[QuestionScore]) -> QuestionSummary:
    """Macro averages, corpus-pooled (micro) P/R/F1, no-answer accuracy and laziness of question scores."""
    n = len(scores)
    tp, fp, fn = (sum(getattr(s, name) for s in scores) for name in ("tp", "fp", "fn"))
    micro_p, micro_r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    unanswerable = [s for s in scores if s.n_gold == 0]
    answerable = [s for s in scores if s.n_gold > 0]
    return QuestionSummary(
        n_questions=n,
        precision=_ratio(sum(s.precision for s in scores), n),
        recall=_ratio(sum(s.recall for s in scores), n),
        f1=_ratio(sum(s.f1 for s in scores), n),
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=_ratio(2 * tp, 2 * tp + fp + fn),  # = 2PR / (P + R)
        no_answer_accuracy=_ratio(sum(s.abstained for s in unanswerable), len(unanswerable)),
        laziness=_ratio(sum(s.abstained for s in answerable), len(answerable)),
    )
