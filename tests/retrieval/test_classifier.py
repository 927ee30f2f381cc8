"""The passage classifier: what it reads, its per-contract vectors, the real MiniLM learning it, storage, fusion."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from clauseloop.retrieval.chunking import ChunkConfig, chunk_contract
from clauseloop.retrieval.classifier import (
    CLASSIFIER_TUNE,
    ClassifierVectors,
    classifier_texts,
    fit_classifier,
    save_classifier,
)
from clauseloop.retrieval.fitting import FitConfig, fit_learned_queries, label_passages
from clauseloop.retrieval.learned import CLASSIFIER_DIR, LearnedQueriesError, load_learned, save_learned
from clauseloop.retrieval.queries import LearnedQueryBuilder

from .conftest import make_contract

# One pass over every demo training row in steps of 16, the head started at random (no probes): seconds.
TINY = replace(CLASSIFIER_TUNE, batch_size=16, head_lr=3e-3)


def test_the_classifier_reads_the_section_heading_before_the_passage():
    contract = make_contract("c", ["7. INSURANCE", "The Supplier shall maintain liability insurance.",
                                   "Certificates shall name the Buyer as an additional insured."])
    passages = chunk_contract(contract, ChunkConfig(max_chars=70, overlap_chars=0))
    assert [p.text[:5] for p in passages] == ["7. IN", "Certi"]
    assert classifier_texts(passages) == [
        "INSURANCE\n" + passages[0].text,  # a passage that opens a section is in it
        "INSURANCE\nCertificates shall name the Buyer as an additional insured."]
    plain = chunk_contract(make_contract("d", ["no heading in this one"]))
    assert classifier_texts(plain) == ["no heading in this one"]


def test_vectors_are_encoded_once_per_contract_and_sliced_by_row(bow_embedder):
    contracts = [make_contract(f"C{n}", [f"Clause {n} about royalties.", "Another clause on notices."] * 3)
                 for n in range(3)]
    passages = [p for c in contracts for p in chunk_contract(c, ChunkConfig(max_chars=40, overlap_chars=0))]
    ranges = {}
    for row, passage in enumerate(passages):
        ranges[passage.contract_id] = (ranges.get(passage.contract_id, (row,))[0], row + 1)
    made = []
    vectors = ClassifierVectors(passages, ranges, embedder_factory=lambda name: made.append(name) or bow_embedder)
    start, end = ranges["C1"]
    first = vectors.vectors("dir", start, end)
    assert first.shape == (end - start, bow_embedder.dim) and bow_embedder.texts_encoded == end - start
    assert np.array_equal(vectors.vectors("dir", start + 1, end - 1), first[1:-1])
    everything = vectors.vectors("dir", 0, len(passages))  # C0 and C2 are encoded now, C1 is reused
    assert bow_embedder.texts_encoded == len(passages) and made == ["dir"]
    assert np.array_equal(everything[start:end], first)


@pytest.fixture(scope="module")
def classifier_fit(demo_dataset, tmp_path_factory):
    """Term weights and a tiny classifier fitted on the demo contracts, saved and loaded back."""
    terms = fit_learned_queries(demo_dataset, FitConfig(dense=False, gate_folds=0))
    tuned, learned = fit_classifier(demo_dataset, terms, TINY)
    directory = tmp_path_factory.mktemp("classifier-fit")
    save_classifier(directory, tuned)
    save_learned(learned, directory)
    return tuned, load_learned(directory), directory


@pytest.mark.real_model
def test_the_classifier_trains_every_layer_and_round_trips(classifier_fit, tmp_path):
    tuned, learned, directory = classifier_fit
    assert sorted({key.split(".")[2] for key in tuned.layers}) == [str(n) for n in range(6)]
    assert tuned.manifest["tune"]["anchor"] == 0.0 and learned.manifest["classifier"]["input"].startswith("section")
    for model in learned.models.values():
        assert model.classifier.shape == (384,)
        assert model.classifier_embedder == str((directory / CLASSIFIER_DIR).resolve())
    assert np.allclose(learned.get("Governing Law").classifier, tuned.probes["Governing Law"])
    # Saved elsewhere (as tune-embedder does with a loaded fit), the classifier's layers come along.
    elsewhere = load_learned(save_learned(learned, tmp_path / "elsewhere"))
    copied = str((tmp_path / "elsewhere" / CLASSIFIER_DIR).resolve())
    assert elsewhere.get("Governing Law").classifier_embedder == copied
    unsaved = replace(learned, models={k: replace(m, classifier_embedder=None) for k, m in learned.models.items()})
    with pytest.raises(LearnedQueriesError, match="save_classifier"):
        save_learned(unsaved, tmp_path / "unsaved")


@pytest.mark.real_model
def test_the_trained_classifier_separates_the_training_clauses(classifier_fit, demo_dataset):
    from clauseloop.retrieval.embedding import Embedder

    _, learned, directory = classifier_fit
    labelled = label_passages(demo_dataset)
    vectors = Embedder(str(directory / CLASSIFIER_DIR)).encode(classifier_texts(labelled.passages))
    aucs = []
    for category, by_contract in labelled.positives.items():
        positive = np.zeros(len(labelled.passages), dtype=bool)
        positive[list(set().union(*by_contract.values()))] = True
        scores = vectors @ learned.get(category).classifier
        aucs.append((scores[positive][:, None] > scores[~positive][None, :]).mean())
    assert np.mean(aucs) > 0.75  # a random head ranks at 0.5


@pytest.mark.real_model
def test_the_index_ranks_with_the_classifier_in_hybrid_mode_only(classifier_fit, demo_dataset, minilm):
    from clauseloop.retrieval.index import PassageIndex

    _, learned, _ = classifier_fit
    index = PassageIndex.build(demo_dataset.contracts.values(), embedder=minilm)
    contract_id = next(iter(demo_dataset.contracts))
    query = LearnedQueryBuilder(learned)("Governing Law")
    index.search(query, 3, contract_id=contract_id, mode="lexical")
    assert index._classifier_vectors is None  # a lexical search reads no embeddings
    assert index.search(query, 3, contract_id=contract_id, mode="hybrid")
    assert (query.learned.classifier_embedder, contract_id) in index.classifier_vectors._vectors


@pytest.mark.real_model
def test_a_fit_whose_classifier_is_missing_is_refused(classifier_fit, tmp_path):
    _, _, directory = classifier_fit
    copy = shutil.copytree(directory, tmp_path / "fit")
    shutil.rmtree(copy / CLASSIFIER_DIR)
    with pytest.raises(LearnedQueriesError, match="passage classifier.*restore"):
        load_learned(copy)
