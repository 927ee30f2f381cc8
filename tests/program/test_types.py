"""The shared shapes: predicted spans, gold questions and DSPy examples built from CUAD questions."""

from __future__ import annotations

import dspy
import pytest

from clauseloop.data import ClauseQuestion, Span
from clauseloop.program.types import (
    EXAMPLE_INPUTS,
    GoldQuestion,
    PredictedSpan,
    example_from_question,
    gold_spans_of,
    predicted_spans,
)

QUESTION = ClauseQuestion(
    id="Acme__Governing Law", contract_id="Acme", category="Governing Law",
    question='Highlight the parts (if any) of this contract related to "Governing Law".',
    description="Which state's law governs?", answers=(Span("laws of New York", 120),),
)


def test_example_from_question_marks_inputs_and_keeps_labels():
    example = example_from_question(QUESTION)
    assert set(example.inputs().keys()) == set(EXAMPLE_INPUTS) == {"contract_id", "category", "question"}
    assert example.labels().gold_spans == ["laws of New York"]
    assert example.question_id == "Acme__Governing Law"
    assert gold_spans_of(example) == ["laws of New York"]
    assert GoldQuestion.from_example(example) == GoldQuestion.from_question(QUESTION)


def test_predicted_span_coerces_objects_dicts_and_strings():
    span = PredictedSpan("laws of New York", 120, 136, 0.75)
    assert PredictedSpan.coerce(span) is span
    assert PredictedSpan.coerce(span.to_dict()) == span
    assert PredictedSpan.coerce("laws of New York") == PredictedSpan("laws of New York", confidence=1.0)
    assert PredictedSpan.coerce(dspy.Example(text="x", confidence=None)).confidence == 1.0
    with pytest.raises(TypeError, match="PredictedSpan"):
        PredictedSpan.coerce({"span": "no text key"})
    with pytest.raises(ValueError, match="finite"):
        PredictedSpan.coerce({"text": "x", "confidence": float("nan")})


def test_predicted_spans_of_predictions():
    assert predicted_spans(dspy.Prediction(spans=[{"text": "a", "confidence": 0.5}, "b"])) == [
        PredictedSpan("a", confidence=0.5), PredictedSpan("b"),
    ]
    assert predicted_spans(dspy.Prediction(answer="no spans field")) == []
    assert predicted_spans({"spans": "one span"}) == [PredictedSpan("one span")]


def test_gold_spans_missing_says_how_to_fix():
    with pytest.raises(ValueError, match="example_from_question"):
        gold_spans_of(dspy.Example(question="q"))
