"""The presence gate: thresholds, cross-fitting, persistence, and the runtime decision."""

from __future__ import annotations

import numpy as np
import pytest

from clauseloop.data import Contract
from clauseloop.retrieval.fitting import FitConfig, fit_learned_queries, fit_lexical, label_passages
from clauseloop.retrieval.gate import PresenceGate, cross_fit_presence, presence_scores
from clauseloop.retrieval.learned import CategoryModel, LearnedQueries, load_learned, save_learned

FAST = FitConfig(dense=False, min_df=2, max_iter=30)


def threshold(scores, recall):
    return CategoryModel("X", {}, gate=np.sort(np.asarray(scores, dtype=np.float32))).gate_threshold(recall)


def test_the_threshold_keeps_the_asked_share_of_held_out_clauses():
    scores = list(range(1, 101))  # 100 held-out contracts with the clause, scoring 1..100
    assert threshold(scores, 0.97) == 4  # 97 of them score ≥ 4
    assert threshold(scores, 1.0) == 1 and threshold(scores, 0.0) == 100
    assert threshold([5.0, -2.0], 0.97) == -2.0  # few examples: nothing may be lost
    values = np.random.default_rng(0).permutation(200)
    cut = threshold(values, 0.9)
    assert (values >= cut).mean() >= 0.9 > (values >= cut + 1).mean()
    assert CategoryModel("X", {}).gate_threshold(0.97) is None  # no scores: never gated


def test_presence_score_is_the_best_passage_sum():
    weights = {"A": {"law": 2.0, "govern": 1.0, "state": -0.5}, "B": {"terminat": 3.0}}
    passages = [{"law", "state"}, {"law", "govern"}, {"other"}]
    assert presence_scores(passages, weights) == {"A": 3.0, "B": 0.0}
    assert presence_scores([], weights) == {"A": -np.inf, "B": -np.inf}


def test_subset_keeps_labels_on_the_same_passages(demo_dataset):
    labelled = label_passages(demo_dataset)
    ids = sorted(labelled.ranges)[::2]
    part = labelled.subset(set(ids))
    assert sorted(part.ranges) == ids and len(part.passages) == sum(np.diff(labelled.ranges[c])[0] for c in ids)
    for category, by_contract in part.positives.items():
        assert set(by_contract) <= set(ids)
        for cid, rows in by_contract.items():
            original = {labelled.passages[r] for r in labelled.positives[category][cid]}
            assert {part.passages[r] for r in rows} == original
    assert part.contract_term_sets(ids[0]) == labelled.contract_term_sets(ids[0])


def test_cross_fitted_thresholds_are_stored_with_the_fit(demo_dataset, tmp_path):
    labelled = label_passages(demo_dataset)
    terms = fit_lexical(labelled, FAST)
    scores, stats = cross_fit_presence(labelled, terms, FAST)
    assert stats["folds"] == 4 and set(stats["cross_fitted"]) == {"recall 0.95", "recall 0.97", "recall 0.99"}
    for row in stats["cross_fitted"].values():
        assert 0.0 <= row["gated_without_clause"] <= 1.0 and row["kept_with_clause"] >= 0.9
    assert all(len(v) >= 2 and (np.diff(v) >= 0).all() for v in scores.values())  # ascending, two or more
    # A threshold needs two held-out answers scored by a model of the category: with 2 contracts per fold, a
    # category answered in 3 or more contracts always gets one, and one answered once never does.
    assert {c for c, by in labelled.positives.items() if len(by) >= 3} <= set(scores)
    assert set(scores) <= {c for c, by in labelled.positives.items() if len(by) >= 2}

    learned = fit_learned_queries(demo_dataset, FAST)
    gated = {n: m.gate.tolist() for n, m in learned.models.items() if m.gate is not None}
    assert gated == {c.lower(): v.tolist() for c, v in scores.items()} and learned.manifest["gate"] == stats
    loaded = load_learned(save_learned(learned, tmp_path / "fit"))
    assert {n: m.gate.tolist() for n, m in loaded.models.items() if m.gate is not None} == gated
    without = fit_learned_queries(demo_dataset, FitConfig(dense=False, min_df=2, max_iter=30, gate_folds=0))
    assert all(m.gate is None for m in without.models.values()) and without.manifest["gate"] is None


def hand_made_gate(threshold: float | None) -> PresenceGate:
    scores = None if threshold is None else np.array([threshold], dtype=np.float32)
    model = CategoryModel("Governing Law", {"laws": 2.0, "govern": 1.5, "state": 0.5}, gate=scores)
    return PresenceGate(LearnedQueries({"governing law": model}, {"chunking": {"max_chars": 200, "overlap_chars": 100}}))


def test_the_gate_blocks_only_contracts_scoring_below_the_threshold():
    with_clause = Contract("a", "a", "This Agreement is governed by the laws of the State of Delaware.\n\nPayment.")
    without = Contract("b", "b", "The Supplier delivers the goods.\n\nThe Buyer pays within 30 days.")
    gate = hand_made_gate(threshold=3.0)
    assert gate.chunking.max_chars == 200  # contracts are chunked as the models were fitted
    assert gate.score(with_clause, "Governing Law") == 4.0 and gate.allows(with_clause, "Governing Law")
    assert gate.score(without, "Governing Law") == 0.0 and not gate.allows(without, "Governing Law")
    assert gate.allows(without, "Termination For Convenience")  # no model: never gated
    assert hand_made_gate(threshold=None).allows(without, "Governing Law")  # no threshold: never gated
    changed = Contract("b", "b", without.text + "\n\nThe laws of Delaware govern.")
    assert gate.allows(changed, "Governing Law")  # cached term sets follow the contract's text


def test_the_gate_recall_is_checked():
    with pytest.raises(ValueError, match="gate recall"):
        PresenceGate(None, recall=1.5)
    assert PresenceGate(None).allows(Contract("a", "a", "text"), "Governing Law")  # no learned models: no gate
