"""A passage classifier: MiniLM with all six layers fine-tuned to say which categories a passage is about.

The linear probes of :mod:`clauseloop.retrieval.fitting` read a frozen embedding of the passage alone. The
classifier reads the passage *with the heading of its section* (:mod:`clauseloop.retrieval.sections`) and trains
every transformer layer with one logistic output per category, so it can use how a clause is phrased, not only
which words it has. On 46 held-out train contracts (fitted on the other 322) it is the strongest single ranking
(0.863 / 0.927 @5 / @10 alone, vs 0.848 / 0.913 for the term weights), and with the term weights it lifts the fused
ranking from 0.861 / 0.928 to 0.872 / 0.937 (`bench/results/retrieval-classifier.md`).

It is stored as a tuned embedder (:mod:`clauseloop.models.tuned`: the trained layers, float16) in the
``classifier/`` directory of a learned-queries fit, and its head as each category's ``classifier`` vector. The index
does not embed with it at build time (index builds stay one MiniLM pass); it scores a contract's passages the first
time a query for that contract needs them (:class:`ClassifierVectors`) — one encode of the contract, shared by all
41 categories.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clauseloop.data.records import CuadDataset
from clauseloop.retrieval.chunking import Passage
from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.learned import CLASSIFIER_DIR, LearnedQueries
from clauseloop.retrieval.sections import passage_headings
from clauseloop.retrieval.tuning import TuneConfig, TunedLayers, tune_for_learned

logger = logging.getLogger(__name__)

# What the held-out comparison measured: every layer trained, no anchor (the classifier's embedding is not used
# for free-text search, so it may move as far as classification needs), one pass over ~16,000 passages
# (~19 min on 2 CPU cores for 322 contracts).
CLASSIFIER_TUNE = TuneConfig(layers=6, anchor=0.0, lr=5e-5)


def classifier_text(text: str, heading: str) -> str:
    """What the classifier reads for a passage: its section heading on a line of its own, then the passage."""
    return f"{heading}\n{text}" if heading else text


def classifier_texts(passages: Sequence[Passage]) -> list[str]:
    """:func:`classifier_text` of each passage (each contract's passages in reading order)."""
    return [classifier_text(p.text, heading) for p, heading in zip(passages, passage_headings(passages))]


def fit_classifier(dataset: CuadDataset, learned: LearnedQueries, config: TuneConfig = CLASSIFIER_TUNE, *,
                   base: str = "minilm-l6", progress: bool = False) -> tuple[TunedLayers, LearnedQueries]:
    """Train the classifier on ``dataset``'s gold clauses for ``learned``'s categories (its probes start the head
    when they are over ``base``).

    Returns the trained layers (save them with :func:`save_classifier`) and a copy of ``learned`` whose categories
    carry the classifier's head.
    """
    tuned = tune_for_learned(dataset, learned, config, base=base, read=classifier_texts, name=CLASSIFIER_DIR,
                             progress=progress)
    tuned.manifest["input"] = "section heading + passage"
    models = {key: replace(model, classifier=tuned.probes[model.category]) for key, model in learned.models.items()}
    return tuned, LearnedQueries(models, {**learned.manifest, "classifier": dict(tuned.manifest)})


def save_classifier(directory: str | Path, tuned: TunedLayers) -> Path:
    """Write the classifier's layers into ``directory``/classifier (before the learned queries' manifest)."""
    from clauseloop.models.tuned import save_tuned

    return save_tuned(Path(directory) / CLASSIFIER_DIR, tuned.layers, tuned.manifest)


class ClassifierVectors:
    """The classifier's passage embeddings of an index, computed per contract on first use and kept.

    A category's classifier score is this embedding's dot product with its head vector, so one encode of a
    contract serves every category; the lock keeps the QA program's parallel queries from encoding it twice.
    """

    def __init__(self, passages: Sequence[Passage], ranges: dict[str, tuple[int, int]], *,
                 embedder_factory: Callable[[str], Embedder] = Embedder):
        self.passages, self.ranges, self._embedder_factory = passages, ranges, embedder_factory
        self._embedders: dict[str, Embedder] = {}
        self._vectors: dict[tuple[str, str], np.ndarray] = {}
        self._lock = threading.Lock()

    def vectors(self, classifier_dir: str, start: int, end: int) -> np.ndarray:
        """``(end - start, dim)`` embeddings of rows ``start:end`` (whole contracts) by the classifier in
        ``classifier_dir``."""
        contracts = sorted((s, cid) for cid, (s, e) in self.ranges.items() if s < end and e > start)
        with self._lock:
            if classifier_dir not in self._embedders:
                self._embedders[classifier_dir] = self._embedder_factory(classifier_dir)
            embedder = self._embedders[classifier_dir]
            for first, cid in contracts:
                if (classifier_dir, cid) not in self._vectors:
                    rows = self.passages[first:self.ranges[cid][1]]
                    self._vectors[classifier_dir, cid] = embedder.encode(classifier_texts(rows))
            full = np.concatenate([self._vectors[classifier_dir, cid] for _, cid in contracts])
        offset = start - contracts[0][0]
        return full[offset:offset + end - start]
