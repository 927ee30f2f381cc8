"""Teleprompter wiring (DummyLM, no model), the input program left alone, the data guards and the metric."""

from __future__ import annotations

import dataclasses
import logging

import dspy
import pytest

from clauseloop.data import split_of
from clauseloop.optimizers import (
    OptimizeConfig,
    Optimizer,
    SpanMetric,
    load_optimization_data,
    with_predictor_fields,
)
from clauseloop.optimizers.data import check_contracts_disjoint
from clauseloop.program.types import PredictedSpan, example_from_question
from dspy.clients.base_lm import GLOBAL_HISTORY

from tests.optimizers.conftest import SCRIPTED_FIELDS, calls_of, scripted_dummy_lm

ORIGINAL_INSTRUCTIONS = "Quote word for word"


def snapshot(program) -> list:
    return [(name, p.signature.instructions, [dict(d) for d in p.demos], p.lm)
            for name, p in program.named_predictors()]


def compile_with(config, program, data, student=None, teacher=None):
    student, teacher = student or scripted_dummy_lm(), teacher or scripted_dummy_lm("dummy/teacher")
    optimizer = Optimizer(config, student_lm=student, teacher_lm=teacher)
    return optimizer, optimizer.compile(program, trainset=data.trainset, valset=data.valset)


def test_bootstrap_returns_a_new_program_with_demos_and_leaves_the_input_alone(small_config, small_data, qa_program):
    before, since = snapshot(qa_program), len(GLOBAL_HISTORY)
    optimizer, compiled = compile_with(small_config, qa_program, small_data)
    assert compiled is not qa_program and compiled.extract is not qa_program.extract
    assert snapshot(qa_program) == before and qa_program.extract.demos == []
    demos = compiled.extract.demos
    assert 1 <= len(demos) <= small_config.max_labeled_demos
    assert any(d.get("augmented") for d in demos)  # one bootstrapped from the teacher's run
    assert all(d["passages"].startswith("[1] ") and d["clauses"] for d in demos)
    teacher_calls = calls_of("dummy/teacher", since)
    assert teacher_calls and optimizer.usage()["requests"] == {"teacher": len(teacher_calls)}  # student idle
    assert optimizer.usage()["seconds"]["compile"] >= 0


def test_labeled_demos_reach_the_prompt(small_data, qa_program):
    """Labeled CUAD examples get the predictor's fields, so the chat adapter shows them instead of dropping them."""
    config = OptimizeConfig(max_bootstrapped_demos=0, max_labeled_demos=2, gate=False, progress=False)
    _, compiled = compile_with(config, qa_program, small_data)
    assert len(compiled.extract.demos) == 2 and not any(d.get("augmented") for d in compiled.extract.demos)
    student = scripted_dummy_lm()
    with dspy.context(lm=student):
        compiled(**small_data.valset[0].inputs())
    prompt = "\n".join(m["content"] for m in student.history[-1]["messages"])
    for demo in compiled.extract.demos:
        assert demo["passages"] in prompt and demo["clauses"] in prompt


def test_predictor_fields_quote_only_gold_the_passages_show(demo_dataset, qa_program):
    questions = [q for q in split_of(demo_dataset, "train").questions if q.answers][:6]
    completed = with_predictor_fields([example_from_question(q) for q in questions], qa_program)
    for example in completed:
        shown = " ".join(example.passages.split())
        quotes = [] if example.clauses == "NONE" else example.clauses.split("\n")
        assert all(" ".join(q.split()) in shown for q in quotes)
        assert set(quotes) <= set(example.gold_spans)
        assert set(example.inputs().keys()) == {"contract_id", "category", "question"}
    assert any(example.clauses != "NONE" for example in completed)


def test_random_search_picks_a_scored_candidate(small_config, small_data, qa_program):
    config = dataclasses.replace(small_config, optimizer="random-search", num_candidate_programs=1)
    before = snapshot(qa_program)
    optimizer, compiled = compile_with(config, qa_program, small_data)
    assert snapshot(qa_program) == before
    assert not hasattr(compiled, "candidate_programs")  # not carried along (it holds every candidate program)
    seeds = [c["seed"] for c in optimizer.stats.candidates]
    assert sorted(seeds) == [-3, -2, -1, 0] and all(0 <= c["score"] <= 100 for c in optimizer.stats.candidates)
    assert optimizer.usage()["requests"]["student"] >= 4 * len(small_data.valset)


def test_mipro_writes_instructions_with_the_teacher(small_config, small_data, qa_program):
    config = dataclasses.replace(small_config, optimizer="mipro", mipro_num_candidates=2, mipro_num_trials=3)
    before, since = snapshot(qa_program), len(GLOBAL_HISTORY)
    optimizer, compiled = compile_with(config, qa_program, small_data)
    assert snapshot(qa_program) == before
    teacher_calls = calls_of("dummy/teacher", since)
    proposals = [m for e in teacher_calls for m in e["messages"] if "proposed_instruction" in m["content"]]
    assert proposals, "the teacher is MIPROv2's prompt model"
    assert compiled.extract.signature.instructions in (
        qa_program.extract.signature.instructions, SCRIPTED_FIELDS["proposed_instruction"])
    usage = optimizer.usage()["requests"]
    assert usage["teacher"] == len(teacher_calls) and usage["student"] == len(calls_of("dummy/student", since))


def test_mipro_survives_a_teacher_that_cannot_write_instructions(small_config, small_data, qa_program):
    """A weak prompt model (SmolLM2 offline) replies in no format: its proposals keep the program's instruction."""
    from dspy.utils import DummyLM

    babbling = DummyLM({"": {"unrelated": "def refactor(x): return x"}})  # never a `proposed_instruction` field
    babbling.model = "dummy/teacher"
    config = dataclasses.replace(small_config, optimizer="mipro", mipro_num_candidates=2, mipro_num_trials=3)
    optimizer, compiled = compile_with(config, qa_program, small_data, teacher=babbling)
    proposals = optimizer.stats.instruction_proposals
    assert proposals["proposed"] >= 1 and proposals["unparseable"] == proposals["proposed"]
    assert compiled.extract.signature.instructions == qa_program.extract.signature.instructions


def test_config_refuses_the_test_split_and_bad_settings():
    for split in ("test", "all"):
        with pytest.raises(ValueError, match="test contracts.*optimize on 'train'"):
            OptimizeConfig(val_split=split)
    with pytest.raises(ValueError, match="unknown optimizer"):
        OptimizeConfig(optimizer="gepa")
    with pytest.raises(ValueError, match="together"):
        OptimizeConfig(mipro_num_candidates=3)
    with pytest.raises(ValueError, match="both 'train'"):
        OptimizeConfig(val_split="train")


def test_data_is_stratified_contract_disjoint_and_free_of_test(demo_dataset, small_data):
    test_contracts = set(split_of(demo_dataset, "test").contracts)
    train = {e.contract_id for e in small_data.trainset}
    val = {e.contract_id for e in small_data.valset}
    assert len(small_data.trainset) == 6 and len(small_data.valset) == 4
    assert not train & val and not (train | val) & test_contracts
    assert len({e.category for e in small_data.trainset}) == 6  # categories in turn
    again = load_optimization_data(demo_dataset, OptimizeConfig(max_train_examples=6, max_val_examples=4))
    assert again.fingerprint == small_data.fingerprint
    other = load_optimization_data(demo_dataset, OptimizeConfig(max_train_examples=7, max_val_examples=4))
    assert other.fingerprint != small_data.fingerprint


def test_a_contract_in_two_sets_is_refused_by_name(small_config, small_data, qa_program):
    leaked = small_data.trainset[:1]
    contract = leaked[0].contract_id
    optimizer = Optimizer(small_config, student_lm=scripted_dummy_lm())
    with pytest.raises(ValueError, match=f"contract '{contract}' is in both the trainset and the valset.*split_of"):
        optimizer.compile(qa_program, trainset=small_data.trainset, valset=leaked)
    with pytest.raises(ValueError, match=f"'{contract}' of the trainset belongs to the held-out test split"):
        check_contracts_disjoint(leaked, [], held_out={contract})


def test_too_few_training_examples_is_a_clear_error(small_config, small_data, qa_program, demo_dataset):
    optimizer = Optimizer(small_config, student_lm=scripted_dummy_lm())
    for trainset in ([], small_data.trainset[:1]):
        with pytest.raises(ValueError, match=f"at least 2 training examples; got {len(trainset)}.*--limit"):
            optimizer.compile(qa_program, trainset=trainset)
    with pytest.raises(ValueError, match="at least 2 training examples; got 1"):
        load_optimization_data(demo_dataset, OptimizeConfig(max_train_examples=1))


def test_categories_without_examples_are_logged(small_config, small_data, qa_program, caplog):
    config = dataclasses.replace(small_config, max_bootstrapped_demos=0, max_labeled_demos=0)
    with caplog.at_level(logging.WARNING, logger="clauseloop.optimizers.data"):
        compile_with(config, qa_program, small_data)
    warning = next(r.getMessage() for r in caplog.records if "no training example" in r.getMessage())
    assert warning.startswith("35 of 41 categories") and "Governing Law" in warning


def test_span_metric_pass_mark_and_trace(demo_dataset):
    question = next(q for q in demo_dataset.questions if q.category == "Governing Law" and q.answers)
    example = example_from_question(question)
    gold = question.answers[0].text
    half = dspy.Prediction(spans=[PredictedSpan(gold), PredictedSpan("unrelated words entirely")])  # F1 = 2/3
    assert SpanMetric()(example, half) == pytest.approx(2 / 3)
    assert SpanMetric(0.5)(example, half, trace=[("step",)]) is True
    assert SpanMetric(0.9)(example, half, trace=[("step",)]) is False
    exact = dspy.Prediction(spans=[PredictedSpan(gold)])
    assert SpanMetric(0.9)(example, exact, trace=[]) is False  # no LM call was made: nothing to learn from


def test_an_unreachable_teacher_names_its_role_and_url(small_config, small_data, qa_program, tmp_path, monkeypatch):
    from clauseloop.engine.reachability import RoleUnavailable

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    down = dspy.LM("openai/teacher-model", api_base="http://127.0.0.1:9/v1", api_key="k", num_retries=0)
    optimizer = Optimizer(small_config, student_lm=scripted_dummy_lm(), teacher_lm=down, cache_dir=tmp_path / "cache")
    with pytest.raises(RoleUnavailable, match=r"teacher LM 'openai/teacher-model' at http://127\.0\.0\.1:9/v1.*cached"):
        optimizer.compile(qa_program, trainset=small_data.trainset, valset=small_data.valset)
