import numpy as np
import pytest

from clauseloop.data import ClauseQuestion, Span
from clauseloop.retrieval.chunking import Passage
from clauseloop.retrieval.evaluate import covered_share, span_recall
from clauseloop.retrieval.fusion import FusionConfig, pick_diverse, ranks_of, reciprocal_rank_fusion


def test_rrf_orders_a_hand_made_case():
    # Items: 0 is first for dense only, 1 is second in both lists, 2 is first for lexical only, 3 is last in both.
    dense = np.array([0.9, 0.8, 0.1, 0.0])
    lexical = np.array([0.0, 5.0, 7.0, 1.0])
    fused = reciprocal_rank_fusion([dense, lexical], [1.0, 1.0], k=1)
    # dense ranks 1,2,3,4; lexical ranks 4,2,1,3 -> 1/2+1/5, 1/3+1/3, 1/4+1/2, 1/5+1/4
    assert np.allclose(fused, [0.7, 2 / 3, 0.75, 0.45])
    assert list(np.argsort(-fused, kind="stable")) == [2, 0, 1, 3]
    # Weighting the dense list up flips the two single-list winners; weight 0 drops a list entirely.
    assert list(np.argsort(-reciprocal_rank_fusion([dense, lexical], [3.0, 1.0], k=1), kind="stable"))[:2] == [0, 1]
    assert np.allclose(reciprocal_rank_fusion([dense, lexical], [1.0, 0.0], k=1), 1 / (1 + ranks_of(dense)))


def test_ranks_keep_input_order_on_ties():
    assert list(ranks_of(np.array([1.0, 3.0, 1.0]))) == [2, 1, 3]


def test_pick_diverse_skips_repeated_text():
    starts, ends = [0, 50, 100, 400], [100, 150, 200, 500]
    order = [0, 1, 2, 3]  # item 1 shares half of itself with item 0
    assert pick_diverse(order, starts, ends, k=3, max_overlap=0.4) == [0, 2, 3]
    assert pick_diverse(order, starts, ends, k=3, max_overlap=1.0) == [0, 1, 2]


def test_default_overlap_keeps_a_neighbour_that_adds_half_new_text():
    # Consecutive chunks share up to half their text: the default keeps such a neighbour, not a near-copy.
    half, near_copy, elsewhere = (300, 900), (100, 700), (2000, 2600)
    starts, ends = zip((0, 600), near_copy, half, elsewhere)
    chosen = pick_diverse([0, 1, 2, 3], starts, ends, k=3, max_overlap=FusionConfig().max_overlap)
    assert chosen == [0, 2, 3]


def _passage(start: int, end: int, cid: str = "c") -> Passage:
    return Passage(cid, start, end, "x" * (end - start))


def test_covered_share_uses_the_union_of_passages():
    span = Span("y" * 100, 100)  # characters 100..200
    assert covered_share(span, [_passage(0, 150)]) == 0.5
    assert covered_share(span, [_passage(0, 149)]) == 0.49
    assert covered_share(span, [_passage(120, 140), _passage(130, 170), _passage(190, 400)]) == 0.6
    assert covered_share(span, []) == 0.0


def test_span_recall_counts_spans_and_skips_unanswerable_questions():
    questions = [
        ClauseQuestion("q1", "c", "Governing Law", "?", "", answers=(Span("a" * 10, 0), Span("b" * 10, 500))),
        ClauseQuestion("q2", "c", "Parties", "?", "", answers=(Span("c" * 10, 1000),)),
        ClauseQuestion("q3", "c", "Insurance", "?", "", answers=(), is_impossible=True),
    ]
    ranked = {"q1": [_passage(0, 20), _passage(300, 400), _passage(495, 520)], "q2": [_passage(0, 20)]}
    report = span_recall(questions, lambda q, k: ranked[q.id][:k], ks=(1, 3))
    assert (report.questions, report.spans) == (2, 3)
    assert report.recall(1) == pytest.approx(1 / 3) and report.recall(3) == pytest.approx(2 / 3)
    per_category = report.to_dict()["per_category"]
    assert per_category["Governing Law"] == {"spans": 2, "recall@1": 0.5, "recall@3": 1.0}
    assert per_category["Parties"]["recall@3"] == 0.0


def test_span_recall_refuses_passages_of_another_contract():
    question = ClauseQuestion("q", "c", "Parties", "?", "", answers=(Span("abc", 0),))
    with pytest.raises(ValueError, match="another contract"):
        span_recall([question], lambda q, k: [_passage(0, 3, cid="other")])
