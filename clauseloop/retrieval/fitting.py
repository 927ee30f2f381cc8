"""Fit learned category queries (:mod:`clauseloop.retrieval.learned`) from a training :class:`CuadDataset`.

For each category, the passages of the contracts that have a gold answer for it are labelled: positive when the
passage covers ≥ 50 % of a gold span (what span recall counts), negative otherwise. Two L2-regularized logistic
regressions learn to tell them apart:

* **lexical**: over binary word / word-pair features (the BM25 tokenizer's stems) of the passage and of the
  heading of its section (:mod:`clauseloop.retrieval.sections`), on every training passage.
  The ``max_terms`` terms with the largest weights are kept and re-fitted alone: they are the model and its
  explanation.
* **dense**: a linear probe over MiniLM passage embeddings, by default of every training passage (~40 min of
  embedding for CUAD's ~65,000 train passages on 2 CPU cores). ``sample_contracts=N`` fits on a fixed sample
  instead: every passage of N contracts (within-contract negatives) plus up to ``extra_positives`` positive
  passages per category from the other contracts. ``embeddings=`` (vectors computed elsewhere, e.g. on a GPU, for
  :func:`training_passages` in order) skips the embedding step.

The lexical models also yield the presence gate's cross-fitted scores (``gate_folds``; :mod:`.gate`).

Fit on the train split only and evaluate on dev; nothing here reads text beyond the dataset it is given.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from clauseloop.data.records import CuadDataset
from clauseloop.retrieval.chunking import ChunkConfig, Passage, chunk_contract
from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.evaluate import MIN_COVERAGE, covered_share
from clauseloop.retrieval.gate import cross_fit_presence
from clauseloop.retrieval.learned import (
    TERM_FEATURES,
    CategoryModel,
    LearnedQueries,
    data_fingerprint,
    passage_term_sets,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """How learned queries are fitted (defaults: what the shipped artifact was fitted with)."""

    min_df: int = 5  # a term must occur in this many training passages (rarer ones are names and numbers)
    l2: float = 1.0  # ridge penalty of both regressions, per training passage
    max_iter: int = 60  # L-BFGS iterations per category
    max_terms: int = 1000  # terms kept per category (the artifact's size; 400 cost 1 point of recall@5)
    dense: bool = True  # also fit the embedding probe (needs the embedder)
    # None: the probe sees every training passage (the shipped fit; embedding CUAD's 65,000 train passages takes
    # ~40 min on 2 CPU cores). N: every passage of N sampled contracts plus `extra_positives` per category.
    sample_contracts: int | None = None
    extra_positives: int = 30
    # The presence gate (clauseloop.retrieval.gate): presence scores cross-fitted over this many folds of the
    # training contracts (0: no gate).
    gate_folds: int = 4
    seed: int = 0
    chunking: ChunkConfig = field(default_factory=ChunkConfig)

    def __post_init__(self) -> None:
        if self.gate_folds < 0 or self.gate_folds == 1:
            raise ValueError(f"gate folds must be 0 (no gate) or at least 2 (cross-fitting holds one fold out), "
                             f"got {self.gate_folds}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Labelled:
    """Training passages in contract order, each contract's row range, and positive rows per category."""

    passages: list[Passage]
    ranges: dict[str, tuple[int, int]]
    positives: dict[str, dict[str, set[int]]]  # category -> contract id -> rows
    term_sets: list[set[str]] | None = field(default=None, repr=False)  # per passage; computed once, shared

    def passage_term_sets(self) -> list[set[str]]:
        """Each passage's :func:`passage_term_sets` features (stemming all of CUAD's train split takes a while)."""
        if self.term_sets is None:
            self.term_sets = passage_term_sets(self.passages)
        return self.term_sets

    def contract_term_sets(self, contract_id: str) -> list[set[str]]:
        return self.passage_term_sets()[slice(*self.ranges[contract_id])]

    def subset(self, contract_ids: set[str]) -> "Labelled":
        """The same labels restricted to some contracts (rows renumbered; term sets shared)."""
        terms = self.passage_term_sets()
        passages, ranges, subset_terms, shift = [], {}, [], {}
        for cid in sorted(contract_ids):
            start, end = self.ranges[cid]
            ranges[cid], shift[cid] = (len(passages), len(passages) + end - start), len(passages) - start
            passages.extend(self.passages[start:end])
            subset_terms.extend(terms[start:end])
        positives = {
            category: {cid: {r + shift[cid] for r in rows} for cid, rows in by_contract.items() if cid in ranges}
            for category, by_contract in self.positives.items()
        }
        return Labelled(passages, ranges, {c: rows for c, rows in positives.items() if rows}, subset_terms)

    def category_rows(self, category: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the contracts that answer ``category``, and their 0/1 labels."""
        by_contract = self.positives[category]
        rows = np.array([r for cid in by_contract for r in range(*self.ranges[cid])], dtype=np.int64)
        positive = set().union(*by_contract.values())
        return rows, np.array([r in positive for r in rows.tolist()], dtype=np.float32)


def label_passages(dataset: CuadDataset, chunking: ChunkConfig = ChunkConfig()) -> Labelled:
    passages, ranges = [], {}
    for cid in sorted(dataset.contracts):
        chunks = chunk_contract(dataset.contracts[cid], chunking)
        ranges[cid] = (len(passages), len(passages) + len(chunks))
        passages.extend(chunks)
    positives: dict[str, dict[str, set[int]]] = defaultdict(dict)
    for question in dataset.questions:
        if not question.answers or question.contract_id not in ranges:
            continue
        rows = range(*ranges[question.contract_id])
        hits = {r for r in rows if any(covered_share(s, [passages[r]]) >= MIN_COVERAGE for s in question.answers)}
        positives[question.category][question.contract_id] = hits
    return Labelled(passages, ranges, dict(positives))


def fit_logistic(features, labels: np.ndarray, l2: float, max_iter: int) -> np.ndarray:
    """Weights of an L2-regularized logistic regression (bias fitted, not returned: ranking ignores it).

    ``features`` is a dense array or a torch sparse matrix; full-batch L-BFGS converges in tens of steps here.
    """
    import torch

    x = features if isinstance(features, torch.Tensor) else torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.float32)
    weights = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        logits = (torch.sparse.mm(x, weights[:, None])[:, 0] if x.is_sparse else x @ weights) + bias
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        value = (value + l2 * (weights * weights).sum()) / len(y)
        value.backward()
        return value

    optimizer.step(loss)
    return weights.detach().numpy().astype(np.float64)


def _sparse_rows(term_ids: list[np.ndarray], rows: np.ndarray, width: int):
    import torch

    lengths = [len(term_ids[r]) for r in rows.tolist()]
    row_index = np.repeat(np.arange(len(rows)), lengths)
    col_index = np.concatenate([term_ids[r] for r in rows.tolist()]) if len(rows) else np.zeros(0, np.int64)
    values = np.ones(len(row_index), dtype=np.float32)
    indices = torch.as_tensor(np.stack([row_index, col_index]), dtype=torch.int64)
    return torch.sparse_coo_tensor(indices, values, (len(rows), width), check_invariants=False).coalesce()


def _term_ids(labelled: Labelled, min_df: int) -> tuple[list[str], list[np.ndarray]]:
    """The vocabulary (terms in at least ``min_df`` passages) and each passage's sorted term columns."""
    term_sets = labelled.passage_term_sets()
    counts: dict[str, int] = defaultdict(int)
    for terms in term_sets:
        for term in terms:
            counts[term] += 1
    vocabulary = sorted(t for t, n in counts.items() if n >= min_df)
    column = {t: n for n, t in enumerate(vocabulary)}
    return vocabulary, [np.array(sorted(column[t] for t in terms if t in column), np.int64) for terms in term_sets]


def fit_lexical(labelled: Labelled, config: FitConfig = FitConfig()) -> dict[str, dict[str, float]]:
    """Per category, ``max_terms`` term weights of a bag-of-words logistic regression.

    Two stages: a fit over the whole vocabulary picks the terms with the largest weights, and a second fit over
    only those re-spreads the weight the dropped terms carried (cutting the first fit's long tail of small weights
    alone cost recall on held-out training contracts).
    """
    vocabulary, term_ids = _term_ids(labelled, config.min_df)
    fitted = {}
    for category in sorted(labelled.positives):
        rows, labels = labelled.category_rows(category)
        if not labels.any():
            continue
        weights = fit_logistic(_sparse_rows(term_ids, rows, len(vocabulary)), labels, config.l2, config.max_iter)
        kept = [vocabulary[i] for i in np.sort(np.argsort(-np.abs(weights), kind="stable")[: config.max_terms])]
        fitted[category] = fit_on_terms(labelled, category, kept, config)
        logger.info("%s: %d passages, %d positive; top terms %s", category, len(rows), int(labels.sum()),
                    sorted(fitted[category], key=lambda t: -fitted[category][t])[:5])
    return fitted


def fit_on_terms(labelled: Labelled, category: str, terms: Sequence[str], config: FitConfig) -> dict[str, float]:
    """The category's logistic regression over only ``terms`` (the second stage of :func:`fit_lexical`, and what
    the presence gate re-fits per fold): non-zero weights by term."""
    column = {term: n for n, term in enumerate(terms)}
    term_sets = labelled.passage_term_sets()
    rows, labels = labelled.category_rows(category)
    ids = [np.array(sorted(column[t] for t in term_sets[r] if t in column), np.int64) for r in rows.tolist()]
    weights = fit_logistic(_sparse_rows(ids, np.arange(len(rows)), len(terms)), labels, config.l2, config.max_iter)
    return {term: float(w) for term, w in zip(terms, weights.tolist()) if w}


def training_passages(dataset: CuadDataset, chunking: ChunkConfig = ChunkConfig()) -> list[Passage]:
    """The passages a fit labels, in the row order that precomputed ``embeddings=`` must follow."""
    return label_passages(dataset, chunking).passages


def dense_sample(labelled: Labelled, config: FitConfig = FitConfig()) -> list[int]:
    """Rows to embed for the probe: all rows of a seeded sample of contracts, plus sampled positives of the rest
    (every row when ``config.sample_contracts`` is None)."""
    if config.sample_contracts is None:
        return list(range(len(labelled.passages)))
    rng = random.Random(config.seed)
    contracts = sorted(labelled.ranges)
    chosen = set(rng.sample(contracts, min(config.sample_contracts, len(contracts))))
    rows = [r for cid in sorted(chosen) for r in range(*labelled.ranges[cid])]
    taken = set(rows)
    for category in sorted(labelled.positives):
        by_contract = labelled.positives[category].items()  # in question order: the sample is reproducible
        others = [r for cid, hits in by_contract if cid not in chosen for r in sorted(hits)]
        rng.shuffle(others)
        for row in others[: config.extra_positives]:
            if row not in taken:
                rows.append(row)
                taken.add(row)
    return rows


def fit_dense(labelled: Labelled, embedder: Embedder | None, config: FitConfig = FitConfig(), *,
              embeddings: np.ndarray | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Per category, a probe vector over passage embeddings (positives vs every other sampled passage).

    ``embeddings`` (one unit vector per row of ``labelled.passages``, from the embedder the probes are for) skips
    encoding; otherwise ``embedder`` encodes the sampled rows.
    """
    rows = dense_sample(labelled, config)
    if embeddings is not None:
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2 or len(embeddings) != len(labelled.passages):
            raise ValueError(
                f"embeddings must have one row per training passage ({len(labelled.passages)} with this chunking, "
                f"in training_passages() order), got shape {embeddings.shape}"
            )
        vectors = np.ascontiguousarray(embeddings[rows], dtype=np.float32)
    else:
        if embedder is None:
            raise ValueError("fit_dense needs an embedder or precomputed embeddings")
        logger.info("embedding %d sampled training passages for the dense probes", len(rows))
        vectors = embedder.encode([labelled.passages[r].text for r in rows], progress=progress)
    position = {row: n for n, row in enumerate(rows)}
    probes = {}
    for category in sorted(labelled.positives):
        labels = np.zeros(len(rows), dtype=np.float32)
        for hits in labelled.positives[category].values():
            labels[[position[r] for r in hits if r in position]] = 1.0
        if labels.any():
            probes[category] = fit_logistic(vectors, labels, config.l2, config.max_iter * 2).astype(np.float32)
    return probes


def fit_learned_queries(dataset: CuadDataset, config: FitConfig = FitConfig(), *,
                        embedder: Embedder | None = None, embeddings: np.ndarray | None = None,
                        progress: bool = False) -> LearnedQueries:
    """Fit term weights (and, with ``config.dense``, embedding probes) for every category answered in ``dataset``.

    ``embeddings``: precomputed vectors of :func:`training_passages` (``dataset``, ``config.chunking``), one row
    each, made by ``embedder`` (default: the packaged MiniLM, which is then not loaded). With
    ``config.sample_contracts=None`` the probes are fitted on all of them.
    """
    if not any(q.answers for q in dataset.questions):
        raise ValueError("the dataset has no gold answers to learn from; pass a split with labelled questions")
    labelled = label_passages(dataset, config.chunking)
    terms = fit_lexical(labelled, config)
    probes: dict[str, np.ndarray] = {}
    if config.dense:
        embedder = embedder or Embedder()  # lazy: loads no model when the embeddings are given
        probes = fit_dense(labelled, embedder, config, embeddings=embeddings, progress=progress)
    embedder_name = embedder.name if config.dense and embedder is not None else None
    gates, gate_stats = cross_fit_presence(labelled, terms, config) if config.gate_folds >= 2 else ({}, None)
    models = {
        name.lower(): CategoryModel(name, terms[name], probes.get(name), embedder_name, gates.get(name))
        for name in sorted(terms)
    }
    manifest = {
        "fitted_on": {"contracts": len(dataset.contracts), "questions": len(dataset.questions),
                      "passages": len(labelled.passages),
                      "fingerprint": data_fingerprint(dataset.contracts, dataset.questions)},
        "embedder": embedder_name,
        "probe_passages": len(dense_sample(labelled, config)) if config.dense else 0,
        "gate": gate_stats,
        "probe_embeddings": ("precomputed" if embeddings is not None else "computed") if config.dense else None,
        "chunking": config.chunking.to_dict(),
        "term_features": TERM_FEATURES,
        "fit": config.to_dict(),
        "versions": _versions(),
    }
    return LearnedQueries(models, manifest)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("clauseloop", "torch", "sentence-transformers"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found
