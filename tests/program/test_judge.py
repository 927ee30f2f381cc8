"""The LLM judge: tolerant score parsing, malformed replies, LM separation and the DSPy metric (DummyLM wiring)."""

from __future__ import annotations

from types import SimpleNamespace

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from clauseloop.program import PredictedSpan
from clauseloop.program.judge import (
    ClauseJudge,
    JudgeConfig,
    judge_inputs,
    judge_metric,
    parse_raw_reply,
    parse_score,
    resolve_judge_lm,
)

INPUTS = dict(category="Governing Law", question="Which law governs?", spans=["the laws of New York"],
              gold_spans=["governed by the laws of New York"], contract_excerpt="... governed by the laws of New York.")


class RawTextLM(DummyLM):
    """A fake LM that replies with raw text, ignoring DSPy's field format (as small models often do)."""

    def __init__(self, replies: list[str]):
        super().__init__([{"raw": reply} for reply in replies])

    def _format_answer_fields(self, field_names_and_values):
        return field_names_and_values["raw"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.8", 0.8), ("**0.9**", 0.9), ("4/5", 0.8), ("Score: 3 out of 5", 0.6), ("score: 10/10", 1.0),
        ("The score is 0.75 because it is grounded", 0.75), ("score of 4", 0.8), ("80%", 0.8), ("7", 0.7),
        ("Yes.", 1.0), ("yes, it covers the clause", 1.0), ("No", 0.0), ("partially", 0.5), ("1", 1.0), ("0", 0.0), ("- 0.6", 0.6),
    ],
)
def test_parse_score_reads_common_forms(text, expected):
    assert parse_score(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [None, "", "excellent", "-0.5", "150", "6/5", "1. Grounded: all spans appear verbatim",
     "No span is extraneous and all are grounded", "I cannot judge this."],
)
def test_parse_score_refuses_what_it_cannot_read(text):
    assert parse_score(text) is None


def test_parse_raw_reply_prefers_the_score_section_then_a_score_line():
    assert parse_raw_reply("[[ ## rationale ## ]]\nSection 12 is right.\n[[ ## score ## ]]\n4 out of 5") == (
        0.8, "Section 12 is right.")
    score, rationale = parse_raw_reply("Section 12.3 covers it.\nFinal score: 0.9")
    assert score == 0.9 and rationale.startswith("Section 12.3")
    assert parse_raw_reply("Nothing useful here.") == (None, "Nothing useful here.")


def test_well_formed_reply():
    lm = DummyLM([{"rationale": "Grounded and covers the gold.", "score": "0.9"}])
    out = ClauseJudge(lm=lm)(**INPUTS)
    assert (out.score, out.rationale, out.parsed) == (0.9, "Grounded and covers the gold.", True)
    prompt = lm.history[-1]["messages"][-1]["content"]
    assert "1. governed by the laws of New York" in prompt and "1. the laws of New York" in prompt


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ({"rationale": "Mostly right.", "score": "4/5"}, 0.8),  # score field in a free form
        ({"rationale": "Looks right. Score: 3 out of 5"}, 0.6),  # score field missing: DSPy fails to parse
        ({"verdict": "yes"}, None),  # nothing we expect: unreadable
    ],
)
def test_malformed_field_replies_never_raise(reply, expected):
    out = ClauseJudge(lm=DummyLM([reply]))(**INPUTS)
    assert out.score == (pytest.approx(expected) if expected is not None else None)
    assert out.parsed is (expected is not None)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("0.7", 0.7), ("The answer is grounded but misses part of the clause. Score: 2/4", 0.5), ("Yes.", 1.0),
     ("I am not sure what you mean.", None), ("", None)],
)
def test_raw_text_replies_without_fields(reply, expected):
    lm = RawTextLM([reply])
    out = ClauseJudge(lm=lm)(**INPUTS)
    assert out.score == (pytest.approx(expected) if expected is not None else None)
    assert len(lm.history) == 1  # no JSON-adapter retry: one call per judgment


def test_no_clause_and_no_prediction_needs_no_lm_call():
    lm = DummyLM([])
    out = ClauseJudge(lm=lm)(category="Non-Compete", question="q", spans=[], gold_spans=[])
    assert (out.score, out.parsed) == (1.0, True) and lm.history == []


def test_judge_uses_its_own_lm_not_the_answering_one():
    answering, judging = DummyLM([{"rationale": "x", "score": "0.1"}]), DummyLM([{"rationale": "y", "score": "0.6"}])
    with dspy.context(lm=answering):
        out = ClauseJudge(lm=judging)(**INPUTS)
    assert out.score == 0.6 and len(judging.history) == 1 and answering.history == []
    assert JudgeConfig().role == "judge"


def test_judge_lm_comes_from_the_judge_role(monkeypatch):
    monkeypatch.setenv("CLAUSELOOP_JUDGE", "openai/judge-model")
    monkeypatch.setenv("CLAUSELOOP_STUDENT", "openai/student-model")
    lm = resolve_judge_lm("judge")
    assert isinstance(lm, dspy.LM) and lm.model == "openai/judge-model"


def test_judge_inputs_take_an_excerpt_around_located_spans():
    text = "A" * 1000 + " governed by the laws of New York " + "B" * 1000
    start = text.index("governed")
    example = dspy.Example(category="Governing Law", question="q", gold_spans=["governed by the laws of New York"],
                           contract_text=text)
    pred = dspy.Prediction(spans=[PredictedSpan("governed by the laws of New York", start, start + 32, 0.9)])
    inputs = judge_inputs(example, pred, JudgeConfig(window_chars=10))
    assert inputs["contract_excerpt"] == text[start - 10:start + 42]
    # no contract text: the prediction's retrieved passages are the excerpt
    no_text = dspy.Example(category="Governing Law", question="q", gold_spans=[])
    inputs = judge_inputs(no_text, dspy.Prediction(spans=[], context=["passage one", "passage two"]))
    assert inputs["contract_excerpt"] == "passage one\n…\npassage two" and inputs["gold_spans"] == []
    passages = [SimpleNamespace(text="first passage", start=0, end=13), SimpleNamespace(text="second", start=20, end=26)]
    inputs = judge_inputs(no_text, dspy.Prediction(spans=[], passages=passages))  # ContractQA's prediction
    assert inputs["contract_excerpt"] == "first passage\n…\nsecond"


def test_judge_metric_scores_and_thresholds_with_a_trace():
    judge = ClauseJudge(lm=DummyLM([{"rationale": "a", "score": "0.4"}, {"rationale": "b", "score": "0.6"},
                                    {"rationale": "garbled"}]))
    example = dspy.Example(category="Governing Law", question="q", gold_spans=["laws of New York"])
    pred = dspy.Prediction(spans=[PredictedSpan("laws of New York", confidence=0.9)])
    assert judge_metric(example, pred, judge=judge) == pytest.approx(0.4)
    assert judge_metric(example, pred, trace=[], judge=judge) is True
    assert judge_metric(example, pred, judge=judge) == 0.0  # unreadable reply counts 0


@pytest.mark.real_model
def test_real_smollm2_judge_returns_a_readable_or_flagged_score(smollm2_dir):
    engine_lm = pytest.importorskip("clauseloop.engine.lm", reason="the local LM engine is not available")
    lm = engine_lm.LocalLM(max_tokens=24, cache=False)
    judge = ClauseJudge(lm=lm, config=JudgeConfig(max_context_chars=300))
    out = judge(category="Governing Law", question="Which law governs the agreement?",
                spans=["This Agreement is governed by the laws of the State of New York."],
                gold_spans=["This Agreement is governed by the laws of the State of New York."],
                contract_excerpt="12. This Agreement is governed by the laws of the State of New York.")
    # a 135M model may or may not follow the format: either way a score in [0, 1] or an explicit flag, no exception
    assert isinstance(out.rationale, str)
    assert (out.parsed and 0.0 <= out.score <= 1.0) or (not out.parsed and out.score is None)
    assert len(lm.history) == 1
