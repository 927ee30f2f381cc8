"""ContractQA: wiring with DummyLM, then end-to-end on the demo contracts with the real local model."""

from __future__ import annotations

import copy

import dspy
import numpy as np
import pytest
from dspy.utils import DummyLM

from clauseloop.program.qa import (
    ContractQA,
    QAConfig,
    answer_presence,
    category_prompt,
    format_passages,
    lm_certainty,
    merge_overlapping,
    retrieval_support,
)
from clauseloop.retrieval import Passage


def governing_law(dataset):
    return next(q for q in dataset.questions if q.category == "Governing Law" and q.answers)


def fixed_retriever(passages):
    calls = []

    def retrieve(contract, query, k):
        calls.append((contract.id, query, k))
        return passages[:k]

    retrieve.calls = calls
    return retrieve


def test_quotes_are_grounded_with_offsets_and_hallucinations_dropped(demo_dataset):
    question = governing_law(demo_dataset)
    contract = demo_dataset.contracts[question.contract_id]
    gold = question.answers[0]
    passages = [Passage(contract.id, gold.start, gold.end, gold.text), Passage(contract.id, 0, 50, contract.text[:50])]
    retriever = fixed_retriever(passages)
    program = ContractQA(demo_dataset.contracts, retriever=retriever, config=QAConfig(k=2, logprobs=False))
    answer = f"{' '.join(gold.text.split())}\nThis Agreement is governed by the laws of Mars."
    with dspy.context(lm=DummyLM([{"clauses": answer}])):
        prediction = program(contract_id=contract.id, category="Governing Law")
    (span,) = prediction.spans
    assert contract.text[span.start : span.end] == span.text == gold.text
    assert span.confidence == 1.0  # top passage, no log-probs → certainty 1 × support 1
    assert prediction.dropped == 1
    assert retriever.calls[0][0] == contract.id and retriever.calls[0][2] == 2


def test_none_answer_and_unknown_contract(demo_dataset):
    contract = next(iter(demo_dataset.contracts.values()))
    program = ContractQA(demo_dataset.contracts, retriever=fixed_retriever([Passage(contract.id, 0, 40, contract.text[:40])]))
    with dspy.context(lm=DummyLM([{"clauses": "NONE"}])):
        assert program(contract_id=contract.id, category="Source Code Escrow").spans == []
    with pytest.raises(KeyError, match="unknown contract"):
        program(contract_id="nope", category="Parties")


def test_deepcopy_shares_contracts_and_save_load_roundtrip(demo_dataset, tmp_path):
    program = ContractQA(demo_dataset.contracts)
    program.extract.demos = [dspy.Example(category="Parties: x", passages="[1] A", clauses="A")]
    clone = copy.deepcopy(program)
    assert clone.shared is program.shared and clone.extract is not program.extract
    path = tmp_path / "program.json"
    program.save(str(path))
    restored = ContractQA(demo_dataset.contracts)
    restored.load(str(path))
    assert restored.extract.demos[0]["clauses"] == "A"


def header_then(first: dict) -> dict:
    """Log-probs of a reply "[[ ## clauses ## ]]\n<first>…" as DSPy passes them on."""
    header = [{"token": t, "logprob": -0.01} for t in ("[[", " ##", " clauses", " ##", " ]", "]", "\n")]
    return {"content": [*header, first, {"token": "ONE", "logprob": -0.01}]}


def test_presence_is_one_minus_the_chance_of_starting_none():
    import math

    quoting = {"token": "This", "logprob": math.log(0.7),
               "top_logprobs": [{"token": "This", "logprob": math.log(0.7)}, {"token": "N", "logprob": math.log(0.2)},
                                {"token": "The", "logprob": math.log(0.05)}]}
    assert answer_presence(dspy.Prediction(logprobs=header_then(quoting))) == pytest.approx(0.8)
    declining = {"token": "N", "logprob": math.log(0.9), "top_logprobs": [{"token": "N", "logprob": math.log(0.9)}]}
    assert answer_presence(dspy.Prediction(logprobs=header_then(declining))) == pytest.approx(0.1)
    assert answer_presence(dspy.Prediction(clauses="x")) is None  # no log-probs
    no_header = {"content": [{"token": "N", "logprob": -0.1}, {"token": "ONE", "logprob": -0.1}]}
    assert answer_presence(dspy.Prediction(logprobs=no_header)) is None


def test_confidence_parts():
    logprobs = {"content": [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -0.3}]}
    assert lm_certainty(dspy.Prediction(logprobs=logprobs)) == pytest.approx(0.8187, abs=1e-4)
    assert lm_certainty(dspy.Prediction(clauses="x")) == 1.0
    passages = [Passage("c", 0, 10, "x" * 10), Passage("c", 20, 30, "y" * 10)]
    assert retrieval_support(2, 5, passages) == 1.0
    assert retrieval_support(21, 29, passages) == 0.5
    assert retrieval_support(40, 45, passages) == 0.25
    assert category_prompt("Governing Law", None, 500).startswith("Governing Law: Which")
    assert category_prompt(None, "Who pays for shipping?", 500) == "Who pays for shipping?"


def test_overlapping_passages_are_shown_once_in_rank_order():
    text = "".join(chr(ord("a") + i % 26) for i in range(100))
    passages = [Passage("c", 50, 70, text[50:70]), Passage("c", 0, 20, text[0:20]), Passage("c", 10, 30, text[10:30])]
    assert merge_overlapping(passages, text) == [(50, 70), (0, 30)]
    assert format_passages(passages, text) == f"[1] {text[50:70]}\n[2] {text[0:30]}"
    assert format_passages(passages).count("[") == 3  # without the contract text, each passage as it is


def test_an_answer_cut_by_max_tokens_is_completed_from_the_contract(demo_dataset):
    question = governing_law(demo_dataset)
    contract = demo_dataset.contracts[question.contract_id]
    gold = question.answers[0]
    passages = [Passage(contract.id, gold.start, gold.end, gold.text)]
    program = ContractQA(demo_dataset.contracts, retriever=fixed_retriever(passages), config=QAConfig(k=1, max_tokens=3))
    head = " ".join(gold.text.split()[:4])
    with dspy.context(lm=DummyLM([{"clauses": head}])):
        predicted = program(contract_id=contract.id, category="Governing Law")
    assert predicted.spans[0].text == head  # DummyLM reports no log-probs: nothing says the answer was cut
    with dspy.context(lm=DummyLM([{"clauses": head}])):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("clauseloop.program.qa.token_logprobs", lambda prediction: [-0.1] * 3)
            predicted = program(contract_id=contract.id, category="Governing Law")
    (span,) = predicted.spans
    assert contract.text[span.start : span.end] == span.text
    assert span.start == gold.start and span.end >= gold.end - 1 and len(span.text) > len(head)


@pytest.mark.real_model
def test_real_model_end_to_end_on_demo(demo_dataset, smollm2_dir):
    from clauseloop.engine.roles import make_lm

    program = ContractQA(demo_dataset.contracts, config=QAConfig(k=2, max_tokens=48, gate=False))
    contract = next(iter(demo_dataset.contracts.values()))
    with dspy.context(lm=make_lm("student")):
        predictions = program.review(contract, categories=("Governing Law", "Parties", "Audit Rights"))
    assert set(predictions) == {"Governing Law", "Parties", "Audit Rights"}
    for prediction in predictions.values():
        assert len(prediction.passages) == 2
        assert all(p.contract_id == contract.id for p in prediction.passages)
        for span in prediction.spans:  # whatever the small model says, returned text is contract text
            assert contract.text[span.start : span.end] == span.text
            assert 0.0 <= span.confidence <= 1.0
        assert prediction.dropped >= 0


def hand_made_gate(threshold: float):
    from clauseloop.retrieval.gate import PresenceGate
    from clauseloop.retrieval.learned import CategoryModel, LearnedQueries

    model = CategoryModel("Governing Law", {"laws": 2.0, "govern": 1.5}, gate=np.array([threshold], np.float32))
    return PresenceGate(LearnedQueries({"governing law": model}, {}))


def test_a_gated_category_is_answered_without_the_lm(demo_dataset):
    contract = next(iter(demo_dataset.contracts.values()))
    passages = [Passage(contract.id, 0, 40, contract.text[:40])]
    gated = ContractQA(demo_dataset.contracts, retriever=fixed_retriever(passages), gate=hand_made_gate(99.0))
    lm = DummyLM([{"clauses": "NONE"}] * 3)
    with dspy.context(lm=lm):
        prediction = gated(contract_id=contract.id, category="Governing Law")
        assert prediction.gated and prediction.spans == [] and prediction.passages == [] and len(lm.history) == 0
        assert copy.deepcopy(gated)(contract_id=contract.id, category="Governing Law").gated  # copies share it
        gated(contract_id=contract.id, question="Which law governs?")  # free questions are never gated
        gated(contract_id=contract.id, category="Parties")  # nor categories without a threshold
        assert len(lm.history) == 2
        ungated = ContractQA(demo_dataset.contracts, retriever=fixed_retriever(passages),
                             config=QAConfig(gate=False), gate=hand_made_gate(99.0))
        assert not getattr(ungated(contract_id=contract.id, category="Governing Law"), "gated", False)
        assert len(lm.history) == 3


def test_real_model_review_with_the_shipped_gate(demo_dataset, smollm2_dir):
    """The default program gates with the shipped thresholds: gated categories cost no LM call, the others do,
    and a category with a gold clause in this contract gets through."""
    from clauseloop.engine.roles import make_lm
    from clauseloop.retrieval.gate import default_gate

    contract = next(iter(demo_dataset.contracts.values()))
    gold = {q.category for q in demo_dataset.questions if q.contract_id == contract.id and q.answers}
    categories = ("Governing Law", "Source Code Escrow", "Liquidated Damages", "Parties", *sorted(gold)[:2])
    program = ContractQA(demo_dataset.contracts, config=QAConfig(max_tokens=16))
    lm = make_lm("student", cache=False)
    with dspy.context(lm=lm):
        predictions = program.review(contract, categories=categories)
    expected_gated = {c for c in categories if not default_gate().allows(contract, c)}
    assert {c for c, p in predictions.items() if getattr(p, "gated", False)} == expected_gated
    assert len(lm.history) == len(set(categories) - expected_gated)
    assert "Governing Law" in gold and "Source Code Escrow" in expected_gated and not gold & expected_gated
