"""Resumability and the call ceiling: with a scripted LM whose answers go through DSPy's cache like a real LM's,
then BootstrapFewShot end to end with the real local SmolLM2 (compile, score on dev, save, load, resume)."""

from __future__ import annotations

import dataclasses
import json

import dspy
import pytest

from clauseloop.optimizers import CallBudgetExceeded, CallMeter, OptimizeConfig, Optimizer, optimize
from clauseloop.optimizers.budget import BudgetStop, metered_cache
from clauseloop.program.saved import PROGRAM_FILE, load_compiled
from tests.optimizers.conftest import scripted_lm

_MISSING = object()


@pytest.fixture
def search_config(small_config):
    # One thread: calls come in a fixed order, so counts compare exactly between runs.
    return dataclasses.replace(small_config, optimizer="random-search", num_candidate_programs=1, threads=1,
                               max_calls=None)


def run(config, program, data, cache_dir):
    """One optimizer run with fresh LMs (nothing in memory); returns it, the result and the engines' call count."""
    student, teacher = scripted_lm("scripted/student"), scripted_lm("scripted/teacher")
    optimizer = Optimizer(config, student_lm=student, teacher_lm=teacher, cache_dir=cache_dir)
    try:
        compiled = optimizer.compile(program, trainset=data.trainset, valset=data.valset)
    finally:
        engine_calls = student.scripted_engine.calls + teacher.scripted_engine.calls
    return optimizer, compiled, engine_calls


def test_a_rerun_replays_finished_calls_from_the_cache(search_config, small_data, qa_program, tmp_path):
    first, compiled, engine_calls = run(search_config, qa_program, small_data, tmp_path / "cache")
    usage = first.usage()
    assert engine_calls > 0 and usage["total_calls"] == engine_calls
    assert usage["calls"]["student"] > 0 and usage["calls"]["teacher"] > 0  # counted per role
    assert usage["unmetered"] == 0
    second, again, engine_calls = run(search_config, qa_program, small_data, tmp_path / "cache")
    assert engine_calls == 0 and second.usage()["total_calls"] == 0
    assert second.usage()["cache_hits"] == usage["requests"]  # every request was answered from disk
    assert [dict(d) for d in again.extract.demos] == [dict(d) for d in compiled.extract.demos]


def test_the_call_ceiling_stops_the_run_and_a_rerun_continues(search_config, small_data, qa_program, tmp_path):
    _, _, unbounded_calls = run(search_config, qa_program, small_data, tmp_path / "reference")
    assert unbounded_calls > 5
    capped = dataclasses.replace(search_config, max_calls=5)
    with pytest.raises(CallBudgetExceeded, match=r"after 5 LM calls.*ceiling of 5.*cached in .*re-running"):
        run(capped, qa_program, small_data, tmp_path / "cache")
    optimizer, compiled, engine_calls = run(search_config, qa_program, small_data, tmp_path / "cache")
    assert engine_calls == unbounded_calls - 5  # the 5 finished calls were not made again
    assert optimizer.usage()["total_calls"] == engine_calls and compiled.extract is not qa_program.extract


def test_the_ceiling_is_hard_while_scoring_too(search_config, small_data, qa_program, tmp_path):
    config = dataclasses.replace(search_config, optimizer="bootstrap")
    compile_calls = run(config, qa_program, small_data, tmp_path / "reference")[2]
    student = scripted_lm()
    optimizer = Optimizer(dataclasses.replace(config, max_calls=compile_calls + 1), student_lm=student,
                          teacher_lm=scripted_lm("scripted/teacher"), cache_dir=tmp_path / "capped")
    compiled = optimizer.compile(qa_program, trainset=small_data.trainset)
    assert optimizer.usage()["total_calls"] == compile_calls and student.scripted_engine.calls == 0
    with pytest.raises(CallBudgetExceeded):
        optimizer.score(compiled, small_data.valset)  # one call left for 4 questions
    assert optimizer.usage()["total_calls"] == compile_calls + 1 and student.scripted_engine.calls == 1


def test_dspy_cache_is_restored_after_success_and_failure(search_config, small_data, qa_program, tmp_path):
    before = vars(dspy).get("cache", _MISSING)
    run(search_config, qa_program, small_data, tmp_path / "ok")
    assert vars(dspy).get("cache", _MISSING) is before
    with pytest.raises(CallBudgetExceeded):
        run(dataclasses.replace(search_config, max_calls=1), qa_program, small_data, tmp_path / "stopped")
    assert vars(dspy).get("cache", _MISSING) is before


def test_meter_refuses_past_the_ceiling_and_counts_hits(tmp_path):
    meter = CallMeter(max_calls=1)
    lm = scripted_lm("scripted/meter")
    predict = dspy.Predict("question -> clauses")
    with metered_cache(tmp_path, meter), dspy.context(lm=lm):
        predict(question="first")
        predict(question="first")  # a cache hit costs nothing
        with pytest.raises(BudgetStop):
            predict(question="second")
    assert meter.exhausted and lm.scripted_engine.calls == 1
    assert meter.summary()["total_calls"] == 1
    with dspy.context(lm=None), pytest.raises(ValueError, match="no student LM"):
        Optimizer()


@pytest.mark.real_model
def test_bootstrap_on_the_demo_train_split_saves_a_loadable_program_and_resumes(
    smollm2_dir, demo_dataset, tmp_path
):
    # Tiny on purpose (2 cores): 4 training questions, 2 dev questions, one demo. The gate is off so that every
    # question reaches the model whichever categories the seed draws.
    config = OptimizeConfig(
        optimizer="bootstrap", out_dir=str(tmp_path), max_train_examples=4, max_val_examples=2,
        max_bootstrapped_demos=1, max_labeled_demos=1, threads=2, max_calls=20, gate=False, progress=False,
    )
    first = optimize(config)
    calls = first["lm_calls"]
    assert 0 < calls["total_calls"] <= 20 and calls["calls"].get("teacher", 0) >= 1
    assert calls["calls"].get("student", 0) == 2  # the two dev questions, scored with the student
    assert first["program"]["extract"]["demos"] == 1  # bootstrapped, or labeled when the teacher never passed
    assert first["teacher"]["model"] == "smollm2-135m-instruct" and first["seconds"]["compile"] > 0
    assert first["dev_scores"]["questions"] == 2 and 0.0 <= first["dev_scores"]["f1"] <= 1.0

    loaded = load_compiled(tmp_path, demo_dataset)
    saved_demos = json.loads((tmp_path / PROGRAM_FILE).read_text())["extract"]["demos"]
    assert [dict(d) for d in loaded.extract.demos] == saved_demos
    assert saved_demos[0]["passages"].startswith("[1] ") and saved_demos[0]["clauses"]

    again = optimize(config)  # same --out: every finished call is replayed from OUT/cache
    assert again["lm_calls"]["total_calls"] == 0
    assert again["lm_calls"]["cache_hits"] == calls["requests"]
    assert again["dev_scores"] == first["dev_scores"] and again["program"] == first["program"]
