"""Grounded self-instruct: teacher questions about gold clauses, each filter counted, resumable, honest with a real LM.

The wiring tests use ``DummyLM`` as the teacher (keyed by the clause it is shown) on the demo train contracts with
the program's real retrieval; the last test runs the local SmolLM2 as the teacher.
"""

from __future__ import annotations

import logging
import random
import re
import time

import pytest
from dspy.utils.dummies import DummyLM

from clauseloop.data import load_cuad, split_of
from clauseloop.finetune.dataset import SFTDataset
from clauseloop.finetune.gold import contract_rng
from clauseloop.finetune.rows import collapse, program_inputs, shown_part
from clauseloop.finetune.selfinstruct import (
    COUNTERS,
    SOURCE,
    NoveltyIndex,
    SelfInstructConfig,
    build_synthetic_rows,
    clause_excerpt,
    clean_question,
    pick_clauses,
)
from clauseloop.engine.reachability import RoleUnavailable
from clauseloop.program.qa import ContractQA, category_prompt

logger = logging.getLogger(__name__)

FILTER_DROPS = ("parse_failed", "too_similar", "round_trip_failed", "judge_rejected")


@pytest.fixture(scope="module")
def train():
    return split_of(load_cuad(), "train")


@pytest.fixture(scope="module")
def program(train):
    return ContractQA(train.contracts)


@pytest.fixture(scope="module")
def two_contracts(train):
    return train.subset(sorted(train.contracts)[:2])


def keyword_question(clause: str) -> str:
    """A question made of the clause's four longest words: different clauses give dissimilar questions, and
    the words lead retrieval back to the clause."""
    words = list(dict.fromkeys(word.lower() for word in re.findall(r"[A-Za-z]+", clause)))
    longest = sorted(sorted(words, key=len, reverse=True)[:4], key=words.index)
    return f"{' '.join(longest)}: what applies?"


def keyed_teacher(train, question_for=keyword_question) -> DummyLM:
    """A teacher that answers each clause it is shown (matched by the start of the clause text)."""
    replies = {}
    for question in train.questions:
        for span in question.answers:
            replies[clause_excerpt(span.text, 600)[:80]] = {"question": question_for(span.text)}
    return DummyLM(replies)


def counts_of(dataset: SFTDataset) -> dict[str, int]:
    return dataset.state["counts"].get(SOURCE, {})


def assert_counts_add_up(counts: dict[str, int]) -> None:
    assert counts["clauses"] == counts["not_verbatim"] + counts["generated"]
    assert counts["generated"] == counts["kept"] + sum(counts[name] for name in FILTER_DROPS)


def test_rows_are_synthetic_verbatim_with_none_rows_and_rerun_adds_nothing(tmp_path, two_contracts, program):
    dataset = SFTDataset(tmp_path / "sft.jsonl")
    config = SelfInstructConfig(clauses_per_contract=4, none_share=0.4)
    written = build_synthetic_rows(dataset, two_contracts, program, keyed_teacher(two_contracts), config)
    rows = dataset.rows()
    counts = counts_of(dataset)
    assert written == len(rows) == counts["kept"] + counts["none_rows"] > 0
    assert_counts_add_up(counts)
    for row in rows:
        contract = two_contracts.contracts[row["contract_id"]]
        assert row["source"] == SOURCE and row["question"]
        assert all(quote in collapse(contract.text) for quote in row["quotes"])
        # the prompt is what ContractQA shows for the free question, not for the category
        assert category_prompt(None, row["question"], 240) in row["prompt"][1]["content"]
    none_rows = [row for row in rows if not row["quotes"]]
    assert none_rows and counts["none_rows"] == len(none_rows)
    for row in none_rows:
        answerable = {q.category for q in two_contracts.questions_for(row["contract_id"]) if q.answerable}
        assert row["category"] not in answerable and row["completion"][0]["content"].count("NONE")

    silent_teacher = DummyLM([])
    reopened = SFTDataset(tmp_path / "sft.jsonl")
    assert build_synthetic_rows(reopened, two_contracts, program, silent_teacher, config) == 0
    assert reopened.rows() == rows and not silent_teacher.history
    assert len({row["id"] for row in rows}) == len(rows)


def test_near_duplicate_of_a_question_in_the_file_is_dropped_as_too_similar(tmp_path, train, program):
    first, second = sorted(train.contracts)[:2]
    path = tmp_path / "sft.jsonl"
    config = SelfInstructConfig(clauses_per_contract=3, none_share=0.0)
    build_synthetic_rows(SFTDataset(path), train.subset([first]), program, keyed_teacher(train), config)
    earlier = [row["question"] for row in SFTDataset(path).rows()]
    assert earlier, "the keyed teacher's questions should round-trip"
    # a later run, a new process: the file's questions count as kept
    dataset = SFTDataset(path)
    near_duplicate = DummyLM([{"question": earlier[0].replace("?", " here?")}] * 3)
    assert build_synthetic_rows(dataset, train.subset([second]), program, near_duplicate, config) == 0
    counts = counts_of(dataset)
    assert counts["too_similar"] == 3 and counts["kept"] == len(earlier)
    assert_counts_add_up(counts)


def test_novelty_index_pruning_agrees_with_scoring_every_pair():
    rng = random.Random(1)
    vocabulary = "can the distributor sell outside territory who pays for shipping may licensee assign".split()
    kept = [" ".join(rng.choices(vocabulary, k=rng.randint(4, 9))) + "?" for _ in range(40)]
    # half near-duplicates (one word changed), half fresh: both verdicts must occur
    near = [re.sub(r"^\w+", rng.choice(vocabulary), question) for question in kept[:10]]
    fresh = [" ".join(rng.choices(vocabulary, k=rng.randint(4, 9))) + "?" for _ in range(10)]
    index = NoveltyIndex(0.7)
    for question in kept:
        index.add(question)
    verdicts = []
    for question in near + fresh:
        brute = max(index._scorer.score(other, question)["rougeL"].fmeasure for other in kept)
        verdicts.append(index.is_novel(question))
        assert verdicts[-1] == (brute < 0.7)
        if brute >= 0.7:
            assert index.most_similar(question) == pytest.approx(brute)
    assert True in verdicts and False in verdicts


def test_question_that_retrieves_another_passage_fails_the_round_trip(tmp_path, train, program):
    contract_id = sorted(train.contracts)[0]
    contract, config = train.contracts[contract_id], SelfInstructConfig(clauses_per_contract=1, none_share=0.0)
    clause = pick_clauses(train.questions_for(contract_id), config, contract_rng(contract_id, config.seed))[0]
    candidates = ["Who signs on behalf of each company and when?", "What fees are due, and when must they be paid?",
                  "How must confidential information be protected?", "Where will disputes be decided?"]
    elsewhere = next(q for q in candidates if len(shown_part(
        contract, clause.span.start, clause.span.end, program_inputs(program, contract, None, q)[2])) < 20)
    dataset = SFTDataset(tmp_path / "sft.jsonl")
    teacher = DummyLM([{"question": elsewhere}])
    assert build_synthetic_rows(dataset, train.subset([contract_id]), program, teacher, config) == 0
    assert counts_of(dataset)["round_trip_failed"] == 1 and counts_of(dataset)["kept"] == 0


def test_unusable_teacher_replies_are_dropped_as_parse_failures(tmp_path, train, program):
    contract_id = sorted(train.contracts)[0]
    replies = [{"answer": "no question field at all"}, {"question": "The law of Washington governs."},
               {"question": "Is it " + "really " * 80 + "so?"}, {"question": ""}]
    dataset = SFTDataset(tmp_path / "sft.jsonl")
    config = SelfInstructConfig(clauses_per_contract=4, none_share=0.0)
    assert build_synthetic_rows(dataset, train.subset([contract_id]), program, DummyLM(replies), config) == 0
    assert counts_of(dataset)["parse_failed"] == counts_of(dataset)["generated"] == 4


def test_a_reply_that_breaks_the_format_still_gives_its_question():
    from clauseloop.data import Span
    from clauseloop.finetune.selfinstruct import Clause, ask_teacher

    clause = Clause("Governing Law", Span("This Agreement is governed by the laws of the State of Washington.", 0))
    teacher = DummyLM([{"answer": "Which state's law governs this agreement?"}])  # no `question` field marker
    assert ask_teacher(teacher, clause, SelfInstructConfig()) == "Which state's law governs this agreement?"


def test_clean_question_keeps_one_question_and_refuses_copies():
    clause = "This Agreement will be governed by the laws of the State of Washington, excluding its conflict rules."
    assert clean_question('**Question:** "Which state\'s law governs? Also, where?"', clause, 300) == \
        "Which state's law governs?"
    assert clean_question("1. Which law applies to this deal?\nAnswer: Washington", clause, 300) == \
        "Which law applies to this deal?"
    copied = "Is it true that this Agreement will be governed by the laws of the State of Washington?"
    assert clean_question(copied, clause, 300) is None
    assert clean_question("Which law?", clause, 300) is None  # too short to be a lawyer's question


def test_judge_threshold_rejects_low_scores_and_stores_kept_scores(tmp_path, train, program):
    contract_id = sorted(train.contracts)[0]
    subset, config = train.subset([contract_id]), SelfInstructConfig(clauses_per_contract=2, none_share=0.0,
                                                                     judge_threshold=0.5)
    with pytest.raises(ValueError, match="judge_lm"):
        build_synthetic_rows(SFTDataset(tmp_path / "none.jsonl"), subset, program, keyed_teacher(subset), config)
    dataset = SFTDataset(tmp_path / "sft.jsonl")
    judge = DummyLM([{"score": "0.9"}, {"score": "0.2"}])
    build_synthetic_rows(dataset, subset, program, keyed_teacher(subset), config, judge_lm=judge)
    counts = counts_of(dataset)
    assert counts["kept"] + counts["judge_rejected"] == len(judge.history) > 0
    assert all(row["score"] == pytest.approx(0.9) for row in dataset.rows())
    assert_counts_add_up(counts)


def test_unreachable_teacher_names_role_and_url_and_keeps_earlier_rows(tmp_path, two_contracts, program, monkeypatch):
    import dspy

    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    first, second = sorted(two_contracts.contracts)
    path, config = tmp_path / "sft.jsonl", SelfInstructConfig(clauses_per_contract=2, none_share=0.0)
    build_synthetic_rows(SFTDataset(path), two_contracts.subset([first]), program, keyed_teacher(two_contracts), config)
    before = SFTDataset(path).rows()
    unreachable = dspy.LM("openai/x", api_base="http://127.0.0.1:9/v1", api_key="k", num_retries=0, cache=False)
    with pytest.raises(RoleUnavailable, match=r"teacher.*http://127\.0\.0\.1:9/v1"):
        build_synthetic_rows(SFTDataset(path), two_contracts, program, unreachable, config)
    after = SFTDataset(path)
    assert before and after.rows() == before
    assert after.is_done(SOURCE, first) and not after.is_done(SOURCE, second)


@pytest.mark.real_model
def test_real_smollm2_teacher_counts_add_up(tmp_path, train, program, smollm2_dir):
    from clauseloop.engine.roles import make_lm

    contract_id = sorted(train.contracts)[0]
    dataset = SFTDataset(tmp_path / "sft.jsonl")
    config = SelfInstructConfig(clauses_per_contract=3, teacher_max_tokens=40)
    started = time.perf_counter()
    written = build_synthetic_rows(dataset, train.subset([contract_id]), program,
                                   make_lm("smollm2-135m-instruct"), config)
    counts = counts_of(dataset)
    logger.info("real teacher: %s, %d written in %.1f s", counts, written, time.perf_counter() - started)
    assert set(counts) == set(COUNTERS) and counts["generated"] == 3
    assert_counts_add_up(counts)
    assert written == len(dataset.rows()) == counts["kept"] + counts["none_rows"]
    for row in dataset.rows():
        assert all(quote in collapse(train.contracts[contract_id].text) for quote in row["quotes"])
