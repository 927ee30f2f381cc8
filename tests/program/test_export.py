"""Export in CUAD's official nbest_predictions form, and gold in its SQuAD layout."""

from __future__ import annotations

import json

import pytest

from clauseloop.data import ClauseQuestion, Contract, Span, load_cuad
from clauseloop.program import GoldQuestion, PredictedSpan, ScoringConfig, score_corpus
from clauseloop.program.export import (
    OFFICIAL_FILENAME,
    nbest_entries,
    read_nbest,
    squad_gold,
    to_nbest,
    validate_nbest,
    write_nbest,
    write_squad_gold,
)


def test_nbest_entries_sorted_deduplicated_and_plain_json():
    entries = nbest_entries([
        PredictedSpan("low", 0, 3, 0.2),
        {"text": "high", "confidence": 0.9},
        PredictedSpan("low", 10, 13, 0.4),  # the same text twice: listed once, with its best confidence
        PredictedSpan("", confidence=0.99),  # empty text is not a span
        "certain",
    ])
    assert entries == [
        {"text": "certain", "probability": 1.0},
        {"text": "high", "probability": 0.9},
        {"text": "low", "probability": 0.4},
    ]
    assert json.loads(json.dumps(entries)) == entries


def test_no_span_is_the_squad_no_answer():
    assert nbest_entries([]) == [{"text": "", "probability": 1.0}]
    assert nbest_entries([PredictedSpan("")]) == [{"text": "", "probability": 1.0}]


def test_to_nbest_keys_every_question_and_rejects_repeats():
    nbest = to_nbest([("q1", [PredictedSpan("a", confidence=0.5)]), ("q2", [])])
    assert nbest == {"q1": [{"text": "a", "probability": 0.5}], "q2": [{"text": "", "probability": 1.0}]}
    with pytest.raises(ValueError, match="predicted twice"):
        to_nbest([("q1", []), ("q1", [])])


def test_write_and_read_round_trip_with_manifest(tmp_path):
    nbest = to_nbest([("Acme__Parties", ["Acme Corp"]), ("Acme__Governing Law", [])])
    path = write_nbest(tmp_path / "run", nbest, manifest={"program": "ContractQA", "data": "abc123"})
    assert path == tmp_path / "run" / OFFICIAL_FILENAME
    # only the official form inside the predictions file: CUAD's script asserts its keys equal the gold ids
    assert json.loads(path.read_text()) == nbest
    manifest = json.loads((tmp_path / "run" / "nbest_predictions_.manifest.json").read_text())
    assert manifest["program"] == "ContractQA" and manifest["n_questions"] == 2
    assert "dspy" in manifest["versions"]
    assert read_nbest(tmp_path / "run") == nbest
    with pytest.raises(FileNotFoundError, match="write_nbest"):
        read_nbest(tmp_path / "elsewhere.json")


@pytest.mark.parametrize(
    "bad",
    [["not", "a", "dict"], {"q": {"text": "x"}}, {"q": [{"text": "x"}]}, {"q": [{"text": 3, "probability": 0.1}]}],
)
def test_validate_rejects_malformed_nbest(bad):
    with pytest.raises(ValueError):
        validate_nbest(bad)


def test_squad_gold_round_trips_through_the_loader_and_scores_perfectly(tmp_path):
    text = "This Agreement is between Acme Corp and Beta LLC. It is governed by the laws of New York."
    contract = Contract(id="Acme", title="Acme", text=text)
    questions = [
        ClauseQuestion("Acme__Parties", "Acme", "Parties", 'related to "Parties"', "", (Span("Acme Corp", 26),)),
        ClauseQuestion("Acme__Governing Law", "Acme", "Governing Law", 'related to "Governing Law"', "",
                       (Span("laws of New York", 72),)),
        ClauseQuestion("Acme__Non-Compete", "Acme", "Non-Compete", 'related to "Non-Compete"', "", (), True),
    ]
    doc = squad_gold(questions, {"Acme": contract})
    qas = doc["data"][0]["paragraphs"][0]["qas"]
    assert [qa["id"] for qa in qas] == [q.id for q in questions]
    assert qas[2] == {"id": "Acme__Non-Compete", "question": 'related to "Non-Compete"', "is_impossible": True,
                      "answers": []}
    path = write_squad_gold(tmp_path / "gold.json", questions, {"Acme": contract})
    reloaded = load_cuad(path)
    assert {q.id: [a.text for a in q.answers] for q in reloaded.questions} == {
        q.id: [a.text for a in q.answers] for q in questions
    }
    nbest = to_nbest((q.id, [PredictedSpan(a.text, a.start, a.end, 0.9) for a in q.answers]) for q in questions)
    score = score_corpus([GoldQuestion.from_question(q) for q in questions], nbest, ScoringConfig(bootstrap_draws=0))
    assert (score.aupr, score.prec_at_80_recall) == (1.0, 1.0)
