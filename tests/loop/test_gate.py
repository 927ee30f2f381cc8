"""The promotion gate on hand-made predictions: equal models pass, a worse one is refused with its evidence."""

from __future__ import annotations

from clauseloop.loop.gate import GateConfig, decide, paired_bootstrap
from clauseloop.program.types import GoldQuestion

CLAUSE = "This Agreement shall be governed by the laws of the State of New York."


def questions(contracts: int = 12) -> list[GoldQuestion]:
    """Per contract: one answerable Governing Law question and one unanswerable Parties question."""
    golds = []
    for index in range(contracts):
        golds.append(GoldQuestion(f"c{index}__Governing Law", f"c{index}", "Governing Law", (CLAUSE,)))
        golds.append(GoldQuestion(f"c{index}__Parties", f"c{index}", "Parties", ()))
    return golds


def predictions(golds, correct: int) -> dict:
    """The gold clause for the first ``correct`` answerable questions, a wrong quote elsewhere; NONE when unanswerable."""
    nbest, answered = {}, 0
    for gold in golds:
        if gold.gold:
            text = CLAUSE if answered < correct else "The Supplier shall deliver the goods within ten days."
            answered += 1
            nbest[gold.question_id] = [{"text": text, "probability": 0.9}]
        else:
            nbest[gold.question_id] = [{"text": "", "probability": 1.0}]
    return nbest


def test_an_equal_candidate_is_promoted():
    golds = questions()
    decision = decide(golds, predictions(golds, 10), predictions(golds, 10), dropped_rates=(0.1, 0.1),
                      retention_drop=0.5)
    assert decision.promote and decision.reasons == []
    assert decision.evidence["metrics"]["aupr"]["ci"] == [0.0, 0.0]


def test_a_candidate_worse_beyond_the_paired_interval_is_refused_with_the_numbers():
    golds = questions()
    decision = decide(golds, predictions(golds, 2), predictions(golds, 11), GateConfig(group_min_questions=100))
    assert not decision.promote
    assert any(reason.startswith("aupr") for reason in decision.reasons)
    assert any(reason.startswith("f1") for reason in decision.reasons)
    f1 = decision.evidence["metrics"]["f1"]
    assert f1["candidate"] < f1["current"] and f1["ci"][1] < 0


def test_a_small_difference_inside_the_noise_is_not_refused():
    golds = questions()
    metrics = paired_bootstrap(golds, predictions(golds, 10), predictions(golds, 11), GateConfig())
    assert metrics["f1"]["difference"] < 0 and metrics["f1"]["ci"][1] >= 0


def test_forgetting_more_dropped_quotes_or_a_regressing_group_each_refuse():
    golds = questions()
    same = predictions(golds, 10)
    assert "retention" in decide(golds, same, same, retention_drop=5.0).reasons[0]
    assert "dropped-span rate" in decide(golds, same, same, dropped_rates=(0.4, 0.1)).reasons[0]
    worse = decide(golds, predictions(golds, 6), same, GateConfig(metrics=(), group_min_questions=5))
    assert worse.reasons == ["Governing Law: F1 0.833 → 0.500 (drop 0.333 > 0.15)"]
    assert worse.evidence["groups"]["Parties"]["judged"]


def test_with_few_contracts_the_interval_is_over_questions_and_has_width():
    """One contract resampled gives a zero-width interval that would refuse any drop; questions do not."""
    golds = [GoldQuestion(f"c0__q{index}", "c0", "Governing Law", (CLAUSE,)) for index in range(12)]
    candidate, current = predictions(golds, 10), predictions(golds, 11)
    decision = decide(golds, candidate, current)
    assert decision.evidence["resampled"] == "questions"
    low, high = decision.evidence["metrics"]["f1"]["ci"]
    assert low < high and high >= 0 and decision.promote
    by_contract = paired_bootstrap(golds, candidate, current, GateConfig(min_contracts=1))
    assert by_contract["f1"]["ci"][0] == by_contract["f1"]["ci"][1] < 0
