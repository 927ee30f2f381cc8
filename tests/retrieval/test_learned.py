"""Learned category queries: fitting, persistence, the shipped artifact, and their effect on ranking."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from clauseloop.retrieval.chunking import ChunkConfig
from clauseloop.retrieval.evaluate import covered_share
from clauseloop.retrieval.fitting import FitConfig, fit_learned_queries, label_passages
from clauseloop.retrieval.index import IndexConfig, PassageIndex
from clauseloop.retrieval.learned import (
    TERM_FEATURES,
    CategoryModel,
    LearnedQueries,
    LearnedQueriesError,
    default_learned,
    load_learned,
    save_learned,
)
from clauseloop.retrieval.lexical import LexicalIndex
from clauseloop.retrieval.queries import CategoryQueryBuilder, LearnedQueryBuilder, Query

LEXICAL_ONLY = FitConfig(dense=False, min_df=2, max_iter=30)


def best_gold_rank(scores: np.ndarray, gold_rows: set[int]) -> int:
    """1-based rank of the best-ranked gold passage under ``scores`` (ties count against the gold passage)."""
    best = max(scores[r] for r in gold_rows)
    return int(sum(scores >= best))


def test_fitted_terms_rank_held_out_clauses_higher_than_the_bare_category_name(demo_dataset):
    """Leave one demo contract out, fit on the rest: across the held-out contracts' answered categories, the
    learned term weights put a gold passage higher than BM25 of the category name does (mean reciprocal rank)."""
    learned_rr, unlearned_rr = [], []
    ids = sorted(demo_dataset.contracts)
    for held_out in ids[:4]:
        learned = fit_learned_queries(demo_dataset.subset([c for c in ids if c != held_out]), LEXICAL_ONLY)
        test = label_passages(demo_dataset.subset([held_out]))
        terms = test.passage_term_sets()
        bm25 = LexicalIndex([p.text for p in test.passages])
        for category, by_contract in test.positives.items():
            gold, model = by_contract.get(held_out), learned.get(category)
            if not gold or model is None:
                continue
            learned_rr.append(1 / best_gold_rank(model.lexical_scores(terms), gold))
            unlearned_rr.append(1 / best_gold_rank(bm25.scores(category), gold))
    assert len(learned_rr) >= 20
    print(f"MRR learned {np.mean(learned_rr):.3f} vs category name {np.mean(unlearned_rr):.3f}")
    assert np.mean(learned_rr) > np.mean(unlearned_rr) + 0.05, (np.mean(learned_rr), np.mean(unlearned_rr))


def test_fit_save_load_round_trip(demo_dataset, bow_embedder, tmp_path):
    config = FitConfig(min_df=2, max_iter=20, sample_contracts=3, extra_positives=5)
    learned = fit_learned_queries(demo_dataset, config, embedder=bow_embedder)
    assert "governing law" in learned and learned.get("Governing Law").dense.shape == (bow_embedder.dim,)
    assert {"law", "laws", "govern"} & set(learned.get("governing law").top_terms(10))
    manifest = learned.manifest
    assert manifest["embedder"] == "bag-of-words-test" and manifest["fitted_on"]["contracts"] == 8
    assert len(manifest["fitted_on"]["fingerprint"]) == 32 and manifest["chunking"]["max_chars"] == 600

    loaded = load_learned(save_learned(learned, tmp_path / "fit"))
    assert sorted(loaded.models) == sorted(learned.models)
    for name, model in learned.models.items():
        again = loaded.models[name]
        assert again.category == model.category and again.embedder == "bag-of-words-test"
        assert set(again.terms) == set(model.terms)
        scale = 1 + max(abs(w) for w in model.terms.values())
        assert max(abs(again.terms[t] - w) for t, w in model.terms.items()) < 1e-2 * scale  # stored as float16
        np.testing.assert_array_equal(again.dense, model.dense)
    assert loaded.manifest["fitted_on"] == manifest["fitted_on"]
    # Section headings are features of their own: the demo contracts' headings ("INSURANCE", "LICENSE") get weights.
    assert manifest["term_features"] == TERM_FEATURES
    assert any(term.startswith("h:") for model in learned.models.values() for term in model.terms)


def test_a_fit_made_without_section_headings_still_loads_with_a_warning(demo_dataset, tmp_path, caplog):
    directory = save_learned(fit_learned_queries(demo_dataset, LEXICAL_ONLY), tmp_path / "old")
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["term_features"]  # as the fits before section headings were written
    (directory / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="clauseloop.retrieval.learned"):
        loaded = load_learned(directory)
    assert len(loaded) > 0 and "no section headings" in caplog.text and "re-fit it" in caplog.text


def test_probes_fit_on_every_passage_from_precomputed_embeddings(demo_dataset, bow_embedder):
    """``sample_contracts=None`` + ``embeddings=``: the probe sees every training passage, no embedder is run, and
    the fit equals the one that embeds every passage itself."""
    from clauseloop.retrieval.fitting import training_passages

    config = FitConfig(min_df=2, max_iter=20, sample_contracts=None)
    texts = [p.text for p in training_passages(demo_dataset, config.chunking)]
    vectors = bow_embedder.encode(texts)
    before = bow_embedder.texts_encoded
    given = fit_learned_queries(demo_dataset, config, embedder=bow_embedder, embeddings=vectors)
    assert bow_embedder.texts_encoded == before  # nothing re-embedded
    assert given.manifest["probe_passages"] == len(texts) and given.manifest["probe_embeddings"] == "precomputed"
    assert given.manifest["fit"]["sample_contracts"] is None and given.embedder == "bag-of-words-test"
    computed = fit_learned_queries(demo_dataset, config, embedder=bow_embedder)
    assert bow_embedder.texts_encoded == before + len(texts)  # every passage, not a sample
    assert computed.manifest["probe_embeddings"] == "computed"
    for name, model in computed.models.items():
        assert model.dense is not None
        np.testing.assert_allclose(given.models[name].dense, model.dense, rtol=1e-4, atol=1e-5)
    sampled = fit_learned_queries(demo_dataset, FitConfig(min_df=2, max_iter=20, sample_contracts=2,
                                                          extra_positives=1), embedder=bow_embedder)
    assert sampled.manifest["probe_passages"] < len(texts)
    with pytest.raises(ValueError, match="one row per training passage"):
        fit_learned_queries(demo_dataset, config, embedder=bow_embedder, embeddings=vectors[:-1])


def test_a_corrupted_or_foreign_directory_gives_a_clear_error(tmp_path):
    model = CategoryModel("Governing Law", {"law": 1.5, "govern": 1.0}, np.ones(4, np.float32))
    directory = save_learned(LearnedQueries({"governing law": model}, {"embedder": "x"}), tmp_path / "fit")
    assert load_learned(directory).get("GOVERNING LAW").terms == {"law": 1.5, "govern": 1.0}

    weights = directory / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-3])
    with pytest.raises(LearnedQueriesError, match="truncated or changed.*clauseloop index fit-queries"):
        load_learned(directory)
    weights.unlink()
    with pytest.raises(LearnedQueriesError, match="missing"):
        load_learned(directory)
    (directory / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(LearnedQueriesError, match="not a clauseloop-learned-queries"):
        load_learned(directory)
    with pytest.raises(LearnedQueriesError, match="not a learned-queries directory"):
        load_learned(tmp_path / "nowhere")
    with pytest.raises(LearnedQueriesError):
        LearnedQueryBuilder(tmp_path / "nowhere")


def test_fitting_needs_gold_answers(demo_dataset):
    unanswered = [q for q in demo_dataset.questions if not q.answers]
    empty = type(demo_dataset)(contracts=demo_dataset.contracts, questions=unanswered)
    with pytest.raises(ValueError, match="no gold answers"):
        fit_learned_queries(empty, LEXICAL_ONLY)


def test_the_shipped_fit_loads_and_covers_every_category():
    from clauseloop.data.categories import CATEGORY_NAMES

    learned = default_learned()
    assert learned is not None, "the package should ship clauseloop/retrieval/learned/"
    assert all(name in learned for name in CATEGORY_NAMES)
    assert learned.embedder == "minilm-l6" and learned.manifest["fitted_on"]["contracts"] > 300
    model = learned.get("Governing Law")
    assert model.dense.shape == (384,) and {"law", "govern"} & set(model.top_terms(5))
    assert learned.manifest["probe_passages"] == learned.manifest["fitted_on"]["passages"]  # every train passage
    assert learned.manifest["gate"]["folds"] == 4 and len(model.gate) > 100  # cross-fitted presence scores
    assert learned.manifest["term_features"] == TERM_FEATURES
    # The passage classifier ships with it, trained on the same contracts.
    assert model.classifier.shape == (384,) and learned.manifest["classifier"]["tune"]["layers"] == 6
    assert learned.manifest["classifier"]["fitted_on"]["fingerprint"] == learned.manifest["fitted_on"]["fingerprint"]
    query = LearnedQueryBuilder()("Governing Law")
    assert query.learned is model and query.text == CategoryQueryBuilder()("Governing Law").text
    assert LearnedQueryBuilder()("some free text").learned is None


def test_the_index_fuses_a_learned_model_on_the_side_the_mode_searches(small_contracts, bow_embedder):
    config = IndexConfig(embedder=bow_embedder.name, chunking=ChunkConfig(max_chars=120, overlap_chars=40))
    index = PassageIndex.build(small_contracts, config, embedder=bow_embedder)
    royalty = CategoryModel("Revenue/Profit Sharing", {"royalty": 4.0, "net": 2.0, "sale": 1.0})
    plain = Query(text="agreement", terms="agreement")
    learned = Query(text="agreement", terms="agreement", learned=royalty)
    assert "royalty" not in index.search(plain, 1, contract_id="C0", mode="lexical")[0].passage.text
    assert "royalty" in index.search(learned, 1, contract_id="C0", mode="lexical")[0].passage.text
    # The model has no probe: dense search is unchanged by it.
    dense = [h.passage for h in index.search(plain, 3, contract_id="C0", mode="dense")]
    assert [h.passage for h in index.search(learned, 3, contract_id="C0", mode="dense")] == dense
    # A probe fitted over another embedder's vectors is ignored rather than trusted.
    foreign = CategoryModel("x", {}, np.ones(bow_embedder.dim, np.float32), embedder="some-other-model")
    assert [h.passage for h in index.search(Query("agreement", learned=foreign), 3, contract_id="C0",
                                            mode="dense")] == dense


@pytest.mark.real_model
def test_the_qa_programs_call_uses_the_shipped_fit(demo_dataset, minilm):
    """``category_query`` + ``retrieve_in_contract`` (what the QA program calls) carry and apply the learned model."""
    from clauseloop.retrieval.retriever import ContractIndexCache, category_query, retrieve_in_contract

    query = category_query("Governing Law")
    assert query.learned is not None and query.learned.embedder == minilm.name
    cache = ContractIndexCache(embedder=minilm)
    for question in [q for q in demo_dataset.questions if q.category == "Governing Law" and q.answers]:
        hits = retrieve_in_contract(demo_dataset.contracts[question.contract_id], query, 1, cache=cache)
        assert max(covered_share(span, [hits[0].passage]) for span in question.answers) >= 0.5
