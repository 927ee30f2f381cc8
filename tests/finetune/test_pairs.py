"""RLAIF pairs: candidate scoring, the judge's position-consistency rule, the pairs file, an unreachable judge,
and one tiny run of the real SmolLM2 as student and judge."""

from __future__ import annotations

import json
import socket
import threading

import dspy
import pytest
from dspy.utils import DummyLM

from clauseloop.engine.reachability import RoleUnavailable
from clauseloop.finetune.dpo_data import skip_reason
from clauseloop.finetune.pairs import (
    Candidate,
    PairsConfig,
    build_pairs,
    decide,
    parse_choice,
    score_candidate,
    verdict_of,
)

CATEGORY = "Governing Law"
INVENTED = "The moon is made of green cheese and governs this deal."


def governing_law_gold(demo_dataset, contract_id: str) -> str:
    question = next(q for q in demo_dataset.questions_for(contract_id) if q.category == CATEGORY)
    return question.answers[0].text


def first_train_contract(demo_dataset) -> str:
    from clauseloop.data import split_of

    return min(split_of(demo_dataset, "train").contracts)


class ScriptedStudent:
    """A student that answers from a list in turn (one thread keeps the order): a stand-in with an LM's call form."""

    def __init__(self, answers: list[str]):
        self.answers, self.calls, self.model, self.lock = answers, [], "scripted-student", threading.Lock()

    def __call__(self, messages=None, **kwargs):
        with self.lock:
            self.calls.append(kwargs)
            return [f"[[ ## clauses ## ]]\n{self.answers[(len(self.calls) - 1) % len(self.answers)]}\n\n"]


def consistent_judge(good_answer_start: str) -> DummyLM:
    """Prefers the answer starting with ``good_answer_start`` in whichever position it is shown."""
    return DummyLM({
        f"[[ ## answer_a ## ]]\n{good_answer_start}": {"rationale": "A quotes the clause.", "better": "A"},
        f"[[ ## answer_b ## ]]\n{good_answer_start}": {"rationale": "B quotes the clause.", "better": "B"},
    })


def config_for(tmp_path, **overrides) -> PairsConfig:
    settings = dict(out=str(tmp_path / "pairs.jsonl"), limit_contracts=1, categories=(CATEGORY,), candidates=2,
                    threads=1)
    return PairsConfig(**{**settings, **overrides})


def test_choices_and_both_orders_make_a_verdict():
    assert [parse_choice(t) for t in ("A", "b.", "**Answer B**", "Tie", "equal", "maybe", "", None)] == [
        "A", "B", "B", "tie", "tie", None, None, None]
    assert verdict_of("A", "B") == "x" and verdict_of("B", "A") == "y"  # the same answer named in both orders
    assert verdict_of("A", "A") == verdict_of("B", "B") == "inconsistent"  # position bias: always the first
    assert verdict_of("tie", "tie") == "tie" and verdict_of("tie", "A") == "inconsistent"
    assert verdict_of(None, "A") == "unreadable"


def test_candidates_are_scored_by_grounding_and_gold_f1():
    text = "This Agreement is governed by the laws of Ohio. Fees are due monthly."
    sentence = "This Agreement is governed by the laws of Ohio."
    right = score_candidate(sentence, text, [], [sentence], CATEGORY)
    assert right.grounded == 1.0 and right.gold_f1 == 1.0 and right.score == 1.0
    half = score_candidate(f"Fees are due monthly.\n{INVENTED}", text, [], ["the laws of Ohio"], CATEGORY)
    assert half.grounded == 0.5 and half.gold_f1 == 0.0 and half.score == 0.25
    none = score_candidate("NONE", text, [], None, CATEGORY)
    assert none.quotes == () and none.grounded == 1.0 and none.gold_f1 is None and none.score == 1.0


def test_a_pair_needs_a_consistent_judge_that_agrees_with_the_scores():
    best, worst = Candidate(("a",), 1.0, 1.0), Candidate(("b",), 0.0, 0.0)
    assert decide(best, worst, "x") == ("x", True)
    assert decide(best, worst, "y") == (None, False)  # contradicts gold: dropped, and counted as disagreement
    assert decide(best, worst, "inconsistent") == (None, None)
    tied_a, tied_b = Candidate(("a",), 1.0, None), Candidate(("b",), 1.0, None)
    assert decide(tied_a, tied_b, "y") == ("y", None)  # no score difference and no gold: the judge decides


def test_kept_pairs_are_trainable_with_provenance_and_a_report(demo_dataset, tmp_path):
    contract_id = first_train_contract(demo_dataset)
    gold = governing_law_gold(demo_dataset, contract_id)
    student = ScriptedStudent([gold, INVENTED])
    judge = consistent_judge(gold[:30])
    report = build_pairs(config_for(tmp_path), student_lm=student, judge_lm=judge)
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert len(rows) == report["pairs"] == 1 and skip_reason(rows[0]) is None
    row = rows[0]
    assert row["source"] == "rlaif" and row["contract_id"] == contract_id and row["category"] == CATEGORY
    assert gold in row["chosen"][0]["content"] and INVENTED in row["rejected"][0]["content"]
    assert row["scores"]["chosen"] == {"grounded": 1.0, "gold_f1": 1.0, "score": 1.0}
    assert row["scores"]["rejected"]["grounded"] == 0.0
    assert row["judge"]["best_first"] == "A" and row["judge"]["best_second"] == "B"
    assert [m["role"] for m in row["prompt"]] == ["system", "user"] and CATEGORY in row["prompt"][1]["content"]
    assert len({call["seed"] for call in student.calls}) == 2 and all(c["temperature"] > 0 for c in student.calls)
    assert report["judge_gold_agreement"] == {"agree": 1, "disagree": 0, "rate": 1.0}
    assert report["counts"]["rlaif"]["kept"] == 1 and report["pairs_per_source"] == {"rlaif": 1}
    assert json.loads((tmp_path / "pairs.jsonl.report.json").read_text())["pairs"] == 1
    again = build_pairs(config_for(tmp_path), student_lm=student, judge_lm=judge)  # done contracts are skipped
    assert again["pairs"] == 1 and len(student.calls) == 2


def test_a_position_biased_judge_keeps_no_pair(demo_dataset, tmp_path):
    contract_id = first_train_contract(demo_dataset)
    student = ScriptedStudent([governing_law_gold(demo_dataset, contract_id), INVENTED])
    always_first = DummyLM([{"rationale": "The first is better.", "better": "A"}] * 2)
    report = build_pairs(config_for(tmp_path), student_lm=student, judge_lm=always_first)
    assert report["pairs"] == 0 and report["counts"]["rlaif"]["judge_inconsistent"] == 1
    assert report["judge_gold_agreement"]["rate"] is None  # an inconsistent verdict says nothing about gold


def test_identical_answers_make_no_pair(demo_dataset, tmp_path):
    student = ScriptedStudent(["NONE"])
    report = build_pairs(config_for(tmp_path), student_lm=student, judge_lm=DummyLM([]))
    counts = report["counts"]["rlaif"]
    assert report["pairs"] == 0 and counts["no_distinct_answers"] == 1 and counts["duplicate_answers"] == 1


def test_an_unreachable_judge_names_role_and_url_and_keeps_finished_contracts(demo_dataset, tmp_path):
    contract_id = first_train_contract(demo_dataset)
    gold = governing_law_gold(demo_dataset, contract_id)
    student = ScriptedStudent([gold, INVENTED])
    build_pairs(config_for(tmp_path), student_lm=student, judge_lm=consistent_judge(gold[:30]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"  # nothing listens there once the probe closes
    down = dspy.LM("openai/judge-model", api_base=url, api_key="none", num_retries=0, cache=False)
    student = ScriptedStudent(["NONE", INVENTED])
    with pytest.raises(RoleUnavailable, match=rf"judge LM 'openai/judge-model' at {url}.*re-run"):
        build_pairs(config_for(tmp_path, limit_contracts=6, categories=None, questions_per_contract=1),
                    student_lm=student, judge_lm=down)
    rows = (tmp_path / "pairs.jsonl").read_text().splitlines()
    assert len(rows) == 1 and json.loads(rows[0])["contract_id"] == contract_id  # the finished contract stays


@pytest.mark.real_model
def test_a_tiny_real_run_samples_scores_and_judges_with_smollm2(demo_dataset, tmp_path):
    from clauseloop.models import SMOLLM2

    config = config_for(tmp_path, student=SMOLLM2, judge=SMOLLM2, categories=(CATEGORY, "Parties"), threads=4,
                        answer_tokens=48)
    report = build_pairs(config)
    counts = report["counts"]["rlaif"]
    outcomes = ("kept", "judge_tie", "judge_inconsistent", "judge_unreadable", "judge_contradicts_scores",
                "no_distinct_answers", "gated")
    assert counts["questions"] == 2 and sum(counts.get(name, 0) for name in outcomes) == 2
    assert report["pairs"] == counts.get("kept", 0) and report["student"] == report["judge"] == SMOLLM2
    for line in (tmp_path / "pairs.jsonl").read_text().splitlines():
        assert skip_reason(json.loads(line)) is None


def test_the_cli_refuses_settings_that_cannot_make_pairs(tmp_path):
    from typer.testing import CliRunner

    from clauseloop.cli import app

    outcome = CliRunner().invoke(app, ["finetune", "pairs", "--out", str(tmp_path / "p.jsonl"), "--candidates", "1"])
    assert outcome.exit_code == 2 and "candidates must be >= 2" in " ".join(outcome.output.split())
    outcome = CliRunner().invoke(app, ["finetune", "pairs", "--out", str(tmp_path / "p.jsonl"), "--temperature", "0"])
    assert outcome.exit_code == 2 and "temperature must be > 0" in " ".join(outcome.output.split())
