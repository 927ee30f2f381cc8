"""Official CUAD corpus scoring: constructed corpora whose AUPR and P@R are computed by hand, a naive re-matching
reference, the bootstrap, and the real data scored against itself."""

from __future__ import annotations

import logging
import random

import dspy
import numpy as np
import pytest

from clauseloop.program import GoldQuestion, PredictedSpan, ScoringConfig, score_corpus, score_predictions
from clauseloop.program.metrics import score_question
from clauseloop.program.scoring import (
    THRESHOLDS,
    aupr,
    curve_from_counts,
    precision_at_recall,
    process_precisions,
    question_counts,
)

NO_BOOTSTRAP = ScoringConfig(bootstrap_draws=0)


def _corpus(rows):
    """rows: (contract, gold texts, [(predicted text, probability), ...]) → golds and nbest."""
    golds, nbest = [], {}
    for i, (contract, gold, preds) in enumerate(rows):
        golds.append(GoldQuestion(f"{contract}__q{i}", contract, "Governing Law", tuple(gold)))
        nbest[f"{contract}__q{i}"] = [{"text": text, "probability": p} for text, p in preds]
    return golds, nbest


def test_thresholds_are_the_official_grid():
    assert len(THRESHOLDS) == 101
    assert THRESHOLDS[0] == 0.99 and THRESHOLDS[-2] == 0.001 and THRESHOLDS[-1] == 0.0
    assert np.all(np.diff(THRESHOLDS) < 0)


def test_five_gold_corpus_by_hand():
    # by probability: T .955, F .905, T .855, T .755, T .655, F .555, T .455 (5 golds, 2 false positives)
    # (tp, fp) → (P, R): (1,0) 1/.2, (1,1) .5/.2, (2,1) .67/.4, (3,1) .75/.6, (4,1) .8/.8, (4,2) .67/.8, (5,2) 5/7/1
    # processed P (running max from the low end): 1, .8, .8, .8, .8, 5/7, 5/7
    # AUPR = .2*1 + .2*.8 + .2*.8 + .2*.8 + .2*5/7 = 144/175; P@80R = .8; P@90R = 5/7
    probs = [0.955, 0.855, 0.755, 0.655, 0.455]
    rows = [(f"c{i % 2}", [f"gold clause number {i}"], [(f"gold clause number {i}", p)]) for i, p in enumerate(probs)]
    rows[0][2].append(("unrelated words one", 0.905))
    rows[1][2].append(("unrelated words two", 0.555))
    score = score_corpus(*_corpus(rows), NO_BOOTSTRAP)
    assert score.aupr == pytest.approx(144 / 175)
    assert score.prec_at_80_recall == pytest.approx(0.8)
    assert score.prec_at_90_recall == pytest.approx(5 / 7)
    assert (score.n_questions, score.n_contracts) == (5, 2)


def test_unanswerable_question_predictions_are_false_positives_in_the_curve():
    rows = [
        ("a", ["This Agreement is governed by New York law."], [("this agreement is governed by new york law", 0.955)]),
        ("a", [], [("The term is five years", 0.655)]),  # no gold: a false positive below .655
        ("b", ["Licensee may not assign"], [("unrelated words entirely", 0.355)]),
        ("b", ["The initial term is two years"], [("The initial term is two years", 0.255)]),
    ]
    # (P, R): (1, 1/3) down to .66, (1/2, 1/3) to .36, (1/3, 1/3) to .26, (1/2, 2/3) to 0
    # processed: 1, .5, .5, .5 → AUPR = 1/3 * 1 + 1/3 * .5 = .5; recall never reaches .8
    score = score_corpus(*_corpus(rows), NO_BOOTSTRAP)
    assert score.aupr == pytest.approx(0.5)
    assert score.prec_at_80_recall == 0.0 and score.prec_at_90_recall == 0.0
    curve = score.curve
    assert precision_at_recall(curve, 0.6) == pytest.approx(0.5)
    assert precision_at_recall(curve, 0.3) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("probability", "expected_aupr"),
    [(0.0005, 1.0), (0.001, 1.0), (0.0, 0.0)],  # kept only at threshold 0 (strict >); probability 0 never kept
)
def test_strict_threshold_and_the_unvisited_last_point(probability, expected_aupr):
    golds, nbest = _corpus([("a", ["x y z"], [("x y z", probability)])])
    score = score_corpus(golds, nbest, NO_BOOTSTRAP)
    assert score.aupr == expected_aupr
    # the official P@R loop never looks at threshold 0, so recall reached only there scores 0
    assert score.prec_at_80_recall == 0.0


def test_repeated_nbest_text_keeps_its_last_probability():
    golds, nbest = _corpus([("a", ["x y z"], [("x y z", 0.905), ("x y z", 0.095), ("", 0.99)])])
    counts = question_counts(golds[0], nbest[golds[0].question_id])
    found_at = THRESHOLDS[counts[0] == 1]
    assert found_at.max() < 0.095 and counts[1].sum() == 0  # the empty text is never a prediction


def test_process_precisions_uses_python_max_with_nan():
    nan = float("nan")
    assert process_precisions([1, nan, 0.5, nan, 0.25]) == [1, 0.5, 0.5, 0.25, 0.25]
    # nothing predicted at any threshold: every point (even the anchor) stays nan, so AUPR is 0
    curve = curve_from_counts(np.array([[0] * 101, [0] * 101, [1] * 101]))
    assert all(np.isnan(process_precisions(curve.precisions)))
    assert aupr(curve) == 0.0


def _naive_counts(golds, nbest):
    """Reference: re-filter and re-match every question at every threshold, as the official script does."""
    totals = np.zeros((3, len(THRESHOLDS)), dtype=int)
    for j, threshold in enumerate(THRESHOLDS):
        for gold in golds:
            kept = {e["text"]: e["probability"] for e in nbest[gold.question_id] if e["text"]}
            score = score_question(gold.gold, [t for t, p in kept.items() if p > threshold])
            totals[:, j] += (score.tp, score.fp, score.fn)
    return totals


def test_vectorized_counts_equal_naive_rematching_on_a_random_corpus():
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(12)]
    rows = []
    for i in range(20):
        gold = [" ".join(rng.sample(vocab, 4)) for _ in range(rng.choice([0, 0, 1, 2, 3]))]
        preds = [(" ".join(rng.sample(vocab, rng.randint(2, 6))), round(rng.random(), 3)) for _ in range(4)]
        rows.append((f"c{i % 6}", gold, preds))
    golds, nbest = _corpus(rows)
    vectorized = sum(question_counts(g, nbest[g.question_id]) for g in golds)
    np.testing.assert_array_equal(vectorized, _naive_counts(golds, nbest))
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    curve = curve_from_counts(vectorized)
    assert aupr(curve) == pytest.approx(sklearn_metrics.auc(curve.recalls, process_precisions(curve.precisions)))


def test_bootstrap_over_two_contracts_spans_worst_to_best():
    # contract "good" alone scores AUPR 1, contract "bad" alone 0: resampling {good, bad} with replacement draws
    # (bad, bad) a quarter of the time and (good, good) a quarter, so the 95 % interval is exactly (0, 1)
    rows = [("good", ["x y z"], [("x y z", 0.9)]), ("bad", ["p q r"], [("s t u", 0.9)])]
    score = score_corpus(*_corpus(rows), ScoringConfig(bootstrap_draws=400, seed=3))
    # above .9 nothing is kept (P nan → processed .5), below it P = R = .5: one trapezoid (0, .5) → (.5, .5)
    assert score.aupr == pytest.approx(0.25)
    assert score.ci["aupr"] == (0.0, 1.0)
    again = score_corpus(*_corpus(rows), ScoringConfig(bootstrap_draws=400, seed=3))
    assert again.ci == score.ci
    assert set(score.ci) == {"aupr", "prec_at_80_recall", "prec_at_90_recall", "f1", "no_answer_accuracy", "laziness"}


def test_missing_predictions_count_as_unanswered(caplog):
    golds, nbest = _corpus([("a", ["x y z"], [("x y z", 0.9)]), ("a", ["p q"], [])])
    del nbest[golds[1].question_id]
    nbest["stray"] = [{"text": "x", "probability": 1.0}]
    with caplog.at_level(logging.WARNING):
        score = score_corpus(golds, nbest, NO_BOOTSTRAP)
    assert "no prediction" in caplog.text and "ignored" in caplog.text
    assert score.summary.laziness == 0.5
    assert score.to_dict()["no_answer_accuracy"] is None  # nan → null in JSON


def test_score_predictions_from_dspy_examples():
    examples = [
        dspy.Example(question_id="q1", contract_id="c", category="Parties", gold_spans=["Acme Corp"]),
        dspy.Example(question_id="q2", contract_id="c", category="Non-Compete", gold_spans=[]),
    ]
    predictions = [
        dspy.Prediction(spans=[PredictedSpan("between Acme Corp and Beta", confidence=0.8)]),
        dspy.Prediction(spans=[]),
    ]
    score = score_predictions(examples, predictions, NO_BOOTSTRAP)
    assert score.aupr == pytest.approx(1.0) and score.prec_at_90_recall == 1.0
    assert score.summary.f1 == 1.0 and score.summary.no_answer_accuracy == 1.0
    with pytest.raises(ValueError, match="one prediction each"):
        score_predictions(examples, predictions[:1])


@pytest.mark.real_data
def test_real_cuad_gold_scored_against_itself(real_cuad_path):
    from clauseloop.data import load_cuad

    dataset = load_cuad(real_cuad_path)
    golds = [GoldQuestion.from_question(q) for q in dataset.questions]
    nbest = {g.question_id: [{"text": t, "probability": 1.0} for t in g.gold] for g in golds}
    score = score_corpus(golds, nbest, ScoringConfig(bootstrap_draws=20))
    assert (score.n_questions, score.n_contracts) == (18860, 460)
    # two gold answers are a lone "." — no words, so nothing (not even "." itself) can match them: each is a miss
    # plus a false positive. Every other answer matches itself at every threshold, so all 101 points sit at
    # P = R = (n - 2) / n and the area is the one trapezoid from the (0, 1) anchor.
    n_answers = sum(len(g.gold) for g in golds)
    r = (n_answers - 2) / n_answers
    assert score.aupr == pytest.approx(r * (1 + r) / 2, rel=1e-12)
    assert score.prec_at_80_recall == pytest.approx(r) and score.prec_at_90_recall == pytest.approx(r)
    assert score.summary.no_answer_accuracy == 1.0 and score.summary.laziness == 0.0
    assert score.ci["aupr"][0] <= score.aupr <= score.ci["aupr"][1]
