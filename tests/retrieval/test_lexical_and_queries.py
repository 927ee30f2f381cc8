import numpy as np

from clauseloop.data import CATEGORY_NAMES
from clauseloop.retrieval.expansions import CATEGORY_HINTS
from clauseloop.retrieval.lexical import LexicalConfig, LexicalIndex, stem, tokenize
from clauseloop.retrieval.queries import CategoryQueryBuilder, Query, as_query, description_query


def test_tokenizer_folds_inflections_and_keeps_negations():
    assert tokenize("The Licensee shall NOT assign; assignments, assigned") == [
        "licensee", "shall", "not", "assign", "assign", "assign",
    ]
    assert stem("parties") == "party" and stem("business") == "business" and stem("is") == "is"
    assert tokenize("change of control", bigrams=True) == ["change", "control", "change_control"]


def test_bm25_ranks_the_matching_clause_first():
    texts = [
        "Payment terms are net thirty days.",
        "This Agreement is governed by the laws of Delaware.",
        "Governing law: the laws of the State of New York govern this Agreement and its construction.",
    ]
    for bigrams in (False, True):
        scores = LexicalIndex(texts, LexicalConfig(bigrams=bigrams)).scores("governing law laws state")
        assert scores.argmax() == 2 and scores[0] == 0.0
    assert np.all(LexicalIndex(texts).scores("zebra") == 0)
    assert LexicalIndex([]).scores("anything").shape == (0,)


def test_every_category_has_a_hint_and_builds_a_query():
    assert {name.lower() for name in CATEGORY_NAMES} == set(CATEGORY_HINTS)
    for name in CATEGORY_NAMES:
        query = CategoryQueryBuilder()(name)
        assert name in query.text and query.terms and query.category == name
    assert CategoryQueryBuilder()("Parties").lead_weight > 0
    assert CategoryQueryBuilder()("Audit Rights").lead_weight == 0


def test_query_builders_take_extra_terms_and_descriptions():
    query = CategoryQueryBuilder()("Governing Law", ("choice of law",))
    assert query.text.endswith("choice of law") and query.lexical.endswith("choice of law")
    naive = description_query("Governing Law")
    assert "Which state/country's law governs" in naive.text and naive.lead_weight == 0
    learned = CategoryQueryBuilder(extra={"governing law": "forum venue"})("governing law")
    assert "forum venue" in learned.text
    free = as_query("right of first refusal")
    assert free == Query(text="right of first refusal", terms="right of first refusal")
    assert CategoryQueryBuilder()("Some New Category").text == "Some New Category"
