"""The simulated reviewer of the main job and the alignment benchmark: gold corrections, per contract, once."""

from __future__ import annotations

from clauseloop.feedback.records import contract_hash
from clauseloop.feedback.store import FeedbackStore
from clauseloop.loop.run import reviewer_feedback


def wrong_review(dataset, contract_id: str) -> dict:
    """A review quoting the contract's first 40 characters for every category that has a gold clause."""
    contract = dataset.contracts[contract_id]
    categories = sorted({q.category for q in dataset.questions if q.contract_id == contract_id and q.answers})
    span = {"text": contract.text[:40], "start": 0, "end": 40}
    return {"contract": contract_id, "spans": {category: [span] for category in categories}}


def test_each_contract_gets_its_corrections_once(demo_dataset, tmp_path):
    first, second = sorted(demo_dataset.contracts)[:2]
    database = tmp_path / "feedback.db"
    reviewer_feedback(wrong_review(demo_dataset, first), demo_dataset, database, limit=3)
    reviewer_feedback(wrong_review(demo_dataset, second), demo_dataset, database, limit=3)
    reviewer_feedback(wrong_review(demo_dataset, first), demo_dataset, database, limit=3)  # a re-run adds nothing
    with FeedbackStore(database) as store:
        for contract_id in (first, second):
            records = store.list(contract_hash=contract_hash(demo_dataset.contracts[contract_id].text))
            assert len(records) == 3
            gold = {q.category: {a.text for a in q.answers} for q in demo_dataset.questions
                    if q.contract_id == contract_id}
            for record in records:
                assert record.vote == "down" and {s.text for s in record.corrected_spans} == gold[record.category]
