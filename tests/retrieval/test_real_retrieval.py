"""The real MiniLM + faiss + BM25 index over the packaged demo contracts."""

from dataclasses import replace

import dspy
import pytest

from clauseloop.retrieval.evaluate import covered_share, evaluate_index
from clauseloop.retrieval.queries import CategoryQueryBuilder
from clauseloop.retrieval.retriever import ContractIndexCache, ContractRetriever, retrieve_in_contract
from clauseloop.retrieval.store import build_index_dir, load_index, save_index

pytestmark = pytest.mark.real_model


@pytest.mark.parametrize("category", ["Governing Law", "Anti-Assignment", "Agreement Date"])
def test_category_query_finds_the_gold_clause_in_the_top_3(demo_dataset, demo_index, category):
    questions = [q for q in demo_dataset.questions if q.category == category and q.answers]
    assert questions, f"the demo data has no {category} answers"
    query = CategoryQueryBuilder()(category)
    for question in questions:
        hits = demo_index.search(query, 3, contract_id=question.contract_id)
        assert all(hit.contract_id == question.contract_id for hit in hits)
        best = max(covered_share(span, [hit.passage for hit in hits]) for span in question.answers)
        assert best >= 0.5, f"{category} clause of {question.contract_id} not in the top 3"


def test_hybrid_recall_on_demo_contracts_beats_the_naive_dense_query(demo_dataset, demo_index):
    from clauseloop.retrieval.queries import description_query

    hybrid = evaluate_index(demo_index, demo_dataset.questions, (5,))
    naive = evaluate_index(demo_index, demo_dataset.questions, (5,), builder=description_query, mode="dense")
    assert hybrid.recall(5) >= 0.8 and hybrid.recall(5) > naive.recall(5)


def test_dspy_retriever_returns_passages_with_offsets(demo_dataset, demo_index, tmp_path, minilm):
    contract = next(iter(demo_dataset.contracts.values()))
    retriever = ContractRetriever(demo_index, k=4)
    assert isinstance(retriever, dspy.Retrieve)
    prediction = retriever("governing law", contract_id=contract.id)
    assert isinstance(prediction, dspy.Prediction) and len(prediction.passages) == 4
    for text, hit in zip(prediction.passages, prediction.hits):
        assert hit["contract_id"] == contract.id and contract.text[hit["start"] : hit["end"]] == text
    assert prediction.scores == sorted(prediction.scores, reverse=True)
    assert len(retriever("termination", k=2).passages) == 2

    directory = save_index(demo_index, tmp_path / "demo-index")
    from_disk = ContractRetriever(str(directory), k=4)
    assert from_disk("governing law", contract_id=contract.id).hits == prediction.hits


def test_any_contract_can_be_searched_on_the_fly_and_is_cached(demo_dataset, minilm):
    contract = next(iter(demo_dataset.contracts.values()))
    contract = replace(contract, id="not-in-any-index")
    cache = ContractIndexCache(embedder=minilm, max_contracts=1)
    hits = retrieve_in_contract(contract, CategoryQueryBuilder()("Governing Law"), k=3, cache=cache)
    assert len(hits) == 3 and "law" in " ".join(h.passage.text.lower() for h in hits)
    encoded = minilm.texts_encoded
    again = retrieve_in_contract(contract, CategoryQueryBuilder()("Governing Law"), k=3, cache=cache)
    assert again == hits and minilm.texts_encoded == encoded  # served from the cache: nothing re-embedded
    retrieve_in_contract(replace(contract, text=contract.text + " Amended."), "law", k=1, cache=cache)
    assert len(cache) == 1 and minilm.texts_encoded > encoded


def test_real_incremental_rebuild_embeds_only_the_changed_contract(demo_dataset, minilm, tmp_path):
    contracts = list(demo_dataset.contracts.values())[:3]
    directory = tmp_path / "index"
    build_index_dir(contracts, directory, embedder=minilm)
    before = minilm.texts_encoded
    contracts[1] = replace(contracts[1], text=contracts[1].text + "\n\nThe parties agree to an audit each year.")
    index = build_index_dir(contracts, directory, embedder=minilm)
    start, end = index.ranges[contracts[1].id]
    assert minilm.texts_encoded - before == end - start
    assert load_index(directory).search("audit each year", 1, contract_id=contracts[1].id)[0].passage.text.endswith(
        "audit each year."
    )
