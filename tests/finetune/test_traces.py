"""Teacher traces: kept by CUAD score (not truthiness), parse failures dropped and counted, teacher errors clear."""

from __future__ import annotations

import pytest
from dspy.utils import DummyLM

from clauseloop.data import split_of
from clauseloop.finetune.dataset import SFTDataset
from clauseloop.engine.reachability import RoleUnavailable
from clauseloop.finetune.traces import TraceConfig, build_trace_rows, pick_questions

OUTCOMES = ("kept", "gated", "parse_failed", "failed", "below_threshold")


@pytest.fixture(scope="module")
def one_contract(demo_dataset):
    train = split_of(demo_dataset, "train")
    first = sorted(train.contracts)[0]
    return train.subset([first])


def new_program(train):
    from clauseloop.program.qa import ContractQA

    return ContractQA(train.contracts)


def build(tmp_path, train, teacher, questions: int, name: str = "t.jsonl") -> SFTDataset:
    dataset = SFTDataset(tmp_path / name)
    build_trace_rows(dataset, train, new_program(train), teacher, TraceConfig(questions_per_contract=questions,
                                                                                threads=1))
    return dataset


def test_answerable_questions_come_first(one_contract):
    picked = pick_questions(one_contract.questions, 5)
    assert len(picked) == 5 and picked[0].answerable
    assert [q.answerable for q in picked] == sorted((q.answerable for q in picked), reverse=True)


def test_a_trace_is_kept_only_when_its_cuad_score_passes(tmp_path, one_contract):
    question = pick_questions(one_contract.questions, 1)[0]
    gold = question.answers[0].text
    teacher = DummyLM([{"clauses": gold}, {"clauses": "This Agreement is binding on successors."}])
    dataset = build(tmp_path, one_contract, teacher, questions=2)
    counts = dataset.state["counts"]["teacher"]
    assert counts["examples"] == 2 and counts["kept"] == 1 and counts["below_threshold"] == 1
    (row,) = dataset.rows()
    assert row["source"] == "teacher" and row["score"] >= 0.5 and row["question_id"] == question.id
    assert "[[ ## passages ## ]]" in row["prompt"][1]["content"] and "demos" not in row["prompt"][0]["content"]


def test_an_unparseable_reply_is_dropped_and_counted(tmp_path, one_contract):
    teacher = DummyLM([{"verdict": "I think the answer is yes"}])  # no `clauses` field: the adapter cannot parse it
    dataset = build(tmp_path, one_contract, teacher, questions=1)
    counts = dataset.state["counts"]["teacher"]
    assert counts["parse_failed"] == 1 and counts["kept"] == 0 and dataset.rows() == []


def test_an_unreachable_teacher_names_role_and_url_and_a_rerun_continues(tmp_path, one_contract, monkeypatch):
    import dspy

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    down = dspy.LM("openai/teacher-model", api_base="http://127.0.0.1:9/v1", api_key="k", num_retries=0, cache=False)
    with pytest.raises(RoleUnavailable, match=r"teacher LM .*127\.0\.0\.1:9.*re-run"):
        build(tmp_path, one_contract, down, questions=1)
    dataset = SFTDataset(tmp_path / "t.jsonl")
    assert not dataset.is_done("teacher", sorted(one_contract.contracts)[0])
    gold = pick_questions(one_contract.questions, 1)[0].answers[0].text
    assert len(build(tmp_path, one_contract, DummyLM([{"clauses": gold}]), questions=1).rows()) == 1


@pytest.mark.real_model
def test_the_local_teacher_traces_add_up(tmp_path, one_contract, smollm2_dir):
    from clauseloop.engine.roles import make_lm

    dataset = build(tmp_path, one_contract, make_lm("smollm2-135m-instruct"), questions=4)
    counts = dataset.state["counts"]["teacher"]
    assert counts["examples"] == 4
    assert sum(counts[name] for name in OUTCOMES) == 4
    assert all(row["score"] >= 0.5 for row in dataset.rows()) and len(dataset.rows()) == counts["kept"]
