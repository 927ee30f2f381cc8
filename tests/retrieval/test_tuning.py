"""Embedder tuning: training rows, the real MiniLM learning on demo clauses, the stored layers, their reload."""

from __future__ import annotations

import numpy as np
import pytest

from clauseloop.models.tuned import save_tuned
from clauseloop.retrieval.fitting import label_passages
from clauseloop.retrieval.tuning import TuneConfig, length_batches, training_rows, tune_embedder


@pytest.fixture(scope="module")
def labelled(demo_dataset):
    return label_passages(demo_dataset)


@pytest.fixture(scope="module")
def categories(labelled):
    return sorted(labelled.positives)


@pytest.fixture(scope="module")
def tuned(labelled, categories):
    """Two layers tuned for one pass over the demo passages (8 steps of 16) with a randomly started head."""
    return tune_embedder(labelled, categories, TuneConfig(batch_size=16, head_lr=3e-3))


def test_training_rows_keep_every_positive_and_label_it(labelled, categories):
    rows, labels = training_rows(labelled, categories, TuneConfig(negatives_per_positive=0.1))
    positive_rows = {r for by_contract in labelled.positives.values() for hits in by_contract.values() for r in hits}
    assert positive_rows <= set(rows) and len(rows) == len(set(rows))
    assert len(rows) - len(positive_rows) == round(0.1 * len(positive_rows))
    category = categories[0]
    column = categories.index(category)
    hits = set().union(*labelled.positives[category].values())
    assert {rows[n] for n in np.flatnonzero(labels[:, column])} == hits
    assert training_rows(labelled, categories, TuneConfig(negatives_per_positive=0.1))[0] == rows  # seeded


def test_length_batches_cover_every_row_once_in_similar_lengths():
    lengths = [n % 97 for n in range(500)]
    batches = length_batches(lengths, 16, seed=0)
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    assert np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches]) < 20


def test_config_refuses_impossible_settings():
    with pytest.raises(ValueError, match="layers"):
        TuneConfig(layers=0)
    with pytest.raises(ValueError, match="epochs"):
        TuneConfig(epochs=0)


@pytest.mark.real_model
def test_tuning_trains_only_the_top_layers_and_learns_the_categories(tuned, labelled, categories, minilm):
    assert sorted({key.split(".")[2] for key in tuned.layers}) == ["4", "5"]
    base = minilm.model[0].auto_model.state_dict()
    assert any(not np.allclose(value, base[key].numpy()) for key, value in tuned.layers.items())
    assert set(tuned.probes) == set(categories) and tuned.manifest["steps"] == 8
    # The shared, cached MiniLM was not touched by training a private copy.
    assert np.allclose(base["encoder.layer.5.output.dense.weight"].numpy(),
                       minilm.model[0].auto_model.encoder.layer[5].output.dense.weight.detach().numpy())


def _mean_auc(embeddings: np.ndarray, probes: dict, labelled, categories) -> float:
    aucs = []
    for category in categories:
        positive = np.zeros(len(labelled.passages), dtype=bool)
        positive[list(set().union(*labelled.positives[category].values()))] = True
        if positive.all():
            continue
        scores = embeddings @ probes[category]
        above = scores[positive][:, None] > scores[~positive][None, :]
        aucs.append(above.mean())
    return float(np.mean(aucs))


@pytest.mark.real_model
def test_tuned_layers_reload_as_an_embedder_that_ranks_the_training_clauses(tuned, tmp_path, labelled, categories,
                                                                            monkeypatch):
    from clauseloop.models.store import prepare
    from clauseloop.retrieval.embedding import Embedder

    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path / "cache"))
    directory = save_tuned(tmp_path / "tuned", tuned.layers, {**tuned.manifest, "name": "demo-tuned"})
    prepared = prepare(str(directory))
    assert prepared.created and prepare(str(directory)).created is False  # merged once, then reused
    embeddings = Embedder(str(directory)).encode([p.text for p in labelled.passages])
    # A random head ranks at chance; one pass over the demo clauses already separates them.
    assert _mean_auc(embeddings, tuned.probes, labelled, categories) > 0.75


@pytest.mark.real_model
def test_more_layers_than_the_model_has_is_refused(labelled, categories):
    with pytest.raises(ValueError, match="6 transformer layers"):
        tune_embedder(labelled, categories, TuneConfig(layers=7))
