"""Human feedback → DPO pairs: which records make a pair, which are counted and left out, and the rows written."""

from __future__ import annotations

import json
from collections import Counter

from clauseloop.feedback import FeedbackRecord, FeedbackSpan, contract_hash
from clauseloop.feedback.pairs import pair_rows, preference_sides, write_feedback_pairs


def vote(record_id: int, kind: str, *quotes: str, corrected: tuple[str, ...] | None = None, **values) -> FeedbackRecord:
    spans = tuple(FeedbackSpan(text) for text in quotes)
    correction = None if corrected is None else tuple(FeedbackSpan(text) for text in corrected)
    values = {"contract_hash": "0" * 16, "category": "Governing Law", **values}
    return FeedbackRecord(vote=kind, spans=spans, corrected_spans=correction, id=record_id, **values)


def test_a_thumbs_down_with_a_correction_prefers_the_correction():
    sides = preference_sides([vote(1, "down", "8. TERMINATION", corrected=("laws of Delaware",))])
    assert sides == [(["laws of Delaware"], ["8. TERMINATION"], [1])]


def test_a_thumbs_up_beats_a_thumbs_down_on_another_answer_and_lone_votes_make_no_pair():
    up, down = vote(1, "up", "laws of Delaware"), vote(2, "down", "Exhib")
    assert preference_sides([up, down]) == [(["laws of Delaware"], ["Exhib"], [1, 2])]
    assert preference_sides([up]) == []
    assert preference_sides([down]) == []
    # A "correction" equal to what was shown says nothing.
    assert preference_sides([vote(3, "down", "Exhib", corrected=("Exhib",))]) == []


def test_pair_rows_are_prompt_chosen_rejected_and_count_what_was_left_out(demo_dataset):
    from clauseloop.program.evaluation import build_program

    contract = next(iter(demo_dataset.contracts.values()))
    known = contract_hash(contract.text)
    records = [
        vote(1, "down", "nothing useful", corrected=("the real clause",), contract_hash=known),
        vote(2, "up", "a fine answer", contract_hash=known),  # lone thumbs-up
        vote(3, "down", "x", corrected=("y",), contract_hash="f" * 16),  # not in the data
        FeedbackRecord(contract_hash=known, vote="down", question="Who pays?", id=4),  # free question
    ]
    counts: Counter = Counter()
    rows = pair_rows(records, demo_dataset, build_program("zero-shot", demo_dataset), counts)
    assert counts == Counter(records=4, pairs=1, unpaired=1, unknown_contract=1, free_question=1)
    (row,) = rows
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert "Governing Law" in row["prompt"][1]["content"]
    assert "the real clause" in row["chosen"][0]["content"]
    assert "nothing useful" in row["rejected"][0]["content"]
    assert (row["source"], row["contract_id"], row["feedback_ids"]) == ("human", contract.id, [1])


def test_write_feedback_pairs_writes_json_lines_and_returns_the_counts(demo_dataset, tmp_path):
    contract = next(iter(demo_dataset.contracts.values()))
    records = [vote(1, "down", "Exhib", corrected=("laws of Delaware",), contract_hash=contract_hash(contract.text))]
    report = write_feedback_pairs(records, demo_dataset, tmp_path / "pairs.jsonl")
    lines = (tmp_path / "pairs.jsonl").read_text().splitlines()
    assert report["pairs"] == len(lines) == 1 and report["records"] == 1
    assert json.loads(lines[0])["feedback_ids"] == [1]
