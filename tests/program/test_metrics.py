"""CUAD matching and per-question metrics against hand-computed cases, including the official edge cases."""

from __future__ import annotations

import math

import dspy
import pytest

from clauseloop.data import ClauseQuestion, Span
from clauseloop.program import PredictedSpan, example_from_question
from clauseloop.program.metrics import (
    QuestionScore,
    cuad_f1,
    cuad_precision,
    cuad_recall,
    jaccard,
    no_answer_correct,
    normalized_words,
    score_question,
    spans_match,
    summarize,
)

GOVERNING = "This Agreement shall be governed by the laws of the State of New York."


def test_normalization_drops_four_marks_lowercases_and_splits_slashes():
    assert normalized_words("The Parties: Acme, Inc.; and/or Beta") == {"the", "parties", "acme", "inc", "and", "or",
                                                                        "beta"}
    # only . , ; : are removed: other punctuation stays attached to its word
    assert normalized_words('"Term" (5 years)!') == {'"term"', "(5", "years)!"}


def test_jaccard_hand_computed():
    assert jaccard(GOVERNING, GOVERNING.upper().replace(".", "")) == 1.0
    assert jaccard("a b c d", "a b c e f") == pytest.approx(3 / 6)  # exactly at the 0.5 threshold: a match
    assert spans_match("a b c d", "a b c e f")
    assert jaccard("a b c d", "a b x y") == pytest.approx(2 / 6)
    assert not spans_match("a b c d", "a b x y")
    assert jaccard("a a b", "a b b") == 1.0  # word *sets*: repetition does not count
    assert jaccard("...", ";;") == 0.0  # no words on either side (the official code would divide by zero)


def test_parties_containment_is_gold_inside_prediction_only():
    gold = "Acme Corp"
    long_pred = "This Agreement is made between Acme Corp and Beta Holdings LLC, a Delaware limited company"
    assert jaccard(gold, long_pred) < 0.5
    assert spans_match(gold, long_pred, containment=True)
    assert not spans_match(gold, long_pred, containment=False)
    # the other direction (prediction inside the gold) is not containment in the official scorer
    assert not spans_match(long_pred, "Acme", containment=True)
    # containment is on raw text: case matters
    assert not spans_match("ACME CORP", "between acme corp and beta holdings llc and others", containment=True)


def test_empty_gold_with_prediction_is_false_positive():
    score = score_question([], ["The term is five years.", "Renewal each year."])
    assert (score.tp, score.fp, score.fn) == (0, 2, 0)
    assert (score.precision, score.recall, score.f1) == (0.0, 0.0, 0.0)


def test_empty_gold_and_no_prediction_is_perfect():
    score = score_question([], ["", ""])  # empty strings are not predictions
    assert (score.tp, score.fp, score.fn, score.n_pred) == (0, 0, 0, 0)
    assert (score.precision, score.recall, score.f1) == (1.0, 1.0, 1.0)
    assert score.abstained


def test_gold_without_prediction_is_all_false_negatives():
    score = score_question(["a clause", "another clause"], [])
    assert (score.tp, score.fp, score.fn) == (0, 0, 2)
    assert score.f1 == 0.0


def test_several_golds_count_each_gold_once_and_each_unmatched_prediction():
    gold = ["alpha beta gamma delta", "epsilon zeta eta theta", "iota kappa lambda mu"]
    preds = ["alpha beta gamma delta", "Alpha beta gamma.", "nothing related here", "alpha beta gamma delta"]
    score = score_question(gold, preds)
    # gold 1 matched (twice, counted once); golds 2 and 3 missed; "nothing related here" is the only false positive;
    # the repeated text is de-duplicated before counting
    assert (score.tp, score.fp, score.fn, score.n_pred) == (1, 1, 2, 3)
    assert score.precision == pytest.approx(1 / 2)
    assert score.recall == pytest.approx(1 / 3)
    assert score.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # 0.4


def test_one_prediction_covering_two_golds_is_two_true_positives():
    score = score_question(["a b c", "a b c d"], ["a b c d"])
    assert (score.tp, score.fp, score.fn) == (2, 0, 0)


def _example(category: str, answers: list[str]) -> dspy.Example:
    question = ClauseQuestion(
        id=f"Demo__{category}", contract_id="Demo", category=category, question=f"about {category}?",
        description="", answers=tuple(Span(text, 10 * i) for i, text in enumerate(answers)),
    )
    return example_from_question(question)


def test_dspy_metrics_on_examples_and_predictions():
    example = _example("Parties", ["Acme Corp", "Beta Holdings LLC"])
    pred = dspy.Prediction(spans=[
        PredictedSpan("between Acme Corp and others", 0, 28, 0.9),  # contains gold 1 (Parties)
        PredictedSpan("totally unrelated sentence", 40, 66, 0.2),
    ])
    assert cuad_precision(example, pred) == pytest.approx(1 / 2)
    assert cuad_recall(example, pred) == pytest.approx(1 / 2)
    assert cuad_f1(example, pred) == pytest.approx(1 / 2)
    assert cuad_f1(example, pred, trace=[]) is True  # F1 0.5 passes when bootstrapping
    # keeping only spans with confidence above 0.5 removes the false positive
    assert cuad_precision(example, pred, threshold=0.5) == 1.0
    assert cuad_f1(example, pred, threshold=0.5) == pytest.approx(2 * 1 * 0.5 / 1.5)


def test_containment_only_applies_to_parties():
    pred = dspy.Prediction(spans=[{"text": "between Acme Corp and others", "confidence": 0.9}])
    assert cuad_recall(_example("Parties", ["Acme Corp"]), pred) == 1.0
    assert cuad_recall(_example("Governing Law", ["Acme Corp"]), pred) == 0.0


def test_no_answer_metric_and_missing_spans():
    no_clause = _example("Non-Compete", [])
    assert no_answer_correct(no_clause, dspy.Prediction(spans=[])) == 1.0
    assert no_answer_correct(no_clause, dspy.Prediction(spans=None)) == 1.0
    assert no_answer_correct(no_clause, dspy.Prediction(spans=["Shall not compete."])) == 0.0
    assert cuad_f1(no_clause, dspy.Prediction(spans=["Shall not compete."])) == 0.0
    assert no_answer_correct(_example("Non-Compete", ["x y"]), dspy.Prediction(spans=[]), trace=[]) is False


def test_summarize_hand_computed():
    scores = [
        score_question([], []),                      # unanswerable, abstained: P=R=F1=1
        score_question([], ["x"]),                   # unanswerable, answered: fp 1
        score_question(["a b", "c d"], ["a b"]),     # tp 1, fn 1: P 1, R 0.5, F1 2/3
        score_question(["e f"], []),                 # answerable, lazy: fn 1
    ]
    summary = summarize(scores)
    assert summary.n_questions == 4
    assert summary.precision == pytest.approx((1 + 0 + 1 + 0) / 4)
    assert summary.recall == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert summary.f1 == pytest.approx((1 + 0 + 2 / 3 + 0) / 4)
    # pooled: tp 1, fp 1, fn 2
    assert summary.micro_precision == pytest.approx(1 / 2)
    assert summary.micro_recall == pytest.approx(1 / 3)
    assert summary.micro_f1 == pytest.approx(2 / 5)
    assert summary.no_answer_accuracy == pytest.approx(1 / 2)
    assert summary.laziness == pytest.approx(1 / 2)


def test_summarize_without_unanswerable_questions_reports_nan():
    summary = summarize([QuestionScore(tp=1, fp=0, fn=0, n_gold=1, n_pred=1)])
    assert math.isnan(summary.no_answer_accuracy)
    assert summary.laziness == 0.0
